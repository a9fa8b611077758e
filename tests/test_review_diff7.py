"""Regressions found by a review of the fixes in 3cecb82..298a124 (each failed before its fix)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import lrkit
from lrkit.errors import LrkitError
from lrkit.problem import Problem


def _loader(n: int = 32, batch: int = 8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    data = torch.utils.data.TensorDataset(x, x[:, :1] * 0.5)
    return torch.utils.data.DataLoader(data, batch_size=batch)


def test_a_lightning_package_blocked_in_sys_modules_is_not_imported(monkeypatch):
    """``sys.modules['pytorch_lightning'] = None`` (the usual way to block an import) made the
    Lightning class check fail with "'NoneType' object has no attribute 'LightningDataModule'"
    (it read ``sys.modules[name]`` where it had read ``sys.modules.get(name)``)."""
    pl = pytest.importorskip("lightning.pytorch")
    from lrkit.adapters.lightning import from_lightning

    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, index):
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    problem = from_lightning(Module(), _loader())
    assert isinstance(problem, Problem)


def _lbfgs_recipe(seed: int = 0) -> Problem:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    return Problem(model=model, optimizer=torch.optim.LBFGS(model.parameters(), lr=1.0),
                   train_loader=_loader(), criterion=torch.nn.MSELoss(), budget_steps=20)


def test_a_sweep_that_replaces_the_recipe_optimizer_checks_the_one_it_steps():
    """The step_options check built a TorchTrainable over the recipe's own optimizer, which
    every trial replaces: a recipe trained with LBFGS, swept over sgd and adam, was refused
    ("LBFGS.step() needs a closure") before any trial, where it ran before."""
    from lrkit.sweep.api import build_spec

    spec = build_spec(_lbfgs_recipe, lrs="1e-3:1e-1", optimizers="sgd,adam")
    assert [s.label for s in spec.optimizers] == ["sgd", "adam"]
    # the recipe's own LBFGS, swept as it is, is still refused up front
    with pytest.raises(LrkitError, match="closure"):
        build_spec(_lbfgs_recipe, lrs="1e-3:1e-1")


def test_a_sweep_still_checks_the_step_options_with_a_replaced_optimizer():
    def recipe(seed: int = 0) -> dict:
        problem = _lbfgs_recipe(seed)
        return {"model": problem.model, "optimizer": problem.optimizer,
                "train_loader": problem.train_loader, "criterion": problem.criterion,
                "budget_steps": 20, "step_options": {"max_grad_norm": -1.0}}

    from lrkit.sweep.api import build_spec

    with pytest.raises(LrkitError, match="max_grad_norm must be a positive number"):
        build_spec(recipe, lrs="1e-3:1e-1", optimizers="sgd")


def test_a_group_rate_held_as_a_numpy_array_of_one_number_is_a_number():
    """lr=np.array(0.01) (0-d) was read by float() before; the check for Adafactor's lr=None
    refused it, saying that the optimizer sets its own rate."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer.param_groups[0]["lr"] = np.array(0.01)
    result = lrkit.find_lr(model, optimizer, _loader(64), criterion=torch.nn.MSELoss(),
                           num_steps=20, progress=False)
    assert len(result.lrs) > 0
    # a rate that is no number is still refused
    optimizer.param_groups[0]["lr"] = None
    with pytest.raises(LrkitError, match="not a number"):
        lrkit.find_lr(model, optimizer, _loader(64), criterion=torch.nn.MSELoss(),
                      num_steps=20, progress=False)
