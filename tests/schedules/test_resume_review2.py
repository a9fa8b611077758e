"""Review: ScheduleLR in real training loops that save and resume, or share the optimizer."""
import io
import warnings

import pytest
import torch
from torch.optim.lr_scheduler import ChainedScheduler, ExponentialLR, LinearLR, SequentialLR

from lrkit.schedules import to_torch


def _opt(lr=0.1):
    p = torch.nn.Parameter(torch.ones(2))
    return p, torch.optim.SGD([p], lr=lr)


def _steps(p, opt, sched, n):
    out = []
    for _ in range(n):
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_resuming_with_another_count_mode_warns():
    # saved counting step() calls (e.g. once per epoch), resumed counting optimizer steps: the
    # step means something else from here on, which must not pass silently
    p, opt = _opt()
    sched = to_torch(opt, "cosine(1000)", count="calls")
    _steps(p, opt, sched, 5)
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    p, opt = _opt()
    fresh = to_torch(opt, "cosine(1000)")
    with pytest.warns(UserWarning, match="count='calls'"):
        fresh.load_state_dict(torch.load(buf))
    assert fresh.current_step == 5


def test_same_count_and_schedule_resume_is_silent():
    p, opt = _opt()
    sched = to_torch(opt, "warmup(10) >> cosine(100)", count="calls")
    _steps(p, opt, sched, 5)
    state = sched.state_dict()
    p, opt = _opt()
    fresh = to_torch(opt, "warmup(10) >> cosine(100)", count="calls")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh.load_state_dict(state)


@pytest.mark.parametrize("count", ["optimizer", "calls"])
def test_chained_with_a_torch_scheduler_is_not_silently_mixed(count):
    # ExponentialLR multiplies the rate ScheduleLR set; ScheduleLR overwrites it at the next
    # step: neither schedule is followed, so say so
    p, opt = _opt()
    chained = ChainedScheduler([to_torch(opt, "warmup(5) >> cosine(20)", count=count),
                                ExponentialLR(opt, 0.9)])
    with pytest.warns(UserWarning, match="changed outside"):
        _steps(p, opt, chained, 5)


def test_sequential_lr_around_a_schedule_lr_is_not_silently_wrong():
    p, opt = _opt()
    seq = SequentialLR(opt, [LinearLR(opt, 0.1, total_iters=5), to_torch(opt, "cosine(20)")],
                       milestones=[5])
    with pytest.warns(UserWarning, match="changed outside"):
        _steps(p, opt, seq, 8)


def test_two_schedule_lrs_on_one_optimizer_are_not_silently_racing():
    p, opt = _opt()
    first = to_torch(opt, "cosine(20)")
    second = to_torch(opt, "constant()")  # noqa: F841 (kept alive: its hook writes too)
    with pytest.warns(UserWarning, match="changed outside"):
        _steps(p, opt, first, 3)


def test_chained_scheduler_with_only_schedule_lr_and_paused_writes_stay_silent():
    from lrkit.schedules.torch_scheduler import paused
    p, opt = _opt()
    sched = to_torch(opt, "warmup(5) >> cosine(20)")
    chained = ChainedScheduler([sched])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _steps(p, opt, chained, 3)
        with paused(opt):  # a range test's own rates, undone afterwards
            opt.param_groups[0]["lr"] = 5.0
            _steps(p, opt, sched, 2)
            opt.param_groups[0]["lr"] = sched.get_last_lr()[0]
        _steps(p, opt, chained, 3)
        sched.scale_rates(0.5)
        _steps(p, opt, chained, 2)
    assert sched.current_step == 8
