"""Schedule shapes a recipe can use, as lrkit text specs of relative multipliers.

Every shape is written in whole optimizer steps for one training length, so the spec reads the
same in ``lrkit schedule show`` and needs nothing resolved. ``warmup`` is the warmup length in
steps (0 for none); all shapes reach the peak (1.0) when the warmup ends.
"""
from __future__ import annotations

from lrkit.errors import LrkitError

#: the warmup starts at 1% of the peak, not 0: a first step at rate 0 is wasted (lint 'zero-start')
WARMUP_START = 0.01

SHAPES = ("cosine", "linear", "wsd", "constant")


def shape_spec(shape: str, total: int, warmup: int, *, floor: float = 0.0,
               decay_fraction: float = 0.2) -> str:
    """The spec of ``shape`` over ``total`` steps with ``warmup`` warmup steps.

    * ``cosine``: warmup, then a half cosine to ``floor`` at the last step;
    * ``linear``: warmup, then a straight line to ``floor`` (Defazio et al. 2023);
    * ``wsd``: warmup, hold the peak, decay (1 - sqrt) over the last ``decay_fraction`` of the run;
    * ``constant``: warmup, then hold the peak.
    """
    if shape not in SHAPES:
        raise LrkitError(f"unknown schedule shape {shape!r}; allowed: {', '.join(SHAPES)}")
    if not (isinstance(total, int) and total >= 1):
        raise LrkitError(f"total steps must be an integer >= 1, got {total!r}")
    if not (isinstance(warmup, int) and 0 <= warmup < total):
        raise LrkitError(f"warmup must be a whole number of steps in [0, {total}), got {warmup!r}")
    rest = total - warmup
    head = f"warmup({warmup}, start={WARMUP_START:g}) >> " if warmup else ""
    if shape == "constant":
        return f"warmup({warmup}, start={WARMUP_START:g})" if warmup else "constant()"
    if shape == "cosine":
        tail = f"cosine({rest}, floor={floor:g})" if floor else f"cosine({rest})"
        return head + tail
    if shape == "linear":
        tail = f"linear({rest}, end={floor:g})" if floor else f"linear({rest})"
        return head + tail
    decay = max(1, int(round(decay_fraction * total)))
    decay = min(decay, rest)
    floor_text = f", floor={floor:g}" if floor else ""
    return head + f"wsd({rest}, decay={decay}{floor_text})"
