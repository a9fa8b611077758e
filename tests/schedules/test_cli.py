"""``lrkit schedule show`` and ``lrkit schedule list``."""
import json
import time

import pytest

from lrkit.cli import main


def test_show_prints_key_points_and_lint(capsys):
    code = main(["schedule", "show", "warmup(500) >> cosine(10000, floor=0.1)", "--steps", "12000",
                 "--lr", "3e-4"])
    out = capsys.readouterr().out
    assert code == 0
    assert "peak: 0.0003 at step 500" in out
    assert "warmup ends" in out and "cosine ends" in out
    assert "[zero-start]" in out and "[short-horizon]" in out


def test_show_json_and_plot(capsys, tmp_path):
    png = tmp_path / "curve.png"
    code = main(["schedule", "show", "warmup(2*epoch, start=0.01) >> cosine(total - 2*epoch)",
                 "--epochs", "10", "--batches-per-epoch", "100", "--grad-accum", "3",
                 "--json", "--plot", str(png), "--compare", "onecycle(total)"])
    captured = capsys.readouterr()
    assert code == 0
    data = json.loads(captured.out)
    assert data["steps"] == 340 and data["spec"] == "warmup(68, start=0.01) >> cosine(272)"
    assert data["compare"][0]["spec"] == "onecycle(340)"
    assert png.stat().st_size > 1000
    assert "plot written" in captured.err


def test_show_json_to_file(tmp_path, capsys):
    path = tmp_path / "p.json"
    assert main(["schedule", "show", "cosine(100)", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["steps"] == 100 and data["warnings"] == []  # the schedule's own length
    assert "99    0.00024672" in capsys.readouterr().out


def test_strict_exit_code(capsys):
    assert main(["schedule", "show", "cosine(100)", "--steps", "200", "--strict"]) == 1
    assert main(["schedule", "show", "warmup(10, start=0.1) >> cosine(90)", "--steps", "100",
                 "--strict"]) == 0
    capsys.readouterr()


def test_config_files(tmp_path, capsys):
    path = tmp_path / "sched.yaml"
    path.write_text("- {type: warmup, steps: 10, start: 0.1}\n- {type: cosine, steps: 90}\n")
    assert main(["schedule", "show", str(path), "--steps", "100"]) == 0
    assert "warmup(10, start=0.1) >> cosine(90)" in capsys.readouterr().out


@pytest.mark.parametrize("argv,fragment", [
    (["schedule", "show", "cosine(100, flor=0.1)", "--steps", "10"], "no parameter 'flor'"),
    (["schedule", "show", "constant()"], "give --steps N"),
    (["schedule", "show", "cosine(10)", "--steps", "0"], "--steps must be > 0"),
    (["schedule", "show", "cosine(2*epoch)", "--steps", "10"], "--steps-per-epoch"),
    (["schedule", "show", "cosine(10)", "--epochs", "3"], "--epochs needs --steps-per-epoch"),
    (["schedule", "show", "missing.yaml"], "does not exist"),
])
def test_errors_exit_2_with_a_message(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrkit schedule: error:") and fragment in err, err


def test_list_and_bare_command(capsys):
    assert main(["schedule", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("cosine(steps, floor=0)", "warmup(steps, start=0, shape='linear', then=None)",
                 "wsd(", "onecycle(", "plateau(", "peak("):
        assert name in out
    assert main(["schedule"]) == 2


# --- review fixes -------------------------------------------------------------------------------

def _strict_json(text):
    """json.loads that refuses Infinity/NaN, which are not JSON."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("spec,steps", [
    ("cosine(100)", 100),
    ("warmup(10, start=0.1) >> cosine(90, floor=0.1)", 100),
    ("onecycle(200)", 200),
])
def test_show_without_steps_uses_the_schedules_own_length(spec, steps, capsys):
    assert main(["schedule", "show", spec, "--strict", "--json"]) == 0
    data = _strict_json(capsys.readouterr().out)
    assert data["steps"] == steps and data["warnings"] == []


def test_show_help_example_has_no_horizon_warning(capsys):
    # the help's own example: only its documented zero-start finding (warmup from 0) is left
    assert main(["schedule", "show", "warmup(500) >> cosine(10000, floor=0.1)", "--json"]) == 0
    data = _strict_json(capsys.readouterr().out)
    assert data["steps"] == 10500 and [w["code"] for w in data["warnings"]] == ["zero-start"]


def test_show_own_length_in_epochs(capsys):
    assert main(["schedule", "show", "warmup(epoch, start=0.1) >> cosine(9*epoch)",
                 "--steps-per-epoch", "10", "--strict"]) == 0
    assert "steps: 100 " in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["cosine(1e12)"],
    ["cosine(100)", "--steps", "1000000000000"],
    ["warmup(1e6, start=0.1) >> cosine(1e12) >> constant(0.5)", "--lr", "0.1", "--steps", "2000000000000"],
])
def test_show_very_long_runs_are_sampled(argv, tmp_path, capsys):
    png = tmp_path / "long.png"
    began = time.monotonic()
    assert main(["schedule", "show", *argv, "--json", "--plot", str(png)]) == 0
    assert time.monotonic() - began < 30  # it used to build a list of every step
    data = _strict_json(capsys.readouterr().out)
    assert data["steps"] >= 10 ** 12 and data["sampled"] is True
    assert len(data["curve"]) < 600 and data["curve"][-1][0] == data["steps"] - 1
    assert png.stat().st_size > 1000


def test_show_long_run_keeps_boundaries(capsys):
    assert main(["schedule", "show", "cosine(100)", "--steps", "1000000000000", "--json"]) == 0
    data = _strict_json(capsys.readouterr().out)
    points = {k["step"]: k["label"] for k in data["key_points"]}
    assert "cosine ends" in points[100] and points[0] == "start, peak"
    assert [w["code"] for w in data["warnings"]] == ["short-horizon"]


def test_show_refuses_runs_too_long_to_preview(capsys):
    assert main(["schedule", "show", "cosine(100)", "--steps", str(2 ** 60)]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main(["schedule", "show", "cosine(1e300)"]) == 2
    assert "give --steps N" in capsys.readouterr().err


def test_malformed_schedule_files_exit_2_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "type": "cosine",\n  steps: 10\n}\n')
    assert main(["schedule", "show", str(bad), "--steps", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrkit schedule: error:") and str(bad) in err and "line 3" in err
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("type: cosine\nsteps: [10\n")
    assert main(["schedule", "show", str(bad_yaml), "--steps", "10"]) == 2
    err = capsys.readouterr().err
    assert str(bad_yaml) in err and "line " in err
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert main(["schedule", "show", str(empty), "--steps", "10"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1"])
def test_lr_must_be_finite_and_positive(value, capsys):
    assert main(["schedule", "show", "cosine(100)", f"--lr={value}", "--json"]) == 2
    captured = capsys.readouterr()
    assert "--lr must be a finite number > 0" in captured.err and captured.out == ""


def test_json_output_is_valid_json_even_when_rates_overflow(capsys):
    assert main(["schedule", "show", "cosine(10) * 1e300", "--lr", "1e300", "--steps", "10",
                 "--json"]) == 0
    data = _strict_json(capsys.readouterr().out)
    assert data["peak"]["rate"] is None  # inf is written as null


@pytest.mark.parametrize("extra,fragment", [
    (["--steps", "50", "--epochs", "3", "--steps-per-epoch", "10"], "--steps or --epochs, not both"),
    (["--steps-per-epoch", "10", "--batches-per-epoch", "30", "--epochs", "3"],
     "--steps-per-epoch or --batches-per-epoch"),
    (["--epochs", "-1", "--steps-per-epoch", "10"], "--epochs must be a finite number > 0, got -1"),
    (["--epochs", "0.01", "--steps-per-epoch", "10"], "--epochs 0.01 at 10 steps per epoch is 0"),
    (["--steps-per-epoch", "0", "--epochs", "2"], "--steps-per-epoch must be a finite number > 0"),
    (["--steps-per-epoch", "10", "--grad-accum", "2"], "--grad-accum goes with --batches-per-epoch"),
    (["--batches-per-epoch", "0", "--epochs", "2"], "--batches-per-epoch must be > 0"),
    (["--log"], "--log sets the plot's rate axis; it needs --plot"),
])
def test_conflicting_or_bad_unit_options_are_named(extra, fragment, capsys):
    assert main(["schedule", "show", "cosine(100)", *extra]) == 2
    err = capsys.readouterr().err
    assert fragment in err, err
    assert "--steps must be" not in err


def test_output_paths_are_checked_before_the_preview(tmp_path, capsys):
    assert main(["schedule", "show", "cosine(100)", "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["schedule", "show", "cosine(100)", "--plot", str(tmp_path / "nodir" / "p.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["schedule", "show", "cosine(100)", "--plot", str(tmp_path / "p.txt")]) == 2
    assert "--plot" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_show_draws_a_saved_recipe_at_its_peak_rate(suffix, capsys, tmp_path):
    # a recipe saved by lrkit recommend --json/--yaml: its schedule multiplies its peak_lr (it
    # was drawn for lr=1: sixth review)
    path = tmp_path / f"recipe.{suffix}"
    recipe = {"peak_lr": 0.002, "schedule": "warmup(10, start=0.01) >> cosine(90)"}
    path.write_text(json.dumps(recipe) if suffix == "json" else
                    "peak_lr: 0.002\nschedule: warmup(10, start=0.01) >> cosine(90)\n")
    assert main(["schedule", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "peak: 0.002 at step 10" in out and "at its peak_lr 0.002" in out
    assert main(["schedule", "show", str(path), "--lr", "0.1"]) == 0  # --lr still wins
    assert "peak: 0.1 at step 10" in capsys.readouterr().out
    other = tmp_path / f"other.{suffix}"  # compared: each recipe at its own peak
    other.write_text(path.read_text().replace("0.002", "0.5"))
    for first, second in ((path, other), (other, path)):
        assert main(["schedule", "show", str(first), "--compare", str(second)]) == 0
        out = capsys.readouterr().out
        assert "peak: 0.002 at step 10" in out and "peak: 0.5 at step 10" in out
