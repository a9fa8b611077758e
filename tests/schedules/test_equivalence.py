"""Each family matches PyTorch's own scheduler (1e-9 relative over its whole horizon), and
warmup-stable-decay / inverse-sqrt match transformers' published formulas."""
import math
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as L

from lrkit.schedules import (constant, cosine, cyclic, exponential, inverse_sqrt, linear,
                             multistep, onecycle, parse, plateau, polynomial, restarts, step,
                             to_torch, warmup, wsd)

RTOL = 1e-9


def _optimizer(lr):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=0.9)


def torch_rates(factory, n, lr=0.1):
    """Rates torch's scheduler sets for steps 0..n-1 (standard optimizer.step/scheduler.step loop)."""
    opt = _optimizer(lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = factory(opt)
        out = []
        for _ in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return out


def lrkit_rates(schedule, n, lr=0.1):
    """Rates lrkit's ScheduleLR sets on a real optimizer for steps 0..n-1."""
    opt = _optimizer(lr)
    sched = to_torch(opt, schedule)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # lrkit's scheduler must not trigger torch's warnings
        for _ in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return out


def assert_close(ours, theirs, lr=0.1):
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-15 * lr), (t, a, b)


CASES = [
    ("StepLR", lambda o: L.StepLR(o, step_size=7, gamma=0.5), step(7, gamma=0.5), 60),
    ("MultiStepLR", lambda o: L.MultiStepLR(o, milestones=[5, 20, 20, 41], gamma=0.3),
     multistep([5, 20, 20, 41], gamma=0.3), 60),
    ("ExponentialLR", lambda o: L.ExponentialLR(o, gamma=0.97), exponential(0.97), 400),
    ("CosineAnnealingLR", lambda o: L.CosineAnnealingLR(o, T_max=100, eta_min=0.001),
     cosine(100, floor=0.01), 101),
    ("CosineAnnealingLR eta_min=0", lambda o: L.CosineAnnealingLR(o, T_max=37), cosine(37), 38),
    ("CosineAnnealingWarmRestarts", lambda o: L.CosineAnnealingWarmRestarts(o, T_0=7, eta_min=0.001),
     restarts(7, floor=0.01), 60),
    ("CosineAnnealingWarmRestarts T_mult=2",
     lambda o: L.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=0.001),
     restarts(10, mult=2, floor=0.01), 310),
    ("CosineAnnealingWarmRestarts T_mult=3",
     lambda o: L.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=3), restarts(3, mult=3), 400),
    ("LinearLR", lambda o: L.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=20),
     linear(20, start=0.25, end=0.9), 40),
    ("PolynomialLR", lambda o: L.PolynomialLR(o, total_iters=30, power=2.0), polynomial(30, power=2), 45),
    ("PolynomialLR power=0.5", lambda o: L.PolynomialLR(o, total_iters=17, power=0.5),
     polynomial(17, power=0.5), 25),
]
for mode in ("triangular", "triangular2", "exp_range"):
    CASES.append((f"CyclicLR {mode}",
                  lambda o, m=mode: L.CyclicLR(o, base_lr=0.1 * 0.1, max_lr=0.1, step_size_up=5,
                                               step_size_down=7, mode=m, gamma=0.98,
                                               cycle_momentum=False),
                  cyclic(5, down=7, low=0.1, mode=mode, gamma=0.98), 100))
CASES.append(("CyclicLR symmetric",
              lambda o: L.CyclicLR(o, base_lr=0.02, max_lr=0.1, step_size_up=4, cycle_momentum=False),
              cyclic(4, low=0.2), 50))
for anneal, torch_anneal in (("cosine", "cos"), ("linear", "linear")):
    for three in (False, True):
        CASES.append((f"OneCycleLR {anneal} three_phase={three}",
                      lambda o, a=torch_anneal, t=three: L.OneCycleLR(
                          o, max_lr=0.1, total_steps=100, pct_start=0.3, anneal_strategy=a,
                          three_phase=t, div_factor=25.0, final_div_factor=1e4,
                          cycle_momentum=False),
                      onecycle(100, pct=0.3, anneal=anneal, three_phase=three), 100))
CASES.append(("OneCycleLR odd", lambda o: L.OneCycleLR(o, max_lr=0.1, total_steps=37, pct_start=0.25,
                                                        div_factor=10.0, final_div_factor=100.0,
                                                        cycle_momentum=False),
              onecycle(37, pct=0.25, div=10, final_div=100), 37))
CASES.append(("SequentialLR(LinearLR, CosineAnnealingLR)",
              lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.01, total_iters=10),
                                           L.CosineAnnealingLR(o, T_max=50, eta_min=0.001)],
                                       milestones=[10]),
              warmup(10, start=0.01) >> cosine(50, floor=0.01), 60))


@pytest.mark.parametrize("name,factory,schedule,n", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_scheduler(name, factory, schedule, n):
    assert_close(lrkit_rates(schedule, n), torch_rates(factory, n))
    # the pure function gives the same numbers as the scheduler driving a real optimizer
    assert_close([0.1 * schedule(t) for t in range(n)], torch_rates(factory, n))


def test_spec_text_gives_the_same_rates_as_the_python_api():
    assert lrkit_rates("warmup(10, start=0.01) >> cosine(50, floor=0.01)", 60) == \
        lrkit_rates(warmup(10, start=0.01) >> cosine(50, floor=0.01), 60)


@pytest.mark.parametrize("mode,threshold_mode,cooldown", [("min", "rel", 0), ("max", "abs", 2),
                                                          ("min", "abs", 1), ("max", "rel", 0)])
def test_plateau_matches_reduce_lr_on_plateau(mode, threshold_mode, cooldown):
    gen = torch.Generator().manual_seed(3)
    metrics = (torch.rand(60, generator=gen) + torch.linspace(1, 0.5, 60)).tolist()
    ref_opt = _optimizer(0.1)
    ref = L.ReduceLROnPlateau(ref_opt, mode=mode, factor=0.5, patience=2, threshold=0.01,
                              threshold_mode=threshold_mode, cooldown=cooldown)
    opt = _optimizer(0.1)
    ours = to_torch(opt, plateau(constant(), factor=0.5, patience=2, mode=mode, threshold=0.01,
                                 threshold_mode=threshold_mode, cooldown=cooldown))
    for m in metrics:
        ref.step(m)
        ours.report(m)
        assert math.isclose(opt.param_groups[0]["lr"], ref_opt.param_groups[0]["lr"], rel_tol=RTOL)
    assert ours.plateau_scale[0] < 1.0  # the sequence did trigger reductions


# --- transformers' formulas, re-derived here from their published definitions ----------------

def hf_wsd(t, *, num_warmup_steps, num_stable_steps, num_decay_steps, warmup_type, decay_type,
           min_lr_ratio, num_cycles=0.5):
    """transformers.optimization._get_wsd_scheduler_lambda (v4.48+)."""
    if t < num_warmup_steps:
        progress = float(t) / float(max(1, num_warmup_steps))
        if warmup_type == "linear":
            factor = progress
        elif warmup_type == "cosine":
            factor = 0.5 * (1.0 - math.cos(math.pi * progress))
        else:  # "1-sqrt"
            factor = 1.0 - math.sqrt(1.0 - progress)
        factor = factor * (1.0 - min_lr_ratio) + min_lr_ratio
        return max(0.0, factor)
    if t < num_warmup_steps + num_stable_steps:
        return 1.0
    if t < num_warmup_steps + num_stable_steps + num_decay_steps:
        progress = float(t - num_warmup_steps - num_stable_steps) / float(max(1, num_decay_steps))
        if decay_type == "linear":
            factor = 1.0 - progress
        elif decay_type == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
        else:  # "1-sqrt"
            factor = 1.0 - math.sqrt(progress)
        factor = factor * (1.0 - min_lr_ratio) + min_lr_ratio
        return max(0.0, factor)
    return min_lr_ratio


def hf_inverse_sqrt(t, *, num_warmup_steps, timescale=None):
    """transformers.optimization._get_inverse_sqrt_schedule_lr_lambda."""
    if timescale is None:
        timescale = num_warmup_steps or 10_000
    if t < num_warmup_steps:
        return float(t) / float(max(1, num_warmup_steps))
    shift = timescale - num_warmup_steps
    return 1.0 / math.sqrt((t + shift) / timescale)


@pytest.mark.parametrize("warmup_shape", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("floor,w,s,d", [(0.0, 10, 50, 40), (0.1, 0, 30, 20), (0.05, 7, 0, 13)])
def test_wsd_matches_transformers(warmup_shape, shape, floor, w, s, d):
    ours = wsd(w + s + d, d, warmup=w, shape=shape, warmup_shape=warmup_shape, floor=floor)
    for t in range(w + s + d + 10):
        ref = hf_wsd(t, num_warmup_steps=w, num_stable_steps=s, num_decay_steps=d,
                     warmup_type=warmup_shape, decay_type=shape, min_lr_ratio=floor)
        assert math.isclose(ours(t), ref, rel_tol=1e-12, abs_tol=1e-15), (t, ours(t), ref)


@pytest.mark.parametrize("w,timescale", [(100, None), (40, 1000), (0, 500), (1, None)])
def test_inverse_sqrt_matches_transformers(w, timescale):
    ts = timescale if timescale is not None else (w or 10_000)
    ours = (warmup(w) >> inverse_sqrt(ts)) if w else inverse_sqrt(ts)
    for t in range(0, 3000, 7):
        ref = hf_inverse_sqrt(t, num_warmup_steps=w, timescale=timescale)
        assert math.isclose(ours(t), ref, rel_tol=1e-12), (t, ours(t), ref)


def test_parse_gives_the_families_above():
    assert parse("restarts(10, mult=2, floor=0.01)") == restarts(10, mult=2, floor=0.01)
    assert parse("onecycle(100, anneal='linear', three_phase=True)") == \
        onecycle(100, anneal="linear", three_phase=True)
