"""A review of how the CLI loads recipes and runs the finder: each case gave a traceback, a
misleading message or a silently wrong result."""
import importlib
import json
import math
import sys

import pytest
import torch

from lrkit import examples
from lrkit.cli import main
from lrkit.errors import LrkitError
from lrkit.find.result import FinderResult
from lrkit.problem import Problem, as_problem, load_problem
from lrkit.training import evaluate, train
from tests.cli.test_inputs_review import RECIPES as PARTS  # defines _parts()



@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "helpers_xyz_review.py").write_text(PARTS)
    (tmp_path / "lazy_recipe_xyz.py").write_text('''
import torch


class Pairs(torch.utils.data.Dataset):  # a class of the recipe's own, pickled for workers
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.zeros(4), torch.zeros(1)


def make(seed=0):
    from helpers_xyz_review import _parts  # imported inside the function, as projects do
    model, optimizer, loader = _parts()
    return model, optimizer, loader, torch.nn.MSELoss()


def no_options():
    model, optimizer, loader, criterion = make()
    return dict(model=model, optimizer=optimizer, train_loader=loader, criterion=criterion,
                step_options=None)


def on_cuda():
    model, optimizer, loader, criterion = make()
    return dict(model=model, optimizer=optimizer, train_loader=loader, criterion=criterion,
                step_options={"device": "cuda:7"})


def raises():
    raise NotImplementedError("subclass must implement num_steps handling")
''')
    for name in ("lazy_recipe_xyz", "helpers_xyz_review"):
        sys.modules.pop(name, None)
    yield tmp_path
    for name in ("lazy_recipe_xyz", "helpers_xyz_review"):
        sys.modules.pop(name, None)


def test_a_recipe_imports_its_siblings_inside_its_function(project):
    # the recipe's folder left sys.path once the file was imported: ModuleNotFoundError
    problem = load_problem("lazy_recipe_xyz.py:make")
    assert isinstance(problem.model, torch.nn.Linear)


def test_a_recipes_classes_can_be_imported_again_by_name_as_spawned_workers_do(project):
    load_problem("lazy_recipe_xyz.py:make")
    module = sys.modules["lazy_recipe_xyz"]  # its own name (it was lrkit_recipe_<hash>)
    pairs = module.Pairs()
    assert type(pairs).__module__ == "lazy_recipe_xyz"
    del sys.modules["lazy_recipe_xyz"]  # a fresh process: found on sys.path by its name
    assert importlib.import_module("lazy_recipe_xyz").Pairs.__name__ == "Pairs"


def test_a_recipe_named_like_a_standard_module_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "csv.py").write_text(PARTS + '''

def make():
    model, optimizer, loader = _parts()
    return model, optimizer, loader, torch.nn.MSELoss()
''')
    import csv
    load_problem(f"{tmp_path / 'csv.py'}:make")
    assert sys.modules["csv"] is csv


def test_step_options_none_is_none_for_every_command_and_others_are_refused(project):
    problem = load_problem("lazy_recipe_xyz.py:no_options")
    assert problem.step_options == {} and problem.accumulation_steps == 1  # recommend failed
    assert len(train(problem, lr=0.01, steps=2).losses) == 2  # train raised TypeError
    model = torch.nn.Linear(1, 1)
    with pytest.raises(LrkitError, match="step_options must be a dict"):
        as_problem(dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                        train_loader=[], step_options=[("amp", True)]))


def test_a_recipes_device_is_checked_as_the_option_is(project, capsys):
    assert main(["find", "lazy_recipe_xyz.py:on_cuda", "--steps", "30"]) == 2
    err = capsys.readouterr().err
    assert "step_options: device cuda:7" in err and "Traceback" not in err


def test_json_that_took_the_target_as_its_file_is_refused(project, capsys):
    assert main(["find", "--json", "wine-logreg", "--steps", "30"]) == 2
    assert "put the target first" in capsys.readouterr().err
    assert not (project / "wine-logreg").exists()  # it ran digits-mlp and wrote this file


def test_a_plot_that_fails_loses_neither_the_json_nor_the_summary(project, capsys, monkeypatch):
    def broken(self, path=None, **kwargs):
        raise RuntimeError("xelatex not found")

    monkeypatch.setattr(FinderResult, "plot", broken)
    code = main(["find", "lazy_recipe_xyz.py:make", "--steps", "30", "--noise-batches", "0",
                 "--plot", "curve.png", "--json", "res.json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and "plot could not be written" in err and "xelatex" in err
    assert json.loads((project / "res.json").read_text())["lrs"]
    assert "suggested" in out.lower()


def test_a_users_exception_text_is_quoted_as_it_was(project, capsys):
    assert main(["find", "lazy_recipe_xyz.py:raises"]) == 2
    err = capsys.readouterr().err
    assert "must implement num_steps handling" in err  # it read "--steps handling"


def test_a_recipe_that_exits_while_imported_is_named(tmp_path, capsys):
    (tmp_path / "script_xyz.py").write_text("import sys\nsys.exit(3)\ndef make():\n    pass\n")
    with pytest.raises(LrkitError, match=r"called sys.exit\(3\) while being imported"):
        load_problem(f"{tmp_path / 'script_xyz.py'}:make")


def test_an_example_is_built_the_same_for_a_seed_whatever_drew_before():
    def first_losses():
        problem = load_problem("cancer-mlp", seed=0)  # dropout: draws from torch's generator
        return train(problem, lr=0.01, steps=5).losses

    first = first_losses()
    torch.rand(5)
    assert first_losses() == first


def test_evaluate_is_the_mean_over_samples_and_refuses_an_empty_loader():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    x = torch.zeros(65, 1)
    y = torch.ones(65, 1)
    y[64] = 10.0  # the last batch: one sample, loss 100; the others 1
    loader = [(x[:64], y[:64]), (x[64:], y[64:])]
    problem = Problem(model, torch.optim.SGD(model.parameters(), lr=0.1), loader,
                      torch.nn.MSELoss(), val_loader=loader)
    assert evaluate(problem) == pytest.approx((64 * 1.0 + 100.0) / 65)  # it was 50.5
    problem.val_loader = []
    with pytest.raises(LrkitError, match="validation loader yielded no batch"):
        evaluate(problem)
    assert math.isfinite(evaluate(problem, loader))


def test_device_overrides_a_recipes_device(project, capsys):
    assert main(["find", "lazy_recipe_xyz.py:on_cuda", "--steps", "30", "--device", "cpu",
                 "--noise-batches", "0", "--no-progress"]) in (0, 1)
    assert "step_options" not in capsys.readouterr().err


def test_two_recipe_files_of_one_name_are_two_modules(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    for folder, value in (("a", 1.0), ("b", 2.0)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "train_xyz_review.py").write_text(PARTS + f'''

VALUE = {value}


def make():
    model, optimizer, loader = _parts()
    return model, optimizer, loader, torch.nn.MSELoss()
''')
    sys.modules.pop("train_xyz_review", None)
    try:
        first = load_problem(f"{tmp_path / 'a' / 'train_xyz_review.py'}:make")
        second = load_problem(f"{tmp_path / 'b' / 'train_xyz_review.py'}:make")
        assert sys.modules["train_xyz_review"].VALUE == 1.0  # b took another name
        assert first.model is not second.model
        load_problem(f"{tmp_path / 'a' / 'train_xyz_review.py'}:make")
        assert sys.path[0] == str((tmp_path / "a").resolve())  # a worker finds a's file first
    finally:
        sys.modules.pop("train_xyz_review", None)


def test_a_recipe_named_main_does_not_replace_the_running_program(tmp_path):
    (tmp_path / "__main__.py").write_text(PARTS + '''

def make():
    model, optimizer, loader = _parts()
    return model, optimizer, loader, torch.nn.MSELoss()
''')
    main_module = sys.modules["__main__"]
    load_problem(f"{tmp_path / '__main__.py'}:make")
    assert sys.modules["__main__"] is main_module


def test_step_options_of_a_problem_made_directly_are_checked():
    model = torch.nn.Linear(1, 1)
    problem = Problem(model, torch.optim.SGD(model.parameters(), lr=0.1), [], step_options=None)
    assert problem.step_options == {} and problem.accumulation_steps == 1
    with pytest.raises(LrkitError, match="step_options has 'accum'"):
        Problem(model, torch.optim.SGD(model.parameters(), lr=0.1), [],
                step_options={"accum": 2})
