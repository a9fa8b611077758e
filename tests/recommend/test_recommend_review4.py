"""Recommend and its report, found in a fourth review: optimizer classes a script cannot import
(refused before measuring), recipes naming a module (not imported to show them), options of inf,
and the rescale refusal's limit."""
import io
import math
import sys
import textwrap
from contextlib import redirect_stdout

import pytest
import torch

import lrkit
from lrkit.errors import LrkitError
from lrkit.recommend import Recipe
from lrkit.show import report as rp
from tests.show.test_report import recipe_dict

TASK = """
import torch
from lrkit.problem import Problem

class MyAdam(torch.optim.Adam):
    pass

def problem(optimizer_class, seed):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=g)
    y = x @ torch.randn(6, 1, generator=g)
    torch.manual_seed(seed)
    model = torch.nn.Linear(6, 1)
    return Problem(model, optimizer_class(model.parameters(), lr=1e-3),
                   torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                               batch_size=16), torch.nn.MSELoss())

def make(seed=0):
    return problem(MyAdam, seed)

def make_local(seed=0):
    class LocalAdam(torch.optim.Adam):
        pass
    return problem(LocalAdam, seed)

class Wrapper:
    class NestedAdam(torch.optim.Adam):
        pass

def make_nested(seed=0):
    return problem(Wrapper.NestedAdam, seed)
"""


@pytest.mark.parametrize("file, function, fragment", [
    ("task.py", "make_local", "LocalAdam is defined inside a function"),
    ("task.py", "make_nested", "NestedAdam is nested in the class Wrapper"),
    ("my-task.py", "make", "whose name is not a module name"),
])
def test_an_optimizer_class_a_script_cannot_import_is_refused_before_measuring(
        tmp_path, monkeypatch, file, function, fragment):
    """recommend measured for minutes, then failed ("cannot import ...<locals>"), or wrote
    `from lrkit_recipe_7b59a0cbc1a7 import MyAdam` into the code to paste."""
    import lrkit.find

    (tmp_path / file).write_text(textwrap.dedent(TASK))
    monkeypatch.setattr(lrkit.find, "find_lr", lambda *a, **k: pytest.fail("measured first"))
    with pytest.raises(LrkitError, match=fragment):
        lrkit.recommend(f"{tmp_path / file}:{function}", steps=200, progress=False)


def test_a_module_level_class_of_a_recipe_file_is_kept(tmp_path):
    # (a name of its own: a second task.py from another folder gets a private name)
    (tmp_path / "kept_task.py").write_text(textwrap.dedent(TASK))
    recipe = lrkit.recommend(f"{tmp_path / 'kept_task.py'}:make", steps=200, confirm=False,
                             progress=False)
    assert recipe.optimizer == "kept_task.MyAdam"
    assert "from kept_task import MyAdam" in recipe.to_code()


def test_a_report_does_not_import_the_module_a_recipe_names(capsys):
    """Rendering a recipe imported its optimizer's module: "this.Optimizer" printed the Zen of
    Python into the report's output."""
    sys.modules.pop("this", None)
    page = rp.render_page([("r.json", dict(recipe_dict(), optimizer="this.Optimizer"))])
    assert "this" not in sys.modules
    assert "Beautiful is better than ugly" not in capsys.readouterr().out
    assert "from this import Optimizer" in page


def test_a_report_shows_the_code_of_an_optimizer_not_installed_here():
    page = rp.render_page([("r.json", dict(recipe_dict(), optimizer="notinstalled.FancyOpt"))])
    assert "In your training script" in page and "from notinstalled import FancyOpt" in page


def test_an_optimizer_not_installed_is_named_when_the_recipe_builds():
    recipe = Recipe.from_dict(dict(recipe_dict(), optimizer="notinstalled.FancyOpt"))
    with pytest.raises(LrkitError, match="cannot import 'notinstalled'"):
        recipe.build(torch.nn.Linear(2, 1).parameters())


def test_an_option_of_inf_survives_json_and_yaml():
    """ASGD(t0=inf): stored as null, read back as None, and build() failed at the first step."""
    recipe = Recipe("ASGD", {"t0": math.inf, "lambd": 1e-4}, 0.01, 0, 100, "constant()")
    for text in (recipe.to_json(), recipe.to_yaml()):
        back = Recipe.from_json(text) if text.lstrip().startswith("{") else Recipe.from_yaml(text)
        assert back.optimizer_options == {"t0": math.inf, "lambd": 1e-4}
    assert '"t0": "inf"' in recipe.to_json()
    model = torch.nn.Linear(2, 1)
    optimizer, _ = Recipe.from_json(recipe.to_json()).build(model.parameters())
    model(torch.randn(4, 2)).sum().backward()
    optimizer.step()


def test_the_rescale_refusal_names_the_limit_it_applied():
    """An 8-step recipe keeps 8 steps at most: "fewer than 10" contradicted the accepted 8."""
    recipe = Recipe("SGD", {}, 0.1, 0, 8, "constant()", batch_size=32)
    assert recipe.for_batch_size(33).total_steps == 8
    with pytest.raises(LrkitError, match="leaves 6 optimizer steps of the recipe's 8, fewer "
                                         "than 8: not a training run"):
        recipe.for_batch_size(40)
