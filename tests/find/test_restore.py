"""The finder restores model, optimizer and RNG states bit for bit, whatever happens."""
import random

import numpy as np
import pytest
import torch

import lrkit
from tests.find.helpers import assert_same_state, state_of, tiny_problem


def _warm_adam(model, loader, criterion):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.8, 0.95))
    for x, y in list(loader)[:3]:  # real Adam state (exp_avg, exp_avg_sq, step) before the test
        opt.zero_grad()
        criterion(model(x), y).backward()
        opt.step()
    return opt


def _rng_fingerprint():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


@pytest.mark.parametrize("snapshot", ["cpu", "disk"])
def test_restore_after_normal_run(snapshot, tmp_path):
    model, loader, criterion = tiny_problem()
    opt = _warm_adam(model, loader, criterion)
    model[3].eval()  # a mixed train/eval state must come back as it was
    before = state_of(model, opt)
    torch.manual_seed(123), np.random.seed(5), random.seed(7)
    rng_state = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    expected = _rng_fingerprint()
    torch.set_rng_state(rng_state[0]), np.random.set_state(rng_state[1]), random.setstate(rng_state[2])

    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=30, progress=False,
                           snapshot=snapshot, snapshot_dir=tmp_path)
    assert isinstance(result.suggested_lr, (float, type(None)))
    assert result.steps > 5
    assert_same_state(before, state_of(model, opt))
    assert all(p.grad is not None for p in model.parameters())  # grads as the warm-up left them
    assert _rng_fingerprint() == expected
    assert list(tmp_path.iterdir()) == []  # the disk snapshot is removed


def test_grads_and_batchnorm_statistics_restored():
    model, loader, criterion = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    bn = model[1]
    mean_before = bn.running_mean.clone()
    count_before = bn.num_batches_tracked.clone()
    lrkit.find_lr(model, opt, loader, criterion, num_steps=20, progress=False)
    assert torch.equal(bn.running_mean, mean_before)
    assert torch.equal(bn.num_batches_tracked, count_before)
    assert all(p.grad is None for p in model.parameters())


def test_restore_after_divergence():
    model, loader, criterion = tiny_problem()
    opt = _warm_adam(model, loader, criterion)
    before = state_of(model, opt)
    result = lrkit.find_lr(model, opt, loader, criterion, start_lr=1e-3, end_lr=1e6,
                           num_steps=60, progress=False)
    assert result.stop_reason != "completed"
    assert result.steps < 60
    assert_same_state(before, state_of(model, opt))


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_restore_after_exception_mid_run(error):
    model, loader, criterion = tiny_problem()
    opt = _warm_adam(model, loader, criterion)
    before = state_of(model, opt)
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    calls = {"n": 0}

    def loss_fn(m, batch):
        calls["n"] += 1
        if calls["n"] == 12:
            raise error()
        x, y = batch
        return criterion(m(x), y)

    with pytest.raises(error):
        lrkit.find_lr(model, opt, loader, loss_fn=loss_fn, num_steps=40, progress=False)
    assert calls["n"] == 12
    assert_same_state(before, state_of(model, opt))
    assert torch.equal(torch.rand(2), expected)


def test_tensor_learning_rate_restored():
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=15, progress=False)
    assert result.steps == 15
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(0.01)


def test_an_lrkit_scheduler_does_not_count_the_finders_steps():
    from lrkit.schedules import to_torch

    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = to_torch(opt, "warmup(10) >> cosine(200)")
    for x, y in list(loader)[:4]:
        opt.zero_grad()
        criterion(model(x), y).backward()
        opt.step()
        scheduler.step()
    rate = opt.param_groups[0]["lr"]
    lrkit.find_lr(model, opt, loader, criterion, num_steps=30, progress=False)
    assert scheduler.current_step == 4  # the finder's steps were undone, and not counted
    assert opt.param_groups[0]["lr"] == rate
    opt.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 5 / 10)  # still in the warmup


def test_a_loaders_own_generator_is_put_back():
    # DataLoader(generator=...), the usual way to make the batch order reproducible
    model, loader, criterion = tiny_problem(batch_norm=False)

    def loader_with(seed):
        return torch.utils.data.DataLoader(loader.dataset, batch_size=32, shuffle=True,
                                           generator=torch.Generator().manual_seed(seed))

    untouched, measured = loader_with(7), loader_with(7)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    lrkit.find_lr(model, opt, measured, criterion, num_steps=20, progress=False)
    assert torch.equal(next(iter(measured))[1], next(iter(untouched))[1])
