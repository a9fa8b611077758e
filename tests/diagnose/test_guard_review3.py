"""From a review of bad input: a closure that forgot backward() trained nothing, silently, and
options of the wrong type were accepted or failed deep inside."""
import numpy as np
import pytest
import torch
from torch import nn

import lrkit
from lrkit.errors import LrkitError


def _model_and_sgd():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_a_closure_that_forgot_backward_is_refused_at_the_first_step():
    model, optimizer = _model_and_sgd()
    guard = lrkit.Guard(model, optimizer)
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def closure():
        optimizer.zero_grad()
        return nn.functional.mse_loss(model(x), y)  # no loss.backward()

    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(LrkitError, match=r"none of the optimizer's parameters has a gradient.*"
                                         r"call loss.backward\(\)"):
        guard.step(closure)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_closure_with_backward_passes_the_check_once():
    model, optimizer = _model_and_sgd()
    guard = lrkit.Guard(model, optimizer)
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    first = guard.step(closure)
    assert guard._grads_checked and np.isfinite(first)
    assert all(np.isfinite(guard.step(closure)) for _ in range(30))


@pytest.mark.parametrize("options, fragment", [
    (dict(spike_factor="5"), "spike_factor must be a number > 1"),
    (dict(lr_factor=None), r"lr_factor must be a number in \(0, 1\)"),
    (dict(lr_factor="0.3"), r"lr_factor must be a number in \(0, 1\)"),
    (dict(lr_factor=np.array([0.3, 0.5])), r"lr_factor must be a number in \(0, 1\)"),
    (dict(logger=123), "logger must be a logging.Logger or a logger's name"),
    (dict(snapshot_dir=123), "snapshot_dir must be a directory path"),
])
def test_options_of_the_wrong_type_are_refused_up_front(options, fragment):
    model, optimizer = _model_and_sgd()
    with pytest.raises(LrkitError, match=fragment):
        lrkit.Guard(model, optimizer, **options)


def test_a_numpy_factor_is_taken():
    model, optimizer = _model_and_sgd()
    guard = lrkit.Guard(model, optimizer, lr_factor=np.float64(0.5), spike_factor=np.float32(4))
    assert guard.lr_factor == 0.5
