"""Review fixes (second walkthrough) for ``lrkit schedule`` and ``lrkit recommend``: --compare
takes several specs, honest tuning cost of a rescaled recipe, seed range, the target's label,
plurals, option errors naming what was passed, --lr on absolute schedules, written-file
confirmations, and ``schedule list`` without reStructuredText markup."""
from __future__ import annotations

import json

import pytest

import lrkit.recommend
from lrkit.cli import main
from lrkit.recommend import Recipe

RECIPE_FILE = '''
import torch


def make(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(128, 4)
    y = x.sum(1, keepdim=True)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 128, 32)]
    return model, optimizer, batches, torch.nn.MSELoss()
'''


def _error(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _measured_recipe(**changes) -> Recipe:
    """A recipe as recommend() returns it for 2000 steps at batch 32 (tuning 358 steps)."""
    data = dict(optimizer="SGD", optimizer_options={}, peak_lr=0.458, warmup_steps=100,
                total_steps=2000, schedule="warmup(100, start=0.01) >> cosine(1900)",
                good_range=(0.0085, 0.255), batch_size=32, notes=["training length: 2000 steps"],
                evidence={"problem": "moons-mlp",
                          "cost": {"steps": 358, "fraction": 358 / 2000, "seconds": 0.2,
                                   "total_steps": 2000, "batch_size": 32}})
    data.update(changes)
    return Recipe(**data)


@pytest.fixture
def no_training(monkeypatch):
    """``lrkit recommend`` without measuring: the recipe above, or a failure if it is asked for
    when the options should have been refused first."""
    calls = []

    def fake(target, **kwargs):
        calls.append((target, kwargs))
        return _measured_recipe()

    monkeypatch.setattr(lrkit.recommend, "recommend", fake)
    return calls


# -- 1. --compare takes one or more specs, and repeats -------------------------------------------

def test_compare_takes_several_specs_per_use_and_repeats(capsys):
    code = main(["schedule", "show", "warmup(500) >> cosine(10000, floor=0.1)", "--steps", "12000",
                 "--compare", "onecycle(12000)", "warmup(500, start=0.01) >> cosine(11500)",
                 "--compare", "constant()", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["spec"] for c in data["compare"]] == [
        "onecycle(12000)", "warmup(500, start=0.01) >> cosine(11500)", "constant()"]


def test_spec_swallowed_by_compare_gets_a_clear_error(capsys):
    err = _error(["schedule", "show", "--steps", "10", "--compare", "constant()", "cosine(10)"],
                 capsys)
    assert "give SPEC first" in err and "--compare" in err
    assert "give SPEC" in _error(["schedule", "show"], capsys)


# -- 3. the tuning cost of a rescaled recipe -----------------------------------------------------

def test_rescaled_recipe_states_the_share_of_the_measured_run():
    recipe = _measured_recipe()
    assert "tuning     358 steps (18% of the run)" in recipe.summary()
    bigger = recipe.for_batch_size(128)
    assert bigger.total_steps == 500
    text = bigger.summary()
    assert "18% of the run" not in text
    assert "18% of the measured run of 2000 steps at batch 32, before the rescale" in text
    cost = bigger.to_dict()["evidence"]["cost"]
    assert (cost["fraction"], cost["total_steps"], cost["batch_size"]) == (0.179, 2000, 32)
    # rescaled twice: still the measured run's share, and the JSON round trip keeps it
    again = Recipe.from_json(bigger.for_batch_size(64).to_json())
    assert "18% of the measured run of 2000 steps at batch 32" in again.summary()


def test_rescale_of_a_recipe_without_the_cost_run_fills_it_in():
    recipe = _measured_recipe(evidence={"cost": {"steps": 358, "fraction": 0.179, "seconds": 1}})
    cost = recipe.for_batch_size(128).evidence["cost"]
    assert (cost["total_steps"], cost["batch_size"]) == (2000, 32)


def test_cli_batch_size_says_the_share_is_of_the_measured_run(no_training, capsys):
    assert main(["recommend", "moons-mlp", "--steps", "2000", "--batch-size", "128",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Recipe for moons-mlp: 500 steps at batch size 128" in out
    assert "(18% of the measured run of 2000 steps at batch 32, before the rescale)" in out


def test_recommend_records_the_measured_run_in_the_cost(tmp_path, monkeypatch):
    (tmp_path / "my_recipe.py").write_text(RECIPE_FILE)
    monkeypatch.chdir(tmp_path)
    recipe = lrkit.recommend.recommend("my_recipe.py:make", steps=1, confirm=False,
                                       progress=False)
    cost = recipe.evidence["cost"]
    assert (cost["total_steps"], cost["batch_size"]) == (1, None)  # a list of batches: unknown
    # 4b: named as lrkit find names it; 4c: one step
    assert recipe.evidence["problem"] == "my_recipe.py:make"
    text = recipe.summary()
    assert text.startswith("Recipe for my_recipe.py:make: 1 step\n")
    assert "training length: 1 step\n" in text and "1 steps" not in text


# -- 4. small CLI inconsistencies ---------------------------------------------------------------

@pytest.mark.parametrize("seed", ["-1", str(2 ** 32)])
def test_recommend_refuses_a_seed_demo_refuses(seed, no_training, capsys):
    err = _error(["recommend", "--seed", seed, "--no-progress"], capsys)
    assert "--seed must be an integer from 0 to 2**32 - 1" in err
    assert not no_training  # refused before anything was measured
    demo = _error(["demo", "--seed", seed], capsys)
    assert "--seed must be an integer from 0 to 2**32 - 1" in demo


def test_recommend_cli_names_a_file_target_as_find_does(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_recipe.py").write_text(RECIPE_FILE)
    monkeypatch.chdir(tmp_path)
    assert main(["recommend", "my_recipe.py:make", "--steps", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Recipe for my_recipe.py:make: 1 step\n")
    assert "1 steps" not in out


def test_plurals_of_one_step():
    from lrkit.recommend.recipe import steps_text

    assert (steps_text(0), steps_text(1), steps_text(2)) == ("0 steps", "1 step", "2 steps")
    one = Recipe("SGD", {}, 0.1, 0, 1, "cosine(1)", batch_size=8,
                 evidence={"cost": {"steps": 1, "fraction": 1.0, "seconds": 0.0}})
    assert one.summary().startswith("Recipe: 1 step at batch size 8\n")
    assert "tuning     1 step (100% of the run)" in one.summary()
    assert "1 step in all" in one.to_code()


@pytest.mark.parametrize("extra, fragments", [
    ([], ["--grad-accum 3 has no effect without --batches-per-epoch",
          "add --batches-per-epoch B or drop --grad-accum"]),
    (["--steps-per-epoch", "10"], ["--grad-accum goes with --batches-per-epoch, not "
                                   "--steps-per-epoch (got --grad-accum 3 with --steps-per-epoch "
                                   "10)", "drop --grad-accum"]),
])
def test_grad_accum_error_names_what_was_passed(extra, fragments, capsys):
    err = _error(["schedule", "show", "cosine(100)", "--grad-accum", "3", *extra], capsys)
    for fragment in fragments:
        assert fragment in err
    if not extra:
        assert "--steps-per-epoch" not in err  # not passed: not named


def test_lr_on_an_absolute_schedule_is_refused(capsys):
    err = _error(["schedule", "show", "peak(cosine(1000), 3e-4)", "--lr", "0.1"], capsys)
    assert "--lr 0.1 has no effect" in err and "peak(" in err


def test_lr_with_absolute_and_relative_schedules_says_which_it_scales(capsys):
    assert main(["schedule", "show", "peak(cosine(1000), 3e-4)", "--lr", "0.1",
                 "--compare", "cosine(1000)"]) == 0
    out = capsys.readouterr().out
    assert ("note: --lr 0.1 scales the relative schedules only; peak(cosine(1000), 0.0003) sets "
            "absolute rates of its own") in out
    assert "shown for lr=0.1" in out


def test_absolute_and_relative_schedules_without_lr_say_the_relative_are_shown_for_1(capsys):
    # onecycle drawn for lr=1 beside 3e-4 made the absolute schedule a flat line at 0, unsaid
    assert main(["schedule", "show", "peak(warmup(50) >> cosine(450), 3e-4)",
                 "--compare", "onecycle(500)"]) == 0
    out = capsys.readouterr().out
    assert ("note: onecycle(500) is relative and shown for lr=1, beside the absolute rates of "
            "peak(warmup(50) >> cosine(450), 0.0003); pass --lr PEAK") in out
    assert main(["schedule", "show", "cosine(100)", "--compare", "onecycle(100)"]) == 0
    assert "note:" not in capsys.readouterr().out  # all relative: nothing to say


def test_schedule_json_file_is_confirmed(tmp_path, capsys):
    path = tmp_path / "preview.json"
    assert main(["schedule", "show", "cosine(100)", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"preview written to {path}")
    assert json.loads(path.read_text())["steps"] == 100
    assert main(["schedule", "show", "cosine(100)", "--json"]) == 0
    json.loads(capsys.readouterr().out)  # stdout still holds the JSON alone


def test_recommend_files_are_confirmed(tmp_path, no_training, capsys):
    js, ym = tmp_path / "r.json", tmp_path / "r.yaml"
    assert main(["recommend", "--json", str(js), "--yaml", str(ym), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"recipe written to {js}" in out and f"recipe written to {ym}" in out
    assert main(["recommend", "--json", "--yaml", str(ym), "--no-progress"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout holds the JSON alone; the confirmation goes to stderr
    assert f"recipe written to {ym}" in captured.err


# -- 5. schedule list as plain text ---------------------------------------------------------------

def test_schedule_list_shows_no_rst_literals(capsys):
    assert main(["schedule", "list"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out
    assert "A flat multiplier; constant() is the peak itself." in out
