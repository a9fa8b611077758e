"""Property tests over random valid schedules: round trip, bounds, monotonicity, continuity, resume."""
import io
import math
import pickle

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lrkit.schedules import (Peak, Plateau, from_config, from_json, parse, to_config, to_json,
                             to_spec, to_torch)
from tests.schedules.strategies import FAMILIES, cores, families, schedules

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _horizon(s, extra=20):
    n = s.length
    return (n if isinstance(n, int) else 400) + extra


@FAST
@given(schedules())
def test_round_trip_text_config_json_pickle(s):
    assert parse(to_spec(s)) == s
    assert from_config(to_config(s)) == s
    assert from_json(to_json(s)) == s
    assert pickle.loads(pickle.dumps(s)) == s


@FAST
@given(cores)
def test_values_stay_inside_the_bounds(s):
    lo, hi = s.bounds()
    tol = 1e-12 * max(1.0, abs(hi))
    for t in range(_horizon(s)):
        v = s(t)
        assert math.isfinite(v)
        assert lo - tol <= v <= hi + tol, (t, v, lo, hi)


@FAST
@given(cores)
def test_never_below_zero_not_even_by_rounding(s):
    # a negative rate ascends the loss: linear(101, start=0.1) ended at -1.4e-17 (within the
    # bounds' tolerance above), and to_torch set the optimizer's lr to -1.4e-18
    assert all(s(t) >= 0.0 for t in range(_horizon(s)))


def test_linear_ends_exactly_at_its_end():
    for start, end in ((0.1, 0.0), (0.7, 0.3), (0.3, 0.9), (1.0, 0.0)):
        for n in (3, 7, 101, 1000):
            s = parse(f"linear({n}, start={start}, end={end})")
            assert s(n) == end and s(n + 50) == end, (start, end, n)


@FAST
@given(families)
def test_families_stay_between_floor_and_peak(s):
    floor = getattr(s, "floor", getattr(s, "low", 0.0))
    peak = 1.0 if s.name not in ("constant", "linear") else s.bounds()[1]
    assume(floor <= peak)
    if s.name == "restarts":  # decayed cycle peaks may sit under the floor (lint: floor-above-peak)
        assume(s.decay == 1.0 or s.floor == 0.0)
    for t in range(_horizon(s)):
        assert floor - 1e-12 <= s(t) <= peak + 1e-12


@FAST
@given(cores)
def test_monotone_where_promised(s):
    direction = s.monotone
    assume(direction != 0)
    values = s.values(_horizon(s))
    for t in range(1, len(values)):
        step = values[t] - values[t - 1]
        assert step * direction >= -1e-12 * max(1.0, abs(values[t])), (t, values[t - 1], values[t])


@FAST
@given(cores, st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5))
def test_continuous_where_promised(s, fractions):
    """Read as a function of a real step, a continuous schedule has no jumps anywhere
    (in particular not at a warmup's hand-over or between one-cycle/WSD phases)."""
    assume(s.continuous)
    horizon = _horizon(s)
    points = [f * horizon for f in fractions]
    # the hand-over points, where a jump would show
    from lrkit.schedules.inspection import _events
    points += [float(t) for t, _ in _events(s, horizon)]
    for t in points:
        # a jump keeps the gap as eps shrinks; a continuous curve (even sqrt-like) closes it
        a = s(t)
        for side in (1.0, -1.0):
            if t + side * 1e-6 < 0:
                continue
            wide, narrow = abs(s(t + side * 1e-6) - a), abs(s(t + side * 1e-12) - a)
            assert narrow <= 1e-6 * max(1.0, abs(a)) or narrow < 0.5 * wide, (t, side, a)


# --- resume: stopped at a random step and resumed gives exactly the same rates --------------

def _run(schedule, n, stop=None, load_order="scheduler-first", lr=0.1):
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([param], lr=lr)
    sched = to_torch(opt, schedule)
    has_plateau = isinstance(schedule, Plateau) or (
        isinstance(schedule, Peak) and isinstance(schedule.schedule, Plateau))
    rates = []
    for t in range(n):
        if t == stop:
            buf = io.BytesIO()
            torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
            buf.seek(0)
            ckpt = torch.load(buf, weights_only=False)
            param = torch.nn.Parameter(torch.zeros(3))
            opt = torch.optim.SGD([param], lr=lr)
            if load_order == "optimizer-first":
                opt.load_state_dict(ckpt["opt"])
                sched = to_torch(opt, schedule)
            else:
                sched = to_torch(opt, schedule)
                opt.load_state_dict(ckpt["opt"])
            sched.load_state_dict(ckpt["sched"])
        rates.append(opt.param_groups[0]["lr"])
        param.grad = torch.ones(3)
        opt.step()
        sched.step()
        if has_plateau and t % 7 == 6:
            sched.report(1.0)  # a flat metric: the plateau rule reduces after `patience` reports
    return rates


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(), st.integers(5, 120), st.data())
def test_resume_mid_schedule_is_exact(schedule, n, data):
    stop = data.draw(st.integers(1, n - 1))
    order = data.draw(st.sampled_from(["scheduler-first", "optimizer-first"]))
    assert _run(schedule, n, stop, order) == _run(schedule, n)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_resume_is_exact_for_every_family(family, data):
    schedule = data.draw(FAMILIES[family])
    n = data.draw(st.integers(5, 150))
    stop = data.draw(st.integers(1, n - 1))
    assert _run(schedule, n, stop) == _run(schedule, n)
