"""A second adversarial-input review, of recommend, report, demo, find's less used options and
recipe files: each case gave a traceback, a misleading message or a silently wrong result."""
import json

import pytest
import torch

import lrkit
from lrkit.cli import main
from lrkit.errors import LrkitError
from lrkit.find.result import FinderResult
from tests.find.helpers import tiny_problem
from tests.show.test_report import recipe_dict
from tests.show.test_show_review2 import finder

RECIPES = '''
import torch


def _parts():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = x.sum(dim=1, keepdim=True)
    model = torch.nn.Linear(4, 1)
    loader = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    return model, torch.optim.SGD(model.parameters(), lr=0.01), loader


def budget_text():
    model, optimizer, loader = _parts()
    return dict(model=model, optimizer=optimizer, train_loader=loader,
                criterion=torch.nn.MSELoss(), budget_steps="1000")


def step_options_unknown():
    model, optimizer, loader = _parts()
    return dict(model=model, optimizer=optimizer, train_loader=loader,
                criterion=torch.nn.MSELoss(), step_options={"accum": 2})


def seed_positional(seed, /):
    model, optimizer, loader = _parts()
    return model, optimizer, loader, torch.nn.MSELoss()
'''


@pytest.fixture
def recipes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes.py").write_text(RECIPES)
    return tmp_path


@pytest.mark.parametrize("command", [["find", "--steps", "30", "--noise-batches", "0"],
                                     ["recommend", "--steps", "300", "--no-confirm",
                                      "--no-progress"]])
def test_a_recipes_budget_given_as_text_is_refused_alike_by_every_command(recipes, capsys,
                                                                          command):
    """find refused '1000' as '--budget-steps' (no such flag was given); recommend took it."""
    assert main([command[0], "recipes.py:budget_text", *command[1:]]) == 2
    err = capsys.readouterr().err
    assert "the recipe's 'budget_steps'" in err and "--budget-steps" not in err


def test_messages_about_a_recipes_keys_keep_the_recipes_names(recipes, capsys):
    assert main(["find", "recipes.py:step_options_unknown", "--steps", "30",
                 "--noise-batches", "0"]) == 2
    err = capsys.readouterr().err
    assert "'accumulation_steps', 'amp', 'max_grad_norm', 'device'" in err
    assert "--accumulation-steps" not in err


def test_a_positional_only_seed_is_passed_by_position(recipes, capsys):
    assert main(["find", "recipes.py:seed_positional", "--steps", "30",
                 "--noise-batches", "0", "--no-progress"]) in (0, 1)
    assert "positional-only" not in capsys.readouterr().err


def test_an_output_file_that_is_a_directory_is_one_line_not_a_traceback(tmp_path, capsys):
    source = tmp_path / "finder.json"
    source.write_text(json.dumps(finder().to_dict()))
    (tmp_path / "out" / "index.html").mkdir(parents=True)
    assert main(["report", str(source), "--out", str(tmp_path / "out")]) == 2
    assert "Is a directory" in capsys.readouterr().err


def test_a_report_never_writes_over_its_own_input(tmp_path, capsys):
    (tmp_path / "same").mkdir()
    page = tmp_path / "same" / "index.html"
    text = json.dumps(finder().to_dict())
    page.write_text(text)
    assert main(["report", str(page), "--out", str(tmp_path / "same")]) == 2
    assert "is the page this report would write" in capsys.readouterr().err
    assert page.read_text() == text


@pytest.mark.parametrize("data,message", [
    (dict(recipe_dict(), peak_lr="x"), "peak_lr is 'x', not a positive number"),
    ({"kind": "lrkit.diagnosis", "verdict": 5, "confidence": 0.9}, "verdict is 5"),
    ({"verdict": "healthy", "confidence": 7}, "confidence is 7"),
    (dict(finder().to_dict(), suggested_lr=-0.1), "suggested_lr is -0.1"),
])
def test_a_report_refuses_headline_values_lrkit_never_writes(tmp_path, capsys, data, message):
    """They were shown as they were: "Suggested learning rate: -0.1", "Verdict: 5"."""
    path = tmp_path / "result.json"
    path.write_text(json.dumps(data))
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_json_nested_too_deeply_is_not_a_result(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "nested too deeply" in capsys.readouterr().err


@pytest.mark.parametrize("change,message", [
    ({"settings": [1, 2]}, "settings must be an object"),
    ({"warnings": 5}, "warnings must be a list of texts"),
    ({"suggested_lr": -0.1}, "suggested_lr must be a positive number"),
])
def test_finder_result_from_dict_names_the_bad_field(change, message):
    with pytest.raises(LrkitError, match=message):
        FinderResult.from_dict(dict(finder().to_dict(), **change))


def test_a_dataset_as_val_loader_is_refused_as_train_loader_is():
    """It ran, and its "5 validation batches" were 5 single samples."""
    model, loader, criterion = tiny_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(LrkitError, match="val_loader must be iterable.*DataLoader"):
        lrkit.find_lr(model, optimizer, loader, criterion, val_loader=loader.dataset,
                      val_every=5, num_steps=20, progress=False)


def test_a_recipe_rescaled_from_another_batch_than_its_own_is_refused():
    from lrkit.recommend.recipe import Recipe

    recipe = Recipe.from_dict(dict(recipe_dict(), batch_size=32))
    assert recipe.for_batch_size(64).batch_size == 64
    with pytest.raises(LrkitError, match="old=16, but this recipe was measured at batch size 32"):
        recipe.for_batch_size(64, old=16)


@pytest.mark.parametrize("name,message", [
    ("", "give a file name"), ("plots", "give a file name"), ("x", "no file extension"),
    ("x.txt", "'.txt' is not an image format"),
])
def test_plot_paths_that_cannot_be_an_image_are_refused_before_drawing(tmp_path, name, message):
    """plot('x') wrote x.png, plot('a folder') wrote 'a folder.png', '.txt' failed in
    matplotlib after the figure was drawn."""
    (tmp_path / "plots").mkdir()
    with pytest.raises(LrkitError, match=message):
        finder().plot(str(tmp_path / name) if name else "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots"]
    with pytest.raises(LrkitError, match="give a file name"):
        finder().to_json(tmp_path / "plots")


def test_a_step_function_that_takes_no_rate_is_named():
    with pytest.raises(LrkitError, match=r"step_fn must take the step's rate.*\(\) cannot"):
        lrkit.FunctionTrainable(lambda: 1.0)
    huge = lrkit.range_test(lrkit.FunctionTrainable(lambda lr: 10 ** 400 if lr > 1e-3 else 1.0),
                            start_lr=1e-5, end_lr=1.0, num_steps=20, progress=False)
    # an integer past float's range is an infinite loss (it was an OverflowError from inside)
    assert huge.stop_reason.startswith("loss became inf") and huge.losses[-1] == float("inf")


def test_a_val_loader_without_val_every_is_said():
    model, loader, criterion = tiny_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lrkit.find_lr(model, optimizer, loader, criterion, val_loader=loader,
                           num_steps=20, noise_batches=0, progress=False)
    assert any("without val_every" in w for w in result.warnings)


def test_an_early_stop_without_smoothing_names_the_smoothing():
    """smoothing=0: batch noise tripped the stop rule after 9 steps, and the advice was "lower
    start_lr" and "check the model and data"."""
    import numpy as np

    rng = np.random.default_rng(0)
    noisy = lrkit.FunctionTrainable(lambda lr: float(np.exp(rng.normal(0, 0.8))))
    result = lrkit.range_test(noisy, num_steps=100, smoothing=0.0, progress=False)
    assert result.steps < 20  # (7 with this seed)
    assert any("smoothing=0" in w for w in result.warnings)
    assert not any("is probably already too high" in w for w in result.warnings)
    smooth = lrkit.range_test(lrkit.FunctionTrainable(lambda lr: float(np.exp(rng.normal(0, 0.8)))),
                              num_steps=100, progress=False)
    assert not any("smoothing=" in w for w in smooth.warnings)


def test_a_data_loaders_file_error_is_the_recipes_not_a_path_given(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipe.py").write_text(RECIPES + '''

class _Missing:
    batch_size = 16

    def __iter__(self):
        raise FileNotFoundError(2, "No such file or directory", "data/img_0003.jpg")


def missing_file():
    model, optimizer, _ = _parts()
    return model, optimizer, _Missing(), torch.nn.MSELoss()


def float_budget():
    model, optimizer, loader = _parts()
    return dict(model=model, optimizer=optimizer, train_loader=loader,
                criterion=torch.nn.MSELoss(), budget_steps=1000.0)
''')
    assert main(["find", "recipe.py:missing_file", "--steps", "20", "--noise-batches", "0"]) == 2
    err = capsys.readouterr().err
    assert "the data loader (train_loader) raised FileNotFoundError" in err
    assert "check the paths given" not in err
    from lrkit.problem import load_problem
    assert load_problem("recipe.py:float_budget").budget_steps == 1000  # a whole float is fine
