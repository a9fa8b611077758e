"""Hypothesis strategies for random *valid* schedules (resolved, in whole steps)."""
from __future__ import annotations

from hypothesis import strategies as st

from lrkit.errors import LrkitError
from lrkit.schedules import (WSD, Constant, Cosine, Cyclic, Exponential, Floor, InverseSqrt, Join,
                             Linear, MultiStep, OneCycle, Peak, Plateau, Polynomial, Restarts,
                             Scale, Step, Warmup)

lengths = st.integers(min_value=1, max_value=300)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
gammas = st.floats(min_value=0.05, max_value=1.0, allow_nan=False)


@st.composite
def onecycles(draw):
    steps = draw(st.integers(min_value=8, max_value=300))
    three = draw(st.booleans())
    hi = (steps + 1) / (2 * steps) if three else 1.0
    pct = draw(st.floats(min_value=1.05 / steps + 1e-9, max_value=hi - 1e-6, allow_nan=False,
                         exclude_max=True))
    try:
        return OneCycle(steps, pct=pct, div=draw(st.floats(1.0, 50.0)),
                        final_div=draw(st.floats(1.0, 1e4)),
                        anneal=draw(st.sampled_from(["cosine", "linear"])), three_phase=three)
    except LrkitError:
        return OneCycle(100)


@st.composite
def wsds(draw):
    steps = draw(st.integers(min_value=2, max_value=300))
    warm = draw(st.integers(min_value=0, max_value=steps - 1))
    decay = draw(st.integers(min_value=1, max_value=steps - warm))
    shapes = st.sampled_from(["linear", "cosine", "1-sqrt"])
    return WSD(steps, decay, warmup=warm, shape=draw(shapes), warmup_shape=draw(shapes),
               floor=draw(unit))


#: one strategy per family, so tests can say "for every family"
FAMILIES = {
    "constant": st.builds(Constant, st.floats(0.0, 2.0)),
    "step": st.builds(Step, st.integers(1, 60), gammas),
    "multistep": st.builds(MultiStep, st.lists(st.integers(0, 300), max_size=5).map(sorted), gammas),
    "exponential": st.builds(Exponential, st.floats(0.9, 1.0), unit),
    "linear": st.builds(Linear, lengths, unit, unit),
    "polynomial": st.builds(Polynomial, lengths, st.floats(0.2, 4.0), unit),
    "inverse_sqrt": st.builds(InverseSqrt, lengths),
    "cosine": st.builds(Cosine, lengths, unit),
    "restarts": st.builds(Restarts, st.integers(1, 60), st.sampled_from([1.0, 1.5, 2.0, 3.0]),
                          unit, st.floats(0.3, 1.0)),
    "cyclic": st.builds(Cyclic, st.integers(1, 40), st.none() | st.integers(1, 40), unit,
                        st.sampled_from(["triangular", "triangular2", "exp_range"]),
                        st.floats(0.95, 1.0)),
    "onecycle": onecycles(),
    "wsd": wsds(),
}

families = st.one_of(*FAMILIES.values())


@st.composite
def joins(draw, kids):
    pieces = draw(st.lists(kids, min_size=2, max_size=3))
    cuts = sorted(draw(st.sets(st.integers(1, 400), min_size=len(pieces) - 1,
                               max_size=len(pieces) - 1)))
    return Join(tuple(pieces), tuple(cuts))


@st.composite
def chains(draw, kids):
    """``a >> b`` where ``a`` has an end."""
    left = draw(kids.filter(lambda s: s.length is not None))
    return left >> draw(kids)


def _combine(kids):
    return st.one_of(
        st.builds(Warmup, lengths, unit, st.sampled_from(["linear", "cosine", "exponential"]),
                  st.none() | kids),
        joins(kids),
        chains(kids),
        st.builds(Scale, kids, st.floats(0.1, 3.0)),
        st.builds(Floor, kids, st.floats(0.0, 0.5)),
    )


cores = st.recursive(families, _combine, max_leaves=4)


@st.composite
def schedules(draw):
    """Any valid schedule, possibly with plateau() and peak() around it."""
    s = draw(cores)
    if draw(st.booleans()):
        s = Plateau(s, factor=draw(st.floats(0.05, 0.95)), patience=draw(st.integers(0, 5)))
    if draw(st.booleans()):
        s = Peak(s, draw(st.floats(1e-5, 1.0)))
    return s
