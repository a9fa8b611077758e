"""The CLI's shared checks: output paths, --device, recipe files, zero counts, option names in
messages, the exit code of ``find --json``, and a closed pipe. Each bad input fails with one line
and exit status 2, before anything trains."""
import importlib
import json
import os
import sys

import pytest

import lrkit
from lrkit import cli
from lrkit.cli import main
from lrkit.errors import LrkitError


def _fail_fast(monkeypatch):
    """Make any training an error, so a test proves the check came before it."""
    def no_training(*args, **kwargs):
        raise AssertionError("training started before the check")

    monkeypatch.setattr(lrkit, "find_lr", no_training)
    monkeypatch.setattr("lrkit.problem.load_problem", no_training)


def _error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# -- 1. output paths -----------------------------------------------------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["find", "wine-logreg", "--json", "{dir}"], "--json '{dir}' is a directory"),
    (["find", "wine-logreg", "--json", "{dir}/nodir/r.json"], "'{dir}/nodir' does not exist"),
    (["find", "wine-logreg", "--plot", "{dir}/nodir/p.png"], "'{dir}/nodir' does not exist"),
    (["find", "wine-logreg", "--plot", "{dir}/p.txt"], "matplotlib cannot save .txt files"),
    (["find", "wine-logreg", "--plot", "{dir}/p"], "has no extension"),
    (["find", "wine-logreg", "--plot", "{dir}"], "--plot '{dir}' is a directory"),
    (["recommend", "wine-logreg", "--json", "{dir}"], "--json '{dir}' is a directory"),
    (["recommend", "wine-logreg", "--yaml", "{dir}/nodir/r.yaml"], "does not exist"),
    (["sweep", "wine-logreg", "--plot", "{dir}/nodir/p.png"], "does not exist"),
    (["sweep", "wine-logreg", "--csv", "{dir}"], "--csv '{dir}' is a directory"),
    (["sweep", "wine-logreg", "--json", "{dir}/nodir/x.json"], "does not exist"),
    (["report", "{dir}/r.json", "--out", "{dir}/file.csv"], "is an existing file"),
    (["demo", "--quick", "--out", "{dir}/file.csv"], "is an existing file"),
    (["demo", "--quick", "--out", "{dir}/file.csv/sub"], "is a file, not a directory"),
])
def test_bad_output_paths_fail_before_any_work(argv, fragment, tmp_path, monkeypatch, capsys):
    _fail_fast(monkeypatch)
    monkeypatch.setattr(importlib.import_module("lrkit.sweep"), "sweep",
                        lambda *a, **k: pytest.fail("the sweep ran"))
    monkeypatch.setattr("lrkit.show.demo.run_demo", lambda **k: pytest.fail("the demo ran"))
    (tmp_path / "file.csv").write_text("step,loss\n")
    (tmp_path / "r.json").write_text(json.dumps({"verdict": "healthy", "confidence": 0.9}))
    argv = [a.replace("{dir}", str(tmp_path)) for a in argv]
    err = _error(argv, capsys)
    assert fragment.replace("{dir}", str(tmp_path)) in err
    assert not (tmp_path / "nodir").exists()


def test_output_helpers_accept_good_paths(tmp_path):
    cli.check_output_path(None, "--json")
    cli.check_output_path("-", "--json")
    cli.check_output_path(tmp_path / "r.json", "--json")
    (tmp_path / "old.png").write_bytes(b"x")
    cli.check_output_path(tmp_path / "old.png", "--plot", plot=True)  # overwritten, as documented
    cli.check_output_path(tmp_path / "p.SVG", "--plot", plot=True)
    cli.check_output_dir(tmp_path / "new" / "deeper")  # created by the command
    cli.check_output_dir(tmp_path)


# -- 2. --device ---------------------------------------------------------------------------------

def test_device_that_does_not_parse(monkeypatch, capsys):
    _fail_fast(monkeypatch)
    err = _error(["find", "wine-logreg", "--device", "bogus"], capsys)
    assert "--device 'bogus' is not a torch device" in err


def test_cuda_device_without_cuda(monkeypatch, capsys):
    import torch

    _fail_fast(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = _error(["find", "wine-logreg", "--device", "cuda"], capsys)
    assert "--device cuda:" in err and "use --device cpu" in err
    cli.check_device("cpu")
    cli.check_device(None)


# -- 3. recipe files -----------------------------------------------------------------------------

RECIPES = '''
import torch
from torch import nn

def _data():
    x = torch.randn(64, 4)
    return [(x[i:i + 16], (x[i:i + 16].sum(1) > 0).long()) for i in range(0, 64, 16)]

def raises(seed=0):
    raise ValueError("bad shape 3")

def needs_arg(x):
    return None

def frozen():
    m = nn.Linear(4, 2)
    for p in m.parameters():
        p.requires_grad_(False)
    return m, torch.optim.SGD(m.parameters(), lr=0.1), _data(), nn.CrossEntropyLoss()

def no_criterion():
    m = nn.Linear(4, 2)
    return {"model": m, "optimizer": torch.optim.SGD(m.parameters(), lr=0.1), "data": _data()}

def short_tuple():
    m = nn.Linear(4, 2)
    return m, torch.optim.SGD(m.parameters(), lr=0.1)
'''


@pytest.mark.parametrize("name, source, function, fragments", [
    ("syntax.py", "def make(:\n    pass\n", "make", ["syntax.py", "syntax error at line 1"]),
    ("importerr.py", "import not_a_module_xyz\n", "make",
     ["cannot import recipe file", "importerr.py", "ModuleNotFoundError", "not_a_module_xyz"]),
    ("recipes.py", RECIPES, "raises", ["recipes.py:raises raised ValueError: bad shape 3"]),
    ("recipes.py", RECIPES, "needs_arg", ["recipes.py:needs_arg needs argument x",
                                          "give it a default"]),
    ("recipes.py", RECIPES, "frozen", ["recipes.py:frozen", "all frozen", "requires_grad"]),
    ("recipes.py", RECIPES, "no_criterion", ["no criterion and no loss_fn", "add a 'criterion'"]),
    ("recipes.py", RECIPES, "short_tuple", ["tuple of 2 items", "needs 3 to 5"]),
])
def test_recipe_file_errors_name_the_recipe_and_the_cause(name, source, function, fragments,
                                                          tmp_path, capsys):
    path = tmp_path / name
    path.write_text(source)
    for command in (["find", f"{path}:{function}", "--steps", "10"],
                    ["recommend", f"{path}:{function}", "--steps", "100", "--no-confirm"]):
        err = _error(command + ["--no-progress"], capsys)
        for fragment in fragments:
            assert fragment in err, err


def test_a_failing_recipe_keeps_the_users_exception_as_the_cause(tmp_path):
    from lrkit.problem import load_problem

    path = tmp_path / "recipes.py"
    path.write_text(RECIPES)
    with pytest.raises(LrkitError) as info:
        load_problem(f"{path}:raises")
    assert isinstance(info.value.__cause__, ValueError)


# -- 5. demo --seed ------------------------------------------------------------------------------

def test_demo_refuses_a_negative_seed_before_running(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("lrkit.show.demo.run_demo", lambda **k: pytest.fail("the demo ran"))
    err = _error(["demo", "--quick", "--seed", "-1", "--out", str(tmp_path / "d")], capsys)
    assert "--seed must be an integer from 0 to 2**32 - 1, got -1" in err
    from lrkit.show.demo import check_seed

    with pytest.raises(LrkitError, match="seed must be an integer from 0"):
        check_seed(2 ** 32)
    check_seed(0)


# -- 6. find's exit code with --json -------------------------------------------------------------

class _NoSuggestion:
    suggested_lr = None
    lrs, losses, smoothed = [1e-3, 1e-2], [1.0, 1.0], [1.0, 1.0]

    def __init__(self):
        self.warnings = []  # (a FinderResult's: the CLI adds its own notes)

    def to_json(self, path=None):
        text = json.dumps({"kind": "lrkit.finder", "suggested_lr": None})
        if path is not None:
            open(path, "w").write(text)
        return text

    def summary(self):
        return "no suggestion"


@pytest.mark.parametrize("extra", [[], ["--json"], ["--json", "FILE"]])
def test_find_exit_code_does_not_depend_on_json(extra, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(lrkit, "find_lr", lambda *a, **k: _NoSuggestion())
    extra = [str(tmp_path / "r.json") if a == "FILE" else a for a in extra]
    assert main(["find", "wine-logreg", "--no-progress", *extra]) == 1
    if extra == ["--json"]:
        assert json.loads(capsys.readouterr().out)["suggested_lr"] is None


# -- 7. zero is not the default ------------------------------------------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["find", "wine-logreg", "--budget-steps", "0"], "--budget-steps must be an integer >= 1"),
    (["find", "wine-logreg", "--val-every", "0"], "--val-every must be an integer >= 1"),
    (["find", "wine-logreg", "--val-batches", "0"], "--val-batches must be an integer >= 1"),
    (["find", ""], "TARGET is empty"),
    (["find", "  "], "TARGET is empty"),
    (["recommend", ""], "TARGET is empty"),
    (["recommend", "wine-logreg", "--steps", "0"], "--steps must be an integer >= 1"),
    (["diagnose", "--example", "--steps", "0"], "--steps must be an integer >= 8"),
])
def test_zero_and_empty_are_refused(argv, fragment, monkeypatch, capsys):
    _fail_fast(monkeypatch)
    monkeypatch.setattr("lrkit.cli.diagnose._demo", lambda a: pytest.fail("the demo ran"))
    monkeypatch.setattr("lrkit.recommend.recommend", lambda *a, **k: pytest.fail("it ran"))
    assert fragment in _error(argv + ["--no-progress"] if argv[0] != "diagnose" else argv,
                              capsys)


def test_val_every_on_a_recipe_without_validation_data(tmp_path, capsys):
    path = tmp_path / "r.py"
    path.write_text("import torch\nfrom torch import nn\n"
                    "def make():\n    m = nn.Linear(2, 1)\n"
                    "    x = torch.randn(32, 2)\n"
                    "    return m, torch.optim.SGD(m.parameters(), lr=0.1), [(x, x[:, :1])] * 4,"
                    " nn.MSELoss()\n")
    err = _error(["find", f"{path}:make", "--val-every", "5", "--no-progress"], capsys)
    assert "--val-every needs validation data" in err and "val_loader" in err


# -- 9. option names in messages -----------------------------------------------------------------

def test_batch_size_is_named_as_the_option(monkeypatch, capsys):
    monkeypatch.setattr("lrkit.recommend.recommend", lambda *a, **k: pytest.fail("it ran"))
    err = _error(["recommend", "wine-logreg", "--batch-size", "0", "--no-progress"], capsys)
    assert "--batch-size must be an integer >= 1" in err and "batch size new" not in err


def test_library_parameter_names_become_options():
    names = {"num_steps": "--steps", "start_lr": "--start-lr"}
    assert cli._option_message("num_steps must be >= 10; start_lr too", names) \
        == "--steps must be >= 10; --start-lr too"
    assert cli._option_message("args.num_steps and --steps stay", names) \
        == "args.num_steps and --steps stay"
    # a message for Python and CLI users alike names the CLI's option once, in CLI syntax
    from lrkit.cli.sweep import OPTION_NAMES

    both = ("with --continue / continue_study=True, or start another with --study-name / "
            "study_name=")
    assert cli._option_message(both, OPTION_NAMES) == \
        "with --continue, or start another with --study-name"


# -- 8. a closed pipe ----------------------------------------------------------------------------

def test_closed_stdout_pipe_exits_quietly(monkeypatch, capsys):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head) went away
    stream = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        code = main(["schedule", "list"])
    finally:
        monkeypatch.undo()
        stream.close()  # stdout now points at devnull: closing raises nothing
    assert code == cli.BROKEN_PIPE_EXIT
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("argv, start", [
    (["find", "--bogus"], "lrkit find: error: unrecognized arguments: --bogus"),
    (["find", "--steps", "abc"], "lrkit find: error: argument --steps: invalid int value"),
    (["bogus"], "lrkit: error: argument COMMAND: invalid choice: 'bogus'"),
])
def test_bad_options_are_one_line_naming_the_command(argv, start, capsys):
    # the README promises one line for bad input; argparse printed its whole usage first
    from lrkit.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1 and "--help)" in err


# -- the sixth review: an error in the user's model is one line, not lrkit's traceback -----------
_MISFIT = '''
import torch
def make(seed=0):
    model = torch.nn.Linear(4, 2).double()  # float64 weights, float32 data
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    return model, torch.optim.SGD(model.parameters(), lr=0.1), [(x, y)], torch.nn.CrossEntropyLoss()
'''


@pytest.mark.parametrize("command", [["find", "--steps", "20"], ["recommend", "--steps", "200"]])
def test_an_error_in_the_recipes_model_is_one_line_with_exit_code_2(command, tmp_path, capsys):
    recipe = tmp_path / "misfit.py"
    recipe.write_text(_MISFIT)
    code = main([command[0], f"{recipe}:make", *command[1:], "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "the forward pass" in err
    assert "RuntimeError: mat1 and mat2 must have the same dtype" in err


def test_in_python_the_users_own_exception_comes_through_as_it_was(tmp_path):
    import torch

    model = torch.nn.Linear(4, 2).double()
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    with pytest.raises(RuntimeError, match="same dtype") as raised:
        lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), batches,
                      torch.nn.CrossEntropyLoss(), num_steps=20, progress=False)
    assert not isinstance(raised.value, LrkitError)


def test_lrkits_own_errors_keep_their_traceback(monkeypatch):
    # only what the user's code raised is shortened: a defect of lrkit's is reported whole
    def broken(args):
        raise RuntimeError("an lrkit defect")

    monkeypatch.setattr(cli, "build_parser", _parser_running(broken))
    with pytest.raises(RuntimeError, match="an lrkit defect"):
        main([])


def _parser_running(func):
    import argparse

    def build():
        parser = argparse.ArgumentParser()
        parser.set_defaults(func=func, command="find")
        return parser
    return build
