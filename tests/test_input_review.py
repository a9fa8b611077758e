"""From a review of bad input to the library: a model given where a recipe goes, an unusable
device, a huge number of steps, a path that is no recipe file."""
import pathlib

import pytest
import torch
from torch import nn

import lrkit
from lrkit.errors import LrkitError


def _tiny():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    loader = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))] * 4
    return model, torch.optim.SGD(model.parameters(), lr=0.1), loader, nn.CrossEntropyLoss()


def test_a_model_or_an_optimizer_is_no_recipe():
    model, optimizer, _, _ = _tiny()
    for target, kind in ((model, "a model"), (optimizer, "an optimizer")):
        with pytest.raises(LrkitError, match=f"takes a recipe, not {kind}.*lrkit.Problem"):
            lrkit.recommend(target, steps=100)
        with pytest.raises(LrkitError, match=f"takes a recipe, not {kind}"):
            lrkit.sweep(target, budget=20, progress=False)


@pytest.mark.parametrize("device, fragment", [
    ("foo", "device 'foo' is not a torch device"),
    ("", "device '' is not a torch device"),
    ("cuda", "device cuda: this torch build has no CUDA support; use device='cpu'"),
])
def test_find_lr_checks_its_device(device, fragment):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA machine has the device")
    model, optimizer, loader, criterion = _tiny()
    with pytest.raises(LrkitError, match=fragment):
        lrkit.find_lr(model, optimizer, loader, criterion, device=device, progress=False)


def test_a_huge_number_of_steps_is_refused_before_numpy_allocates_it():
    model, optimizer, loader, criterion = _tiny()
    with pytest.raises(LrkitError, match="num_steps=10000000000 is more than a range test needs"):
        lrkit.find_lr(model, optimizer, loader, criterion, num_steps=10**10, progress=False)


def test_load_problem_takes_a_path_and_refuses_none(tmp_path):
    recipe = tmp_path / "r.py"
    recipe.write_text("import lrkit\n\ndef make(seed=0):\n"
                      "    return lrkit.examples.build('wine-logreg', seed=seed)\n")
    problem = lrkit.load_problem(pathlib.PurePath(f"{recipe}:make"))
    assert isinstance(problem, lrkit.Problem)
    with pytest.raises(LrkitError, match="needs an example name .* got NoneType"):
        lrkit.load_problem(None)
    (tmp_path / "adir.py").mkdir()
    with pytest.raises(LrkitError, match="is a directory, not a Python file"):
        lrkit.load_problem(f"{tmp_path / 'adir.py'}:f")
