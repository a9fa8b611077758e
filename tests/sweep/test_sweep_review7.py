"""A recipe's step_options are checked before a sweep trains (a review of the docs' promises)."""
from __future__ import annotations

import pytest
import torch

import lrkit
from lrkit.errors import LrkitError


def recipe(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    x = torch.randn(64, 4)
    data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
    model = torch.nn.Linear(4, 2)
    return {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
            "train_loader": torch.utils.data.DataLoader(data, batch_size=8),
            "criterion": torch.nn.CrossEntropyLoss(), "step_options": {"max_grad_norm": -1.0}}


def test_a_bad_step_option_value_stops_the_sweep_before_any_trial(tmp_path):
    """It was refused by find and recommend up front, but a sweep ran its first trial and stored
    it as a failed attempt."""
    journal = tmp_path / "s.journal"
    with pytest.raises(LrkitError, match="max_grad_norm must be a positive number"):
        lrkit.sweep(recipe, budget=30, storage=str(journal), progress=False)
    assert not journal.exists() or "max_grad_norm" not in journal.read_text()


def test_a_sweep_without_a_budget_names_both_forms_of_the_option():
    def no_budget(seed: int = 0) -> dict:
        return {**recipe(seed), "step_options": None}

    with pytest.raises(LrkitError, match=r"budget=STEPS or epochs=N \(on the command line "
                                         r"--budget STEPS or --epochs N\)"):
        lrkit.sweep(no_budget, progress=False)
