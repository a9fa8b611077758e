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

# Figures: benchmarks/results/recipe_tune*.json, cosine shape, one seed of full runs per task on
# logreg (1500 steps), hastie-mlp (1500), cancer-mlp (1000), digits-cnn (600); two seeds of range
# tests and short runs. "Regret" = final validation loss / the best peak's on a 4-per-decade grid.

#: shape: warmup then cosine to 0. Best peak of each shape (val loss): hastie-mlp cosine 0.1298,
#: linear-to-0 0.1363, wsd (1-sqrt, last 20%) 0.1379, constant 0.1648; logreg 0.7122 / 0.7125 /
#: 0.7132 / 0.7126 (flat). Cosine is never worse than the others.
SHAPE = "cosine"
#: warmup: 5% of the run, from 1% of the peak (the transformers/timm habit; it lets the high
#: candidate of the confirmation runs start safely, and costs little: the shape comparison above
#: used it for every shape)
WARMUP_FRACTION = 0.05
#: the anchor is the rate at the range test's smoothed loss minimum (where training turns
#: unstable). Without confirmation runs the peak is anchor x PEAK_FACTOR; median regret over the
#: 8 task-seeds by factor: 0.05: 13.4%, 0.1: 6.4%, 0.15: 16.3%, 0.2: 15.7%, 0.3: 26.5%, 0.5: 55%.
#: (Large-data hastie-mlp alone wants ~1x; the small, overfitting data sets want 0.03-0.15x.)
PEAK_FACTOR = 0.1
#: confirmation: the whole schedule compressed to a short run at each of these multiples of the
#: anchor; the best (lowest validation loss) short run's rate times HORIZON_SHRINK is the peak.
#: A short run always prefers a higher rate than the full run does (its best was 1x-9x the full
#: run's best here), hence the shrink. Median / mean regret, 100-step runs, over the 8
#: task-seeds: (0.1, 0.3, 1) x 0.3: 4.4% / 12.4% (chosen); x 0.5: 5.2% / 29%; x 1: 23% / 57%;
#: (0.03, 0.1, 0.3) x 0.3: 5.0% / 9.5%; (0.05, 0.15, 0.45) x 0.3: 10.6% / 11.4%. 50-step
#: runs were clearly worse (median 29% for the chosen set), so runs are never shorter than 100.
CANDIDATE_FACTORS = (0.1, 0.3, 1.0)
HORIZON_SHRINK = 0.3
#: length of one confirmation run: 5% of the run (the shrink was measured at 1/15 .. 1/6 of the
#: run), at least MIN_CONFIRM_STEPS
CONFIRM_FRACTION = 0.05
MIN_CONFIRM_STEPS = 100
#: the most the tuning may cost, as a fraction of one training run (range test + confirmations):
#: with a ~100-step range test, confirmation runs fit from about 2000 steps on
MAX_COST = 0.20
#: validation batches each confirmation run is scored on (its training loss when there is no
#: validation loader)
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
    wanted = max(MIN_CONFIRM_STEPS, int(round(CONFIRM_FRACTION * total_steps)))
    confirm_steps = wanted if confirm and room >= len(candidates) * wanted else 0
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
                     f"peak = {PEAK_FACTOR:g} x that rate (no confirmation runs)")
        return Choice(plan.default_peak, notes)
    ok = [c for c in confirmations if not c["diverged"]]
    if not ok:
        low = round_rate(min(plan.candidates) * HORIZON_SHRINK)
        notes.append(f"every confirmation run diverged: peak lowered to {low:.3g}")
        return Choice(low, notes)
    best = min(ok, key=lambda c: c["score"])
    peak = round_rate(best["lr"] * HORIZON_SHRINK)
    notes.append(f"peak {peak:.3g}: {HORIZON_SHRINK:g} x {best['lr']:.3g}, the best of "
                 f"{len(confirmations)} short runs of the schedule ({plan.confirm_steps} steps "
                 "each) at " + ", ".join(f"{c['lr']:.3g}" for c in confirmations)
                 + f" ({plan.anchor_note}; a short run favours higher rates than the full run)")
    failed = [c for c in confirmations if c["diverged"]]
    if failed:
        notes.append("diverged in a short run: " + ", ".join(f"{c['lr']:.3g}" for c in failed))
    return Choice(peak, notes)
