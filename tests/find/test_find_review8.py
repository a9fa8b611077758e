"""A loss_fn(model, batch) given where a criterion goes (find_lr's fourth argument, a recipe
dict's 'loss') failed deep inside with "too many values to unpack" or "'Tensor' object is not
callable"; it is named, with the fix, and the model is put back."""
import pytest
import torch
from torch import nn

import lrkit
from lrkit.errors import LrkitError


def _setup():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))] * 4
    return model, torch.optim.SGD(model.parameters(), lr=0.1), data


def unpacking(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def calling(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


@pytest.mark.parametrize("loss", [unpacking, calling])
def test_a_loss_fn_given_as_the_criterion_is_named_with_the_fix(loss):
    model, optimizer, data = _setup()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(LrkitError, match=r"takes \(model, batch\).*is a loss_fn.*loss_fn="):
        lrkit.find_lr(model, optimizer, data, loss, num_steps=30, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_recipe_dicts_loss_holding_a_loss_fn_is_named(tmp_path):
    from lrkit.problem import call_recipe

    def recipe():
        model, optimizer, data = _setup()
        return {"model": model, "optimizer": optimizer, "train_loader": data, "loss": calling}

    problem = call_recipe(recipe)
    with pytest.raises(LrkitError, match="under 'loss_fn', not 'loss'"):
        lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                      **problem.loss_arguments(), num_steps=30, progress=False)


def test_a_criterions_own_error_is_left_as_it_is():
    # a real criterion that raises keeps its error (no guess from its parameter names)
    model, optimizer, data = _setup()

    def criterion(output, target):
        raise ValueError("the criterion's own complaint")

    with pytest.raises(ValueError, match="the criterion's own complaint"):
        lrkit.find_lr(model, optimizer, data, criterion, num_steps=30, progress=False)
