"""``lrkit schedule show`` and ``lrkit schedule list``."""
import json

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
    assert json.loads(path.read_text())["steps"] == 101
    assert "cosine ends" in capsys.readouterr().out


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
    (["schedule", "show", "cosine(2*epoch)", "--steps", "10"], "steps_per_epoch"),
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
