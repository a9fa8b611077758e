"""lrkit.problem: recipes are built the same for the same seed, whatever ran before."""
import random
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lrkit.problem import build_problem, load_problem


def _unseeded_recipe():
    # draws its initialisation and its data from the global generators, and takes no seed=
    model = nn.Linear(4, 1)
    x = torch.randn(32, 4) + float(np.random.rand()) + random.random()
    return {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
            "train_loader": [(x, x.sum(1, keepdim=True))], "criterion": nn.MSELoss()}


def _draws(problem):
    return [problem.model.weight.detach().clone(), problem.train_loader[0][0].clone()]


def test_a_recipe_without_seed_is_built_the_same_for_the_same_seed():
    first = _draws(build_problem(_unseeded_recipe, seed=3))
    torch.rand(7), np.random.rand(3), random.random()  # another trial ran in between
    again = _draws(build_problem(_unseeded_recipe, seed=3))
    other = _draws(build_problem(_unseeded_recipe, seed=4))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


def test_a_shuffling_loader_without_a_generator_shuffles_the_same_way_in_every_run():
    # the loader draws its order from torch's generator as it is iterated, after the build: the
    # generators stay seeded (putting them back undid the recipe's own torch.manual_seed, and
    # lrkit find on the README's recipe gave another suggestion in every process)
    def recipe(seed=0):
        torch.manual_seed(seed)
        model = nn.Linear(4, 1)
        data = torch.utils.data.TensorDataset(torch.arange(64.0).reshape(16, 4),
                                              torch.zeros(16, 1))
        return {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
                "train_loader": torch.utils.data.DataLoader(data, batch_size=4, shuffle=True),
                "criterion": nn.MSELoss()}

    orders = []
    for before in (1, 2):  # another state before each build, as in another process
        torch.manual_seed(before)
        problem = build_problem(recipe, seed=0)
        orders.append([x[:, 0].tolist() for x, _ in problem.train_loader])
    assert orders[0] == orders[1]


def test_a_recipe_file_without_seed_is_reproducible(tmp_path):
    path = tmp_path / "recipe.py"
    path.write_text(
        "import torch\n"
        "def make():\n"
        "    model = torch.nn.Linear(3, 2)\n"
        "    x = torch.randn(16, 3)\n"
        "    return model, torch.optim.SGD(model.parameters(), lr=0.1), "
        "[(x, torch.zeros(16, dtype=torch.long))], torch.nn.CrossEntropyLoss()\n")
    one = load_problem(f"{path}:make", seed=0)
    two = load_problem(f"{path}:make", seed=0)
    assert torch.equal(one.model.weight, two.model.weight)
    assert torch.equal(one.train_loader[0][0], two.train_loader[0][0])


def test_a_recipe_that_puts_its_project_on_sys_path_keeps_it(tmp_path, monkeypatch):
    # lrkit took its own folder entry back with sys.path.pop(0), which removed the recipe's
    # project folder instead: the recipe's lazy import failed with ModuleNotFoundError
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "project_models_xyz.py").write_text(
        "import torch\n"
        "from lrkit import examples\n"
        "def build(seed=0):\n"
        "    return examples.build('logreg', seed=seed)\n")
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "recipe.py").write_text(
        "import os, sys\n"
        "sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))\n"
        "def make(seed=0):\n"
        "    import project_models_xyz\n"
        "    return project_models_xyz.build(seed)\n")
    before = list(sys.path)
    problem = load_problem(f"{tmp_path / 'recipes' / 'recipe.py'}:make")
    assert problem.model is not None
    added = [entry for entry in sys.path if entry not in before]
    # the recipe's own entry, and the recipe's folder, kept for the command as `python recipe.py`
    # keeps it (imports inside the recipe's functions find its siblings)
    assert sorted(Path(entry).name for entry in added) == ["lib", "recipes"]
