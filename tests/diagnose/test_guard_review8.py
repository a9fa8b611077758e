"""From a review of the guard in real training loops (gradient accumulation, schedulers the
guard was not told of)."""
import pytest
import torch
from torch import nn

import lrkit
from lrkit.diagnose import GuardError


def _model_and_sgd(lr=0.05):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
    return model, torch.optim.SGD(model.parameters(), lr=lr)


def test_a_lone_nonfinite_rollback_leaves_no_stale_gradients_for_accumulation():
    # gradient accumulation: the first micro-batches backpropagate outside the closure, the loop
    # zeroes the gradients after each applied step. A lone NaN rolled back to the snapshot and
    # left the snapshot's gradients (of a step already applied) in p.grad, and the next
    # accumulated step added them in; a skip and a cut leave no gradients
    model, optimizer = _model_and_sgd()
    guard = lrkit.Guard(model, optimizer, snapshot_every=10)
    x, y = torch.randn(128, 10), torch.randn(128, 1)

    def accumulated_step(nan: bool) -> None:
        part = x[:64].clone()
        if nan:
            part[0, 0] = float("nan")
        (nn.functional.mse_loss(model(part), y[:64]) / 2).backward()

        def closure():
            loss = nn.functional.mse_loss(model(x[64:]), y[64:]) / 2
            loss.backward()
            return loss

        guard.step(closure)
        if not guard.skipped:
            optimizer.zero_grad()

    for step in range(22):
        accumulated_step(nan=step == 20)  # NaN parameters after it: the next loss is NaN
    assert [i.reason for i in guard.interventions] == ["nonfinite_loss_rolled_back"]
    assert guard.skipped
    assert all(p.grad is None for p in model.parameters())
    # the next step applies its own gradient alone
    before = [p.detach().clone() for p in model.parameters()]
    accumulated_step(nan=False)
    expected_model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        for p, b in zip(expected_model.parameters(), before):
            p.copy_(b)
    reference = torch.optim.SGD(expected_model.parameters(), lr=0.05)
    (nn.functional.mse_loss(expected_model(x[:64]), y[:64]) / 2).backward()
    (nn.functional.mse_loss(expected_model(x[64:]), y[64:]) / 2).backward()
    reference.step()
    assert all(torch.allclose(p, q) for p, q in zip(model.parameters(),
                                                     expected_model.parameters()))


def _nan_from_step_30(scheduler):
    """A run whose loss is NaN from step 30 on, until the guard gives up."""
    model, optimizer = _model_and_sgd(lr=0.1)
    if scheduler:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)
    guard = lrkit.Guard(model, optimizer, probe_steps=0, max_retries=3, snapshot_every=10)
    x, y = torch.randn(32, 10), torch.randn(32, 1)
    with pytest.raises(GuardError) as raised:
        for step in range(60):
            def closure():
                optimizer.zero_grad()
                loss = nn.functional.mse_loss(model(x), y)
                if step >= 30:
                    loss = loss * float("nan")
                loss.backward()
                return loss

            guard.step(closure)
            if scheduler:
                scheduler.step()
    return str(raised.value)


def test_max_retries_error_names_a_scheduler_that_undid_the_cuts():
    # a LambdaLR the guard was not given sets the rate from its base_lrs at every step, so each
    # cut is undone at once; the GuardError after max_retries blamed the data and the model
    assert "pass it as Guard(scheduler=...)" in _nan_from_step_30(scheduler=True)
    assert "scheduler" not in _nan_from_step_30(scheduler=False)


def test_a_rollback_keeps_the_modules_train_and_eval_modes_as_the_loop_set_them():
    # a fine-tuning loop freezes BatchNorm's statistics (bn.eval()) mid-run; a rollback to a
    # snapshot taken before put the layer back in training mode, and its statistics moved again
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    guard = lrkit.Guard(model, optimizer, snapshot_every=20)
    x, y = torch.randn(64, 10), torch.randn(64, 1)
    for step in range(52):
        if step == 45:
            model[1].eval()

        def closure():
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            if step == 50:
                loss = loss * float("nan")
            loss.backward()
            return loss

        guard.step(closure)
        if step == 50:
            assert guard.interventions[-1].reason == "nonfinite_loss_rolled_back"
            assert guard.interventions[-1].restored_to < 45
            assert not model[1].training and model[0].training
            frozen = model[1].running_mean.clone()
    assert torch.equal(frozen, model[1].running_mean)  # the step after: statistics unchanged
