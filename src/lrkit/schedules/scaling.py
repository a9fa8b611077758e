"""Batch-size rescaling: move a tuned schedule to another batch size.

* ``linear``: lr grows with the batch (Goyal et al. 2017, for SGD).
* ``sqrt``: lr grows with the square root of the batch (Krizhevsky 2014; Malladi et al. 2022
  for Adam-type optimizers).

Warmups are kept the same length *in samples* by default, so a warmup of 500 steps at batch 256
becomes 125 steps at batch 1024; lengths in epochs or fractions of the run are already sample
based and stay as they are.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import replace
from typing import Any

from lrkit.errors import is_real, plain_int, require
from lrkit.schedules.base import (Join, Peak, Scale, Schedule, Warmup, Wrapping, _add_lengths,
                                  map_schedule)
from lrkit.schedules.families.plateau import Plateau
from lrkit.schedules.families.wsd import WSD
from lrkit.schedules.units import Duration

__all__ = ["linear_rule", "sqrt_rule", "batch_factor", "rescale"]

_RULES = ("linear", "sqrt")


def _positive_finite(name: str, value: Any) -> float:
    """``value`` as a float when it is a positive finite real number (numpy's scalars and 0-dim
    integer tensors included; a bool, a string or None is not), else a clear error."""
    value = plain_int(value)
    require(is_real(value) and 0 < float(value) < math.inf,
            f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_batches(base_batch: int, batch: int) -> tuple[float, float]:
    return _positive_finite("base_batch", base_batch), _positive_finite("batch", batch)


def batch_factor(base_batch: int, batch: int, rule: str = "linear") -> float:
    """The learning-rate factor for going from ``base_batch`` to ``batch``."""
    base_batch, batch = _check_batches(base_batch, batch)
    require(rule in _RULES, f"rule={rule!r} is not allowed; allowed values: 'linear', 'sqrt'")
    ratio = batch / base_batch
    require(0 < ratio < math.inf, f"batch / base_batch = {batch!r} / {base_batch!r} is outside "
                                  "the range of floats; give batch sizes of a sensible size")
    return ratio if rule == "linear" else math.sqrt(ratio)


def _rule(lr: float, base_batch: int, batch: int, rule: str) -> float:
    lr = _positive_finite("lr", lr)
    out = lr * batch_factor(base_batch, batch, rule)
    require(0 < out < math.inf, f"lr={lr!r} moved from batch {base_batch!r} to {batch!r} "
                                f"({rule} rule) is outside the range of floats")
    return out


def linear_rule(lr: float, base_batch: int, batch: int) -> float:
    """``lr * batch / base_batch``."""
    return _rule(lr, base_batch, batch, "linear")


def sqrt_rule(lr: float, base_batch: int, batch: int) -> float:
    """``lr * sqrt(batch / base_batch)``."""
    return _rule(lr, base_batch, batch, "sqrt")


def _scale_steps(value: Any, ratio: float, allow_zero: bool) -> Any:
    if isinstance(value, Duration):
        return Duration(value.steps * ratio, value.epochs, value.fraction) if value.steps else value
    if value == 0 and allow_zero:
        return 0
    return max(1, int(math.floor(value * ratio + 0.5)))


def rescale(schedule: Any, base_batch: int, batch: int, *, rule: str = "linear",
            warmup: str = "samples") -> Schedule:
    """``schedule`` moved from ``base_batch`` to ``batch``: peak scaled by the rule, and warmups
    kept in samples (``warmup="samples"``) or in steps (``warmup="steps"``).

    A relative schedule is wrapped in (or folds into) ``scale``; an absolute one gets a new peak.
    """
    from lrkit.schedules.spec import from_config

    schedule = from_config(schedule)
    require(warmup in ("samples", "steps"),
            f"warmup={warmup!r} is not allowed; allowed values: 'samples', 'steps'")
    factor = batch_factor(base_batch, batch, rule)
    ratio = base_batch / batch

    def fix_warmup(node: Schedule) -> Schedule | None:
        if warmup == "steps":
            return None
        if isinstance(node, Warmup):
            # (a warmup of 0 steps stays 0: it was 1, and the run started at rate 0)
            return replace(node, steps=_scale_steps(node.steps, ratio, True))
        if isinstance(node, WSD) and node.warmup != 0:
            warm = _scale_steps(node.warmup, ratio, True)
            lengths = (warm, node.decay, node.steps)  # (in epochs or fractions: not known yet)
            require(not all(isinstance(n, int) for n in lengths) or warm + node.decay <= node.steps,
                    f"rescale from batch {base_batch} to {batch} keeps the warmup's samples: "
                    f"{node!r} would warm up for {warm} steps, which with its decay of "
                    f"{node.decay} no longer fits its {node.steps} steps; pass warmup='steps' "
                    "(keep the warmup's steps) or lengthen the schedule")
            return replace(node, warmup=warm)
        return None

    # a join's boundaries move with its pieces: in warmup(500) >> cosine(10000) >> constant(0.1)
    # the constant starts where the cosine ends, whatever length the warmup gets
    schedule = map_schedule(schedule, fix_warmup, rejoin=_moved_boundaries)
    if isinstance(schedule, Peak):
        return replace(schedule, lr=schedule.lr * factor)
    if isinstance(schedule, Plateau):
        return replace(schedule, schedule=_scaled(schedule.schedule, factor))
    return _scaled(schedule, factor)


def _scaled(schedule: Schedule, factor: float) -> Schedule:
    if factor == 1.0:
        return schedule
    if isinstance(schedule, Scale):
        return replace(schedule, factor=schedule.factor * factor)
    return Scale(schedule, factor)


# ------------------------------------------------------------------------------------------
# a join's boundaries follow its pieces when their warmups change length
# ------------------------------------------------------------------------------------------

def _moved_boundaries(old: Join, pieces: tuple[Schedule, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    start_old: Any = 0
    start_new: Any = 0
    for b, before, after in zip(old.boundaries, old.schedules, pieces):
        if all(isinstance(x, int) for x in (b, start_old, start_new)) and after.is_resolved:
            end = start_new + _moved_step(before, after, b - start_old)
            if out:  # a cut inside a shrunk warmup still comes after the last one
                end = max(end, out[-1] + 1)
        elif _add_lengths(start_old, before.length) == b and after.length is not None:
            end = _add_lengths(start_new, after.length)  # a >> b: b starts where a ends
        else:  # a cut in epochs or fractions of the run: same place in its piece
            end = b if start_new == start_old else start_new + (b - start_old)
        out.append(end)
        start_old, start_new = b, end
    return tuple(out)


def _moved_step(before: Schedule, after: Schedule, t: int) -> int:
    if isinstance(before, Warmup) and isinstance(after, Warmup):
        n, m = before.steps, after.steps
        if t <= n:
            return max(1, int(math.floor(t * m / n + 0.5))) if t else 0
        rest = t - n
        return m + (rest if before.then is None else _moved_step(before.then, after.then, rest))
    if isinstance(before, Join) and isinstance(after, Join):
        i = bisect_right(before.boundaries, t)
        start_old = before.boundaries[i - 1] if i else 0
        start_new = after.boundaries[i - 1] if i else 0
        return start_new + _moved_step(before.schedules[i], after.schedules[i], t - start_old)
    if isinstance(before, WSD) and isinstance(after, WSD) and before.warmup and t < before.warmup:
        return int(math.floor(t * after.warmup / before.warmup + 0.5))
    if isinstance(before, Wrapping) and isinstance(after, Wrapping):
        return _moved_step(before.schedule, after.schedule, t)
    return t
