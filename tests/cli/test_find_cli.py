"""``lrkit find`` end to end: examples, user recipe files, output formats, errors."""
import json
import subprocess
import sys

import pytest

from lrkit.cli import main

RECIPE = '''
import torch
from torch import nn

def make(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    model = nn.Linear(4, 1)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    return model, torch.optim.SGD(model.parameters(), lr=0.01), batches, nn.MSELoss()

def as_dict():
    model, opt, batches, loss = make()
    return {"model": model, "optimizer": opt, "data": batches, "criterion": loss}
'''


def test_find_on_an_example_prints_suggestion_range_and_table(capsys):
    assert main(["find", "wine-logreg", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Suggested learning rate:" in out and "Good range:" in out
    assert "steepest" in out and "valley" in out and "minimum" in out
    assert "rate       loss   smoothed" in out


def test_find_json_to_stdout_and_plot(tmp_path, capsys):
    plot = tmp_path / "finder.png"
    assert main(["find", "wine-logreg", "--no-progress", "--json", "--plot", str(plot)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "lrkit.finder"
    assert isinstance(data["suggested_lr"], float)
    assert len(data["lrs"]) == len(data["losses"]) > 10
    assert plot.stat().st_size > 5000


def test_find_reports_the_gradient_noise_and_noise_batches_zero_skips_it(capsys):
    assert main(["find", "wine-logreg", "--no-progress", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["gradient_noise"] > 0 and measured["settings"]["noise_batches"] == 16
    assert main(["find", "wine-logreg", "--no-progress", "--noise-batches", "0"]) == 0
    out = capsys.readouterr().out
    assert "Suggested learning rate" in out and "Gradient noise" not in out
    assert main(["find", "wine-logreg", "--no-progress", "--noise-batches", "1"]) == 2
    assert "--noise-batches must be 0 (no measurement) or an integer >= 2, got 1" in \
        capsys.readouterr().err


@pytest.mark.parametrize("function", ["make", "as_dict"])
def test_find_on_a_user_recipe_file(tmp_path, capsys, function):
    recipe = tmp_path / "my_recipe.py"
    recipe.write_text(RECIPE)
    out_json = tmp_path / "r.json"
    assert main(["find", f"{recipe}:{function}", "--no-progress", "--json", str(out_json)]) == 0
    assert "Suggested learning rate" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["suggested_lr"] > 0


@pytest.mark.parametrize("argv,fragment", [
    (["find", "--start-lr", "1", "--end-lr", "0.1"], "must be smaller than --end-lr (0.1); swap"),
    (["find", "--start-lr", "1", "--end-lr", "1"], "--start-lr and --end-lr are both 1"),
    (["find", "--steps", "2"], "--steps must be an integer >= 10"),
    (["find", "--smoothing", "1.5"], "--smoothing must be"),
    (["find", "missing.py:make"], "does not exist"),
    (["find", "nonsense"], "unknown example 'nonsense'"),
])
def test_find_errors_are_one_clear_line(argv, fragment, capsys):
    assert main(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert err.startswith("lrkit find: error:")


def test_list_examples(capsys):
    assert main(["find", "--list-examples"]) == 0
    out = capsys.readouterr().out
    assert "digits-mlp" in out and "tiny-transformer" in out


def test_console_entry_point_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "lrkit", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "find" in proc.stdout


def test_a_negative_seed_is_refused_as_by_lrkit_demo(capsys):
    from lrkit.cli import main

    assert main(["find", "--seed", "-1"]) == 2
    assert "--seed must be an integer from 0 to 2**32 - 1, got -1" in capsys.readouterr().err


STEPPED = RECIPE + '''
def stepped():
    model, opt, batches, loss = make()
    return {"model": model, "optimizer": opt, "data": batches, "criterion": loss,
            "step_options": {"accumulation_steps": 2, "max_grad_norm": 1.0}}
'''


def test_find_takes_the_recipes_step_options_and_the_flags_win(tmp_path, capsys):
    # lrkit find ignored a recipe's step_options, which recommend and sweep honour: one recipe
    # file was two different problems
    recipe = tmp_path / "stepped.py"
    recipe.write_text(STEPPED)
    out = tmp_path / "r.json"
    assert main(["find", f"{recipe}:stepped", "--no-progress", "--json", str(out)]) == 0
    settings = json.loads(out.read_text())["settings"]
    assert settings["accumulation_steps"] == 2 and settings["max_grad_norm"] == 1.0
    assert main(["find", f"{recipe}:stepped", "--no-progress", "--json", str(out),
                 "--accumulation-steps", "1", "--max-grad-norm", "5"]) == 0
    settings = json.loads(out.read_text())["settings"]
    assert settings["accumulation_steps"] == 1 and settings["max_grad_norm"] == 5.0
    capsys.readouterr()


ODD = RECIPE + '''
def with_options(**options):
    model, opt, batches, loss = make()
    return {"model": model, "optimizer": opt, "data": batches, "criterion": loss,
            "step_options": options}

def with_device():
    return with_options(device="cpu")

def with_typo():
    return with_options(max_grad_nrm=1.0)

def with_zero():
    return with_options(accumulation_steps=0)
'''


def test_a_recipes_step_options_are_checked_and_named_as_the_recipes(tmp_path, capsys):
    # passed unchecked, device= clashed with the command's own (a TypeError traceback), a typo
    # was a TypeError, and a bad value was blamed on --accumulation-steps, which nobody passed
    recipe = tmp_path / "odd.py"
    recipe.write_text(ODD)
    assert main(["find", f"{recipe}:with_device", "--no-progress", "--steps", "30"]) == 0
    capsys.readouterr()
    assert main(["find", f"{recipe}:with_typo", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "step_options has 'max_grad_nrm'" in err and "Traceback" not in err
    assert main(["find", f"{recipe}:with_zero", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "odd.py:with_zero's step_options: accumulation_steps must be" in err
    assert "--accumulation-steps" not in err


def test_a_recipe_with_a_criterion_and_a_loss_fn_uses_the_loss_fn(tmp_path, capsys):
    # find_lr refuses both from a caller; a recipe that sets loss_fn on top of a built example
    # (its criterion kept) means the loss_fn, as sweeps and training read it
    recipe = tmp_path / "both.py"
    recipe.write_text(
        "import lrkit\n"
        "calls = []\n"
        "def make(seed=0):\n"
        "    problem = lrkit.examples.build('wine-logreg', seed=seed)\n"
        "    criterion = problem.criterion\n"
        "    def loss_fn(model, batch):\n"
        "        calls.append(1)\n"
        "        return criterion(model(batch[0]), batch[1])\n"
        "    problem.loss_fn = loss_fn\n"
        "    return problem\n")
    assert main(["find", f"{recipe}:make", "--no-progress", "--steps", "30"]) == 0
    assert "Suggested learning rate:" in capsys.readouterr().out
    module = next(m for m in list(sys.modules.values())
                  if getattr(m, "__file__", None) == str(recipe))
    assert len(module.calls) >= 30  # every step went through the loss_fn


@pytest.mark.parametrize("command", [["find", "--steps", "30"], ["recommend", "--steps", "200"]])
def test_json_on_stdout_is_json_alone_when_the_recipe_prints(tmp_path, capsys, command):
    # what a recipe prints while it loads or trains goes to stderr with --json - (as lrkit
    # sweep already did), or stdout is no JSON
    recipe = tmp_path / "chatty.py"
    recipe.write_text(RECIPE + "\nprint('loading my data...')\n"
                      "_make = make\n"
                      "def make(seed=0):\n"
                      "    print('building the model')\n"
                      "    return _make(seed)\n")
    code = main([command[0], f"{recipe}:make", *command[1:], "--no-progress", "--json", "-"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)  # stdout: the JSON alone
    assert "building the model" in err and "loading my data" in err


@pytest.mark.parametrize("options, message", [
    (["--max-grad-norm", "0"], "--max-grad-norm must be a positive number (the gradient norm to "
                               "clip at), got 0; leave it out for no clipping"),
    (["--snapshot-dir", "somewhere"], "--snapshot-dir is where --snapshot disk writes its file"),
])
def test_find_flags_that_would_be_ignored_or_say_none_are_named(capsys, options, message):
    assert main(["find", "wine-logreg", "--no-progress", *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "None" not in err
