"""lrkit.Guard, found in a second review: a closure that raises during the probe, sparse
gradients under check_grads, a logger given by name, numpy numbers as options."""
import logging

import numpy as np
import torch
from torch import nn
from torch.optim import lr_scheduler

import lrkit


def _regression(seed=0, lr=0.05):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(200, 16, 4, generator=generator)
    return model, optimizer, x, x.sum(-1, keepdim=True)


def _probed_run(raise_at=None):
    """A NaN batch at step 30 starts the probe; at ``raise_at`` the closure raises (an OOM the
    loop catches and skips)."""
    model, optimizer, x, y = _regression()
    scheduler = lr_scheduler.StepLR(optimizer, 1000, 0.5)
    guard = lrkit.Guard(model, optimizer, scheduler=scheduler, confirm_spikes=0,
                        diagnose_every=None, spike_factor=None, watch_progress=False)
    t = 0
    for i in range(140):
        if i == raise_at:
            def fails():
                raise RuntimeError("out of memory (simulated)")
            try:
                guard.step(fails)
            except RuntimeError:
                assert optimizer.param_groups[0]["lr"] == scheduler.get_last_lr()[0]
            continue

        def closure(t=t):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x[t]), y[t]) * (math_nan if t == 30 else 1.0)
            loss.backward()
            return loss
        guard.step(closure)
        scheduler.step()
        t += 1
    return optimizer.param_groups[0]["lr"], [i.reason for i in guard.interventions]


math_nan = float("nan")


def test_a_closure_that_raises_during_the_probe_leaves_the_rate_unscaled(caplog):
    """The groups kept the probe's scaled rate, which the next step read as the scheduler's and
    scaled again: the run ended at 2.1e-5 instead of 0.006."""
    caplog.set_level(logging.ERROR)
    plain = _probed_run()
    assert "probe" in plain[1]
    assert _probed_run(raise_at=40) == plain


def test_check_grads_takes_the_norm_of_sparse_gradients(caplog):
    """_foreach_norm has no sparse kernel: the first step raised NotImplementedError."""
    caplog.set_level(logging.ERROR)
    torch.manual_seed(0)
    embedding = nn.Embedding(100, 8, sparse=True)
    optimizer = torch.optim.SparseAdam(embedding.parameters(), lr=0.01)
    guard = lrkit.Guard(embedding, optimizer, check_grads=True)
    for t in range(150):
        index = torch.randint(0, 100, (16,))

        def closure(t=t, index=index):
            optimizer.zero_grad()
            loss = (embedding(index) ** 2).mean() * (math_nan if t == 120 else 1.0)
            loss.backward()
            return loss
        guard.step(closure)
    assert [i.reason for i in guard.interventions] == ["nonfinite_loss_rolled_back"]
    assert guard.good_steps == 149


def test_a_logger_given_by_name_gets_the_incidents(caplog):
    """Guard(logger="my.run") was taken as the logger itself: AttributeError at the first
    incident, when the guard is needed."""
    model, optimizer, x, y = _regression()
    guard = lrkit.Guard(model, optimizer, logger="my.run", probe_steps=0)
    with caplog.at_level(logging.INFO, logger="my.run"):
        for t in range(130):
            def closure(t=t):
                optimizer.zero_grad()
                loss = nn.functional.mse_loss(model(x[t]), y[t]) * (math_nan if t == 120 else 1.)
                loss.backward()
                return loss
            guard.step(closure)
    assert any(r.name == "my.run" and "guard step 121" in r.getMessage() for r in caplog.records)


def test_numpy_numbers_are_options_like_floats():
    model, optimizer, _, _ = _regression()
    guard = lrkit.Guard(model, optimizer, probe_decades=np.float32(3.0), lr_factor=np.float64(0.3))
    assert guard.summary()["steps"] == 0
