"""to_torch: a real LRScheduler that counts applied optimizer steps and resumes exactly."""
import io
import math
import pickle
import warnings

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as L

from lrkit.errors import LrkitError
from lrkit.schedules import constant, cosine, epoch, linear, peak, plateau, to_torch, warmup
from lrkit.schedules.torch_scheduler import ScheduleLR

SPEC = "warmup(10, start=0.01) >> cosine(90, floor=0.1)"


def _data(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def _train(steps, *, stop=None, spec=SPEC, scaler=False):
    """Train a tiny nn.Linear; optionally checkpoint at ``stop`` and resume into fresh objects."""
    x, y = _data()
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    sched = to_torch(opt, spec)
    amp = torch.amp.GradScaler("cpu") if scaler else None
    rates, losses = [], []
    for t in range(steps):
        if t == stop:
            buf = io.BytesIO()
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(),
                        "amp": amp.state_dict() if amp else None}, buf)
            buf.seek(0)
            ckpt = torch.load(buf, weights_only=True)
            model = nn.Linear(4, 1)
            opt = torch.optim.Adam(model.parameters(), lr=0.05)
            sched = to_torch(opt, spec)
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["opt"])
            sched.load_state_dict(ckpt["sched"])
            if amp:
                amp = torch.amp.GradScaler("cpu")
                amp.load_state_dict(ckpt["amp"])
        i = (t * 8) % 64
        rates.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[i:i + 8]), y[i:i + 8])
        losses.append(loss.item())
        if amp:
            amp.scale(loss).backward()
            amp.step(opt)
            amp.update()
        else:
            loss.backward()
            opt.step()
        sched.step()
    return rates, losses, [p.detach().clone() for p in model.parameters()]


def test_short_training_run_learns_and_resumes_bit_for_bit():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rates, losses, params = _train(100)
        rates2, losses2, params2 = _train(100, stop=37)
    assert sum(losses[-10:]) < 0.2 * sum(losses[:10])
    assert rates == rates2 and losses == losses2
    assert all(torch.equal(a, b) for a, b in zip(params, params2))
    assert rates[0] == pytest.approx(0.05 * 0.01) and max(rates) == pytest.approx(0.05)


def test_resume_with_grad_scaler():
    assert _train(40, scaler=True)[0] == _train(40, stop=13, scaler=True)[0]


def test_is_a_torch_lr_scheduler_with_small_state():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = to_torch(opt, SPEC)
    assert isinstance(sched, L.LRScheduler) and isinstance(sched, ScheduleLR)
    state = sched.state_dict()
    assert state == {"step": 0, "base_lrs": [0.1], "plateau": [None], "schedules": [SPEC],
                     "count": "optimizer", "scale": 1.0}
    assert sched.get_last_lr() == [pytest.approx(0.001)]
    with pytest.raises(LrkitError, match="not an lrkit ScheduleLR state_dict"):
        sched.load_state_dict({"last_epoch": 3})


def _skip_step(model, opt, scaler):
    """One GradScaler step whose gradients hold an inf: the scaler skips optimizer.step()."""
    opt.zero_grad()
    scaler.scale(model(torch.ones(2, 4)).sum()).backward()
    model.weight.grad[0, 0] = float("inf")
    scaler.step(opt)
    scaler.update()


def _good_step(model, opt, scaler):
    opt.zero_grad()
    scaler.scale(model(torch.ones(2, 4)).sum()).backward()
    scaler.step(opt)
    scaler.update()


def test_a_step_skipped_by_grad_scaler_does_not_advance_the_schedule_unlike_torch():
    torch.manual_seed(0)
    ours_model, ref_model = nn.Linear(4, 1), nn.Linear(4, 1)
    ours_opt = torch.optim.SGD(ours_model.parameters(), lr=1.0)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=1.0)
    ours = to_torch(ours_opt, linear(10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = L.LinearLR(ref_opt, start_factor=1.0, end_factor=1e-9, total_iters=10)
    ours_scaler, ref_scaler = torch.amp.GradScaler("cpu"), torch.amp.GradScaler("cpu")
    for do in (_good_step, _skip_step, _skip_step, _good_step):
        do(ours_model, ours_opt, ours_scaler)
        do(ref_model, ref_opt, ref_scaler)
        ours.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref.step()
    assert ours.current_step == 2  # two optimizer steps were applied
    assert ours_opt.param_groups[0]["lr"] == pytest.approx(0.8)
    assert ref_opt.param_groups[0]["lr"] == pytest.approx(0.6, rel=1e-6)  # torch counted all 4


def test_step_is_idempotent_and_calls_mode_counts_calls():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = to_torch(opt, linear(10))
    opt.step()
    sched.step()
    sched.step()  # a second call in the same iteration changes nothing
    assert sched.current_step == 1 and opt.param_groups[0]["lr"] == pytest.approx(0.9)
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    calls = to_torch(opt2, linear(10), count="calls")
    calls.step()
    calls.step()
    assert calls.current_step == 2 and opt2.param_groups[0]["lr"] == pytest.approx(0.8)


def test_pickles_and_keeps_following_the_optimizer():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = to_torch(opt, SPEC)
    for _ in range(5):
        opt.step()
    clone = pickle.loads(pickle.dumps(sched))
    assert clone.current_step == 5 and clone.get_last_lr() == sched.get_last_lr()
    clone.optimizer.step()
    assert clone.current_step == 6 and sched.current_step == 5
    assert clone.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (warmup(10, start=0.01) >> cosine(90, floor=0.1))(6))


def test_tensor_learning_rates_are_filled_in_place():
    lr = torch.tensor(0.01)
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(3))], lr=lr)
    sched = to_torch(opt, cosine(10))
    group_lr = opt.param_groups[0]["lr"]
    for _ in range(4):
        opt.param_groups[0]["params"][0].grad = torch.ones(3)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] is group_lr and isinstance(group_lr, torch.Tensor)
    assert group_lr.item() == pytest.approx(0.01 * cosine(10)(4))
    last = sched.get_last_lr()[0]
    assert isinstance(last, torch.Tensor) and last is not group_lr


def test_parameter_groups_keep_their_ratios_or_get_their_own_schedule():
    def groups():
        a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
        return torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])

    opt = groups()
    to_torch(opt, cosine(10) * 0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.005])
    opt = groups()
    to_torch(opt, peak(constant(), 1.0))  # absolute: first group gets the rate, ratios kept
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.0, 0.1])
    opt = groups()
    to_torch(opt, ["cosine(10)", peak(constant(0.5), 2.0)])
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 1.0])
    with pytest.raises(LrkitError, match="3 schedules for 2 parameter groups"):
        to_torch(groups(), ["cosine(10)"] * 3)


def test_units_are_resolved_by_to_torch():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = to_torch(opt, warmup(2 * epoch) >> cosine(8 * epoch), batches_per_epoch=10, grad_accum=2)
    assert sched.schedules[0] == warmup(10) >> cosine(40)
    with pytest.raises(LrkitError, match="steps_per_epoch"):
        to_torch(opt, warmup(2 * epoch) >> cosine(10))


def test_plateau_composes_with_warmup_which_torch_cannot():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        L.SequentialLR(opt, [L.LinearLR(opt, start_factor=0.1, total_iters=5),
                             L.ReduceLROnPlateau(opt)], milestones=[5])
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = to_torch(opt, plateau(warmup(5) >> constant(), factor=0.5, patience=2))
    seen = []
    for t in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        if t % 2 == 1:
            sched.step(1.0)  # step(metrics) reports a flat validation loss every other step
    assert seen[:6] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])  # the warmup is intact
    assert seen[-1] == pytest.approx(0.5)  # and the plateau halved the rate afterwards
    state = sched.state_dict()
    assert state["plateau"][0]["reductions"] == 1
    with pytest.raises(LrkitError, match="has no plateau"):
        to_torch(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), cosine(10)).report(1.0)


def test_dropped_or_detached_scheduler_stops_following_the_optimizer():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = to_torch(opt, linear(10))
    sched.detach()
    opt.step()
    assert sched.current_step == 0
    to_torch(opt, linear(10, start=0.5, end=0.5))  # not kept anywhere: garbage
    fresh = to_torch(opt, constant(0.25))
    opt.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25)
    assert fresh.current_step == 1


def test_rejects_non_optimizers_and_bad_options():
    with pytest.raises(LrkitError, match="torch.optim.Optimizer"):
        to_torch(object(), cosine(10))
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(LrkitError, match="count='epochs' is not allowed"):
        to_torch(opt, cosine(10), count="epochs")


# --- torch's recursive/chained schedulers vs lrkit's closed form, side by side ---------------

def _torch_seq(opt):
    return L.SequentialLR(opt, [L.LinearLR(opt, start_factor=0.01, total_iters=10),
                                L.CosineAnnealingLR(opt, T_max=90, eta_min=0.01)], milestones=[10])


def _resume_run(make, n=100, stop=None, optimizer_first=False):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = make(opt)
    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(n):
            if t == stop:
                ckpt = pickle.loads(pickle.dumps({"opt": opt.state_dict(), "sched": sched.state_dict()}))
                opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
                if optimizer_first:  # a common order: restore the optimizer, then build the scheduler
                    opt.load_state_dict(ckpt["opt"])
                    sched = make(opt)
                else:  # the order torch documents
                    sched = make(opt)
                    opt.load_state_dict(ckpt["opt"])
                sched.load_state_dict(ckpt["sched"])
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return rates


def test_torch_sequential_lr_drifts_on_resume_where_lrkit_does_not():
    lrkit = lambda opt: to_torch(opt, "warmup(10, start=0.01) >> cosine(90, floor=0.01)")  # noqa: E731
    straight = _resume_run(_torch_seq)
    assert _resume_run(_torch_seq, stop=40) == pytest.approx(straight)  # documented order: fine
    drifted = _resume_run(_torch_seq, stop=40, optimizer_first=True)
    # rebuilding the schedulers on the restored optimizer re-runs LinearLR's constructor on the
    # restored rate (x start_factor) and the recursive cosine carries that on: the run collapses
    # to eta_min at step 40 instead of continuing from 0.75
    assert straight[40] == pytest.approx(0.7525) and drifted[40] == pytest.approx(0.01)
    assert max(abs(a - b) / b for a, b in zip(drifted[40:], straight[40:])) > 0.9
    ours = _resume_run(lrkit)
    assert ours == pytest.approx(straight, rel=1e-9)
    assert _resume_run(lrkit, stop=40) == ours
    assert _resume_run(lrkit, stop=40, optimizer_first=True) == ours  # exact in either order


def test_torch_recursive_exponential_drifts_from_its_closed_form_lrkit_is_exact():
    n = 3000
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = L.ExponentialLR(opt, gamma=0.999)
        recursive = []
        for _ in range(n):
            recursive.append(opt.param_groups[0]["lr"])
            opt.step()
            ref.step()
    closed = [0.999 ** t for t in range(n)]
    assert any(a != b for a, b in zip(recursive, closed))  # product of n roundings drifts
    assert max(abs(a - b) / b for a, b in zip(recursive, closed)) < 1e-9  # ...but only a little
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    ours = to_torch(opt2, "exponential(0.999)")
    got = []
    for _ in range(n):
        got.append(opt2.param_groups[0]["lr"])
        opt2.step()
        ours.step()
    assert got == closed  # bit for bit the closed form, at every step


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1], ids=["nan", "inf", "negative"])
def test_a_group_rate_that_is_not_finite_or_is_negative_is_refused_naming_the_group(bad):
    # it used to warn that the NaN rate "was changed outside this ScheduleLR" and yield NaN rates
    opt = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))]},
                           {"params": [nn.Parameter(torch.zeros(1))]}], lr=0.1)
    opt.param_groups[1]["lr"] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(LrkitError, match=rf"parameter group 1 has learning rate {bad!r}; "
                                             r".*finite number >= 0"):
            to_torch(opt, "cosine(10)")
        opt.param_groups[1]["lr"] = 0.05  # fixed, the next scheduler takes it up
        sched = to_torch(opt, "cosine(10)")
        assert sched.get_last_lr() == [0.1, 0.05]
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "lr": bad})
    with pytest.raises(LrkitError, match=rf"parameter group 2 has learning rate {bad!r}"):
        opt.step()


def test_a_nan_group_rate_in_a_state_dict_is_refused():
    sched = to_torch(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), "cosine(10)")
    state = sched.state_dict()
    state["base_lrs"] = [float("nan")]
    with pytest.raises(LrkitError, match=r"state_dict base_lrs\[0\] must be a finite number"):
        sched.load_state_dict(state)


def test_a_nan_rate_alone_is_no_change_from_outside():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = to_torch(opt, "cosine(10)")
    sched._last_lr = [float("nan")]  # NaN != NaN: the check must not take it for another writer
    opt.param_groups[0]["lr"] = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()
    opt.param_groups[0]["lr"] = 0.5  # a real change from outside still warns
    with pytest.warns(UserWarning, match="changed outside"):
        sched.step()


@pytest.mark.parametrize("count", ["optimizer", "calls"])
def test_step_with_an_epoch_or_a_wrong_type_says_so_not_plateau_advice(count):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = to_torch(opt, "cosine(10)", count=count)
    counted = "applied optimizer steps" if count == "optimizer" else r"its step\(\) calls"
    for epoch in (3, 2.0, torch.tensor(3)):
        with pytest.raises(LrkitError, match=rf"step\(\) takes no epoch, got .*counts {counted} "
                                             r"by itself.*call step\(\) with no argument"):
            sched.step(epoch)
    with pytest.raises(LrkitError, match=r"step\(\) takes no epoch, got epoch=3"):
        sched.step(epoch=3)
    with pytest.raises(LrkitError, match=r"step\(\) takes no argument here, got str 'x'"):
        sched.step("x")
    assert sched.current_step == 0  # nothing counted by the refused calls
    # a plateau schedule still takes its metric, as a number of any kind
    sched = to_torch(opt, plateau(constant(), factor=0.5, patience=0))
    sched.step(1.0)
    sched.step(torch.tensor(2.0))
    assert sched.plateau_scale == [0.5]
    with pytest.raises(LrkitError, match=r"step\(\) needs one number \(the validation metric\), "
                                         r"got str 'x'"):
        sched.step("x")


@pytest.mark.parametrize("fused", [False, True])
def test_a_step_the_scaler_skips_does_not_move_the_schedule_with_a_fused_optimizer(fused):
    # a fused Adam gets the scaler's overflow flag and skips the update inside its kernel, but
    # its step() runs: the post-step hook counted it, and the schedule moved on a skipped step
    import warnings

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=fused)
    scheduler = to_torch(optimizer, "warmup(4, start=0.1) >> cosine(10)")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 4)
    counts, applied = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(4):
            optimizer.zero_grad()
            before = model.weight.detach().clone()
            x = torch.ones(1, 2) * (math.inf if step == 1 else 1.0)
            scaler.scale(model(x).sum()).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            applied.append(not torch.equal(before, model.weight))
            counts.append(scheduler.current_step)
    assert applied == [True, False, True, True]
    assert counts == [1, 1, 2, 3]
