"""Edge cases: long runs, odd steps, one-piece joins, resolved and rescaled chains, groups added
mid-run, ScheduleLR made directly, copied or stepped in the wrong order, contradicting units."""
import io
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from lrkit.errors import LrkitError
from lrkit.schedules import (Scale, constant, cosine, cyclic, epoch, exponential, inverse_sqrt,
                             join, lint, linear, parse, plateau, preview, rescale, restarts,
                             step, to_torch, total, warmup)


# --- long runs and odd steps ------------------------------------------------------------------

def test_triangular2_keeps_going_after_1024_cycles():
    # torch's 1 / 2.0 ** (cycle - 1) overflows at cycle 1025: 10,240 steps of cyclic(5)
    s = cyclic(5, low=0.1, mode="triangular2")
    assert s(10_245) == pytest.approx(0.1) and s(10 ** 9) == pytest.approx(0.1)
    for t in (0, 3, 5, 12, 27, 1000):  # unchanged where torch's formula does not overflow
        cycle = math.floor(1 + t / 10)
        x = abs(t / 5 - 2 * cycle + 1)
        assert s(t) == pytest.approx(0.1 + 0.9 * max(0.0, 1 - x) / 2.0 ** (cycle - 1), rel=1e-12)
    assert preview(s, 20_000).rates[-1] == pytest.approx(0.1)


@pytest.mark.parametrize("s", [step(10), restarts(10), restarts(10, mult=2), cyclic(5),
                               exponential(0.9), inverse_sqrt(10), cosine(10)])
@pytest.mark.parametrize("bad", [float("inf"), 10 ** 400], ids=["inf", "10**400"])
def test_an_infinite_or_overflowing_step_is_a_clear_error(s, bad):
    with pytest.raises(LrkitError, match="step must be finite"):
        s(bad)


def test_integer_steps_of_numpy_and_torch_are_steps():
    s = warmup(4) >> cosine(10)
    assert s(np.int64(6)) == s(6) == s(torch.tensor(6)) and s(np.float64(6.5)) == s(6.5)
    assert s(2 ** 1000) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy cast warning on the way
        assert s(np.float64(1e300)) == 0.0
        assert s(np.float32(6.5)) == s(6.5)
    with pytest.raises(LrkitError, match="step must be a number >= 0"):
        s(torch.tensor([1, 2]))


def test_numpy_integers_resolve_and_preview():
    assert cosine(total).resolve(total_steps=np.int64(100)) == cosine(100)
    assert cosine(epoch).resolve(batches_per_epoch=np.int64(10), grad_accum=np.int64(3)) == cosine(4)
    assert preview("cosine(10)", np.int64(10)).steps == 10
    assert lint("cosine(10)", np.int64(10)) == []
    with pytest.raises(LrkitError, match="total_steps must be a positive integer"):
        cosine(total).resolve(total_steps=100.0)


# --- joins --------------------------------------------------------------------------------------

def test_a_one_piece_join_has_the_length_of_its_piece():
    s = join([cosine(10)], [])
    assert s.length == 10 and join([constant()], []).length is None
    assert (s >> constant(0.5))(10) == 0.5 and parse(str(s)) == s
    assert [w.code for w in lint(s, 20)] == ["short-horizon"]


# --- parameter groups added while training (gradual unfreezing) -----------------------------

def _optimizer():
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)


@pytest.mark.parametrize("spec,rate", [("linear(10)", lambda t: 1 - t / 10),
                                       ("peak(linear(10), 1.0)", lambda t: 10 * (1 - t / 10))])
def test_a_group_added_later_follows_the_schedule_from_its_own_rate(spec, rate):
    opt = _optimizer()
    sched = to_torch(opt, spec)
    opt.step()
    opt.step()
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "lr": 0.05})
    sched.step()  # picks the new group up at once
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * rate(2), 0.05 * rate(2)])
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * rate(3), 0.05 * rate(3)])
    assert sched.get_last_lr() == pytest.approx([0.1 * rate(3), 0.05 * rate(3)])
    state = sched.state_dict()
    assert state["base_lrs"] == [0.1, 0.05]
    # resume: the new run adds the group before loading, as the optimizer's state needs
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": state}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    opt2 = _optimizer()
    sched2 = to_torch(opt2, spec)
    opt2.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "lr": 0.05})
    opt2.load_state_dict(ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])
    for _ in range(3):
        opt.step()
        opt2.step()
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]


def test_a_group_added_later_shares_the_plateau_state():
    opt = _optimizer()
    sched = to_torch(opt, plateau(constant(), factor=0.5, patience=0))
    sched.report(1.0)
    sched.report(1.0)  # one reduction
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "lr": 0.02})
    opt.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.01])
    sched.report(1.0)
    assert sched.plateau_scale == [0.25, 0.25]


def test_one_schedule_per_group_refuses_a_group_it_has_no_schedule_for():
    opt = _optimizer()
    sched = to_torch(opt, ["linear(10)"])  # noqa: F841 (kept: a dropped scheduler stops)
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "lr": 0.05})
    with pytest.raises(LrkitError, match="one schedule for each of 1"):
        opt.step()


# --- batch-size rescaling keeps a chain a chain ------------------------------------------------

def test_rescaled_warmup_moves_the_joins_after_it():
    s = parse("warmup(500) >> cosine(10000, floor=0.1) >> linear(1000, start=0.1, end=0.01)")
    r = rescale(s, 256, 1024)
    assert r == Scale(parse("warmup(125) >> cosine(10000, floor=0.1) >> "
                            "linear(1000, start=0.1, end=0.01)"), 4.0)
    assert r(125 + 10000 + 500) == pytest.approx(4 * 0.055)  # the linear runs 375 steps earlier
    assert rescale(r, 1024, 256) == Scale(s, 1.0)
    # lengths in units: the next piece still starts where the warmup's piece ends
    u = rescale("warmup(500) >> cosine(total - 500) >> constant(0.1)", 256, 1024)
    assert u == Scale(parse("warmup(125) >> cosine(total - 500) >> constant(0.1)"), 4.0)
    # an explicit cut inside a warmup keeps its place in the ramp; after it, moves with it
    cut = rescale("join([warmup(500) >> constant(), cosine(100)], [2000])", 256, 1024)
    assert cut == Scale(join([warmup(125) >> constant(), cosine(100)], [1625]), 4.0)
    mid = rescale("join([warmup(500) >> constant(), cosine(100)], [100])", 256, 1024)
    assert mid == Scale(join([warmup(125) >> constant(), cosine(100)], [25]), 4.0)
    nested = rescale("linear(100, start=0.5, end=1) >> warmup(500) >> cosine(1000) >> constant(0.1)",
                     256, 512)
    assert nested.schedule.boundaries == (100, 100 + 250 + 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rescale(s, 256, 256, warmup="steps") == s


# --- ScheduleLR made directly, and copies of a detached one ------------------------------------

def test_schedule_lr_refuses_schedules_it_would_ignore():
    from lrkit.schedules.torch_scheduler import ScheduleLR

    opt = _optimizer()
    with pytest.raises(LrkitError, match="2 schedules without per_group=True"):
        ScheduleLR(opt, [cosine(10), linear(5)])  # the second one was silently unused
    with pytest.raises(LrkitError, match="at least one schedule"):
        ScheduleLR(opt, [])
    assert ScheduleLR(opt, cosine(10)).schedules == (cosine(10),)


def test_a_detached_scheduler_stays_detached_in_its_copies():
    import copy
    import pickle

    opt = _optimizer()
    sched = to_torch(opt, "linear(10)")
    sched.detach()
    for clone in (pickle.loads(pickle.dumps(sched)), copy.deepcopy(sched)):
        clone.optimizer.step()
        assert clone.current_step == 0
    attached = to_torch(opt, "linear(10)")
    clone = copy.deepcopy(attached)
    clone.optimizer.step()
    assert clone.current_step == 1 and attached.current_step == 0


# --- resolving a chain keeps each piece whole --------------------------------------------------

def test_a_resolved_chain_starts_each_piece_where_the_last_one_ends():
    # rounded on its own, the boundary 0.5*epoch + 2.5*epoch = 1173 steps at 391 steps an epoch,
    # but the pieces round to 196 + 978 = 1174: the cosine was cut a step before its end
    # (a warmup and the piece it ramps into end where their sum rounds to: 3 epochs, 1173)
    s = parse("warmup(0.5*epoch) >> cosine(2.5*epoch) >> constant(0.1)").resolve(steps_per_epoch=391)
    assert s == parse("warmup(196) >> cosine(977) >> constant(0.1)")
    # each boundary where its symbolic sum rounds to (0.25 and 0.6 of 10 steps: 3 and 6), and a
    # piece of one length takes the difference, so none is cut short (each piece rounded on its
    # own, 3 + 4, the errors added up: three pieces filling 1005 steps made 1006)
    s = parse("cosine(0.25*total) >> linear(0.35*total, start=0, end=1) >> constant()").resolve(total_steps=10)
    assert s == parse("cosine(3) >> linear(3, start=0, end=1) >> constant()")
    assert s(5) == pytest.approx(2 / 3) and s(6) == 1.0  # the linear ramps to its very end
    # an explicit cut is resolved on its own
    cut = parse("join([cosine(total), constant(0.1)], [0.5*total])").resolve(total_steps=11)
    assert cut == join([cosine(11), constant(0.1)], [6])


def test_units_that_contradict_or_would_be_ignored_are_refused():
    s = cosine(total - epoch)
    with pytest.raises(LrkitError, match="not both"):
        s.resolve(steps_per_epoch=10, batches_per_epoch=5, total_steps=100)
    with pytest.raises(LrkitError, match="grad_accum=2 goes with batches_per_epoch"):
        s.resolve(steps_per_epoch=10, grad_accum=2, total_steps=100)
    with pytest.raises(LrkitError, match="total_steps=100 but epochs=3 at 10 steps per epoch is 30"):
        s.resolve(steps_per_epoch=10, epochs=3, total_steps=100)
    with pytest.raises(LrkitError, match="total_steps=100 but epochs=3"):
        to_torch(_optimizer(), s, steps_per_epoch=10, epochs=3, total_steps=100)
    assert s.resolve(steps_per_epoch=10, epochs=3, total_steps=30) == cosine(20)
    assert s.resolve(batches_per_epoch=10, grad_accum=2, epochs=2) == cosine(5)


def test_counting_calls_warns_like_torch_when_step_comes_before_the_optimizer():
    opt = _optimizer()
    sched = to_torch(opt, "linear(4)", count="calls")
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    for count in ("calls", "optimizer"):  # the usual order, or counting optimizer steps: silent
        opt = _optimizer()
        sched = to_torch(opt, "linear(4)", count=count)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if count == "optimizer":
                sched.step()
            opt.step()
            sched.step()
            opt.step()
            sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_a_float_tensor_step_is_a_step_as_the_float_is():
    # cosine(10)(torch.tensor(5.)) said "step must be a number >= 0, got tensor(5.)"
    s = warmup(4) >> cosine(10)
    assert s(torch.tensor(5.0)) == s(5.0) == s(torch.tensor(5))
    assert s(torch.tensor(6.5)) == s(6.5) and s(np.array(6.5)) == s(6.5)
    assert s(torch.tensor(5.0, dtype=torch.bfloat16)) == s(5.0)
    with pytest.raises(LrkitError, match="step must be a number >= 0, got -1.0"):
        s(torch.tensor(-1.0))
    with pytest.raises(LrkitError, match="step must be finite"):
        s(torch.tensor(float("inf")))
    with pytest.raises(LrkitError, match=r"step must be a number >= 0, got tensor\(\[1\., 2\.\]\)"):
        s(torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("flag", [torch.tensor(True), np.bool_(True), True])
def test_a_boolean_is_no_step(flag):
    """torch.tensor(True) was read as step 1 (an integer tensor to operator.index)."""
    with pytest.raises(LrkitError, match="step must be a number >= 0"):
        parse("cosine(10)")(flag)


@pytest.mark.parametrize("total", [1000, 1005, 45, 333])
def test_a_warmup_chain_written_to_fill_the_run_fills_it_exactly(total):
    # each half rounded up on its own: 101 + 905 = 1006 steps for a 1005-step run, and the
    # linter called the spec too long (lrkit schedule show --strict failed)
    spec = "warmup(0.1*total) >> cosine(total - 0.1*total)"
    s = parse(spec).resolve(total_steps=total)
    assert s.length == total
    assert s.then.steps == total - s.steps
    s = parse("warmup(2*epoch) >> cosine(total - 2*epoch)").resolve(steps_per_epoch=100.25,
                                                                      epochs=10)
    assert s.length == 1003  # the run: 10 epochs of 100.25 steps, rounded half up
