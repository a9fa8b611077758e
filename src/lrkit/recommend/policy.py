"""How a range test and a training budget turn into a recipe: peak rate, warmup, schedule shape.

Every constant here was chosen by measurement (``python benchmarks/recipe_quality.py --tune``,
on tasks that are not in the benchmark tables); the figures are quoted next to each choice.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from lrkit.recommend.shapes import shape_spec

VERSION = 1

#: warmup length, as a fraction of the run
WARMUP_FRACTION = 0.05
#: the schedule shape
SHAPE = "cosine"
#: peak = anchor x PEAK_FACTOR without confirmation runs (anchor = rate at the range test's
#: smoothed loss minimum)
PEAK_FACTOR = 0.25
#: confirmation candidates, as multiples of the anchor
CANDIDATE_FACTORS = (0.1, 0.25, 0.6)
#: length of one confirmation run (the whole schedule compressed to it)
CONFIRM_STEPS = 100
#: the best peak of a run h steps long is ~ (T/h)**HORIZON_EXPONENT times the best for T steps
HORIZON_EXPONENT = 0.0
#: the most the tuning may cost, as a fraction of one training run (range test + confirmations)
MAX_COST = 0.20
#: validation batches each confirmation run is scored on
CONFIRM_VAL_BATCHES = 5


@dataclasses.dataclass
class Plan:
    anchor: float | None
    anchor_note: str
    shape: str
    total_steps: int
    warmup_steps: int
    spec: str
    default_peak: float
    candidates: list[float]
    confirm_steps: int
    confirm_spec: str | None
    notes: list[str]


@dataclasses.dataclass
class Choice:
    peak_lr: float
    notes: list[str]


def round_rate(lr: float) -> float:
    """Three significant digits: short in code and configs, far finer than any rate matters."""
    return float(f"{lr:.3g}")


def anchor_from(finder: Any, current_lr: float | None) -> tuple[float | None, str]:
    """The rate at the smoothed minimum of the range-test loss: where training turns unstable."""
    lrs = list(getattr(finder, "lrs", []) or [])
    smooth = list(getattr(finder, "smoothed", []) or [])
    pairs = [(lr, v) for lr, v in zip(lrs, smooth)
             if lr and lr > 0 and v is not None and math.isfinite(v)]
    fell = getattr(finder, "good_range", None) is not None or getattr(finder, "suggested_lr", None)
    if len(pairs) >= 8 and fell:
        lr, _ = min(pairs, key=lambda p: p[1])
        return lr, f"the range test's loss was lowest at {lr:.3g}"
    if getattr(finder, "suggested_lr", None):
        lr = float(finder.suggested_lr) / PEAK_FACTOR
        return lr, f"the range test suggested {finder.suggested_lr:.3g}"
    return None, "the range test found no usable curve (the loss never fell)"


def plan(finder: Any, *, total_steps: int, optimizer: str, current_lr: float | None,
         confirm: bool) -> Plan:
    warmup = int(round(WARMUP_FRACTION * total_steps))
    warmup = min(warmup, total_steps - 1)
    spec = shape_spec(SHAPE, total_steps, warmup)
    anchor, anchor_note = anchor_from(finder, current_lr)
    notes = []
    if anchor is None:
        base = current_lr if current_lr and current_lr > 0 else 1e-3
        notes.append(f"{anchor_note}: the peak falls back to your optimizer's rate {base:.3g}; "
                     "check the model and data, then rerun")
        return Plan(None, anchor_note, SHAPE, total_steps, warmup, spec, round_rate(base), [], 0,
                    None, notes)
    default = round_rate(anchor * PEAK_FACTOR)
    candidates = [round_rate(anchor * f) for f in CANDIDATE_FACTORS]
    finder_steps = len(getattr(finder, "lrs", []) or [])
    room = MAX_COST * total_steps - finder_steps
    confirm_steps = CONFIRM_STEPS if confirm and room >= len(candidates) * CONFIRM_STEPS else 0
    if confirm and not confirm_steps:
        notes.append(f"no confirmation runs: {total_steps} steps leave no room for them within "
                     f"{MAX_COST:.0%} of the run")
    confirm_spec = (shape_spec(SHAPE, confirm_steps, int(round(WARMUP_FRACTION * confirm_steps)))
                    if confirm_steps else None)
    return Plan(anchor, anchor_note, SHAPE, total_steps, warmup, spec, default, candidates,
                confirm_steps, confirm_spec, notes)


def short_schedule(plan: Plan, candidate: float) -> Callable[[int], float]:
    from lrkit.schedules import parse

    schedule = parse(plan.confirm_spec)
    return lambda step: candidate * schedule(step)


def choose(plan: Plan, confirmations: list[dict]) -> Choice:
    notes = list(plan.notes)
    if not confirmations:
        notes.append(f"peak {plan.default_peak:.3g}: {plan.anchor_note}; "
                     f"peak = {PEAK_FACTOR:g} x that rate")
        return Choice(plan.default_peak, notes)
    ok = [c for c in confirmations if not c["diverged"]]
    if not ok:
        low = round_rate(min(plan.candidates) / 3)
        notes.append(f"every confirmation run diverged: peak lowered to {low:.3g}")
        return Choice(low, notes)
    best = min(ok, key=lambda c: c["score"])
    shift = (plan.confirm_steps / plan.total_steps) ** HORIZON_EXPONENT
    peak = round_rate(best["lr"] * shift)
    notes.append(f"peak {peak:.3g}: best of {len(confirmations)} short runs "
                 f"({plan.confirm_steps} steps) at " + ", ".join(f"{c['lr']:.3g}" for c in confirmations))
    return Choice(peak, notes)
