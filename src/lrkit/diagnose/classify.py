"""The rules that turn a loss history into a verdict about the learning rate (pure numpy, no torch).

Verdicts, checked in this order (the first that holds wins):

``not_enough_data``
    fewer than ``min_points`` finite losses (and nothing non-finite): no guess is made. Also a
    loss that never changed (every value the same, all finite): no learning happened at all, the
    curve says nothing about the rate, and the explanation names the likely causes.
``diverged``
    the loss went non-finite and stayed there (or more than 10% of it is non-finite), or its last
    losses blew up far above the rest of the run, or it ended no lower than it started after
    blowing up (a peak at least 2x the start) or after losing the progress it had made. Rate x0.1.
``unstable``
    the rate is too high but the run survived: it ended at least 2x above its best; or it has
    spikes (at least 3 single steps that undo half or more of the progress, or two, the largest
    undoing all of it); or isolated non-finite losses; or the validation loss ended 25% or more
    above its best; or it jumped early and then stalled near its start (a collapse). Rate x0.3.
``too_slow``
    the rate is too low: the loss has not moved (less than 5% below its start), or it is still
    falling steadily at the end: the last 30% of the run made 12% or more of the total improvement
    (measured on the loss itself; on the validation curve when there is one), or it stalled high
    (less than ~26% below its start) while still creeping down. Rate x3 (x10 if it has not moved).
``plateaued``
    it made some progress, then stalled high (less than ~26% below its start) with no
    significant trend over its second half: a flat region the rate is too low to leave, or the
    limit of the model or data. Rate x3 to try to leave it.
``healthy``
    none of the above: it fell, bent over and settled without spikes. Rate x1.

The thresholds were set on the built-in examples' curves (benchmarks/diagnose_accuracy.py) and
are the module constants below.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping

import numpy as np

from lrkit.diagnose.evidence import MIN_POINTS, measure, measure_validation
from lrkit.errors import LrkitError, plain_int

VERDICTS = ("diverged", "unstable", "too_slow", "plateaued", "healthy", "not_enough_data")

#: the change of rate each verdict recommends (multiply the current rate by it)
FACTORS: dict[str, float | None] = {
    "diverged": 0.1, "unstable": 0.3, "too_slow": 3.0, "plateaued": 3.0, "healthy": 1.0,
    "not_enough_data": None,
}

NONFINITE_SHARE = 0.10  #: more non-finite losses than this share: diverged even if it recovered
BLOWUP_LOG = math.log(2.0)  #: a peak this far above the start (log) counts as a blow-up
LOST_PROGRESS_LOG = math.log(1.5)  #: progress (log) that, lost again, makes a run diverged
END_ABOVE_START_LOG = -0.03  #: "ended no lower than it started" tolerance (log)
END_ABOVE_BEST_LOG = math.log(2.0)  #: ended this far above its best: unstable
LATE_PEAK_LOG = math.log(2.0)  #: a loss 2x its start in the second half of the run: unstable
#: the highest batch is a blow-up only this many times as high above the level as the highest
#: batch outside its neighbourhood (heavy-tailed batch noise has several of a size)
LONE_PEAK_RATIO = 2.5
#: ... unless it is this far above the start (log; a positive loss): no heavy tail reaches that
LONE_PEAK_ANYWAY_LOG = math.log(5.0)
PEAK_NOISE_WIDTHS = 4.0  #: ... and that many noise widths above it (peaks must beat the noise)
REBOUND_SHARE = 0.35  #: the smoothed loss climbing back this share of its progress: unstable
#: ... by this many noise widths of the coarse curve (a flat, noisy curve's coarse median wanders)
REBOUND_NOISE_WIDTHS = 4.0
NOISE_UNSTABLE_LOG = 1.0  #: step-to-step wiggles of e (2.7x) and more: unstable
BOUNCES_MIN = 3  #: the smoothed loss bouncing back this many separate times: unstable
ENDED_HIGH_LOG = math.log(1.5)  #: ended 1.5x above its start: diverged, whatever the peak
CLIMB_LOG = math.log(1.1)  #: ended 10% above its first tenth (and not below its start): climbing
SPIKES_MIN = 3  #: this many spikes make a run unstable
SPIKE_UNDO_ALL = 1.0  #: one spike undoing this share of the progress makes it unstable
VAL_RISE_LOG = math.log(1.25)  #: validation loss ended this far above its best: unstable
VAL_RISE_SHARE = 0.1  #: ... and the rise gave back at least this share of its progress
COLLAPSE_EARLY_PEAK_LOG = math.log(2.0)  #: early jump before a stall near the start: collapse
#: the loss held 5x its start or more early in the run (a 3-step median), however well it did
#: afterwards: unstable. Of the 409 labelled runs of benchmarks/diagnose_accuracy.py no healthy
#: one came within 2.7x (their highest: 2.6x); AdamW at 30-100x the good rate on a CNN held
#: 11-20x, then stalled far above the good rate's loss, and was called healthy
EARLY_BLOWUP_LOG = math.log(5.0)
NO_PROGRESS_LOG = 0.05  #: improved less than this (log): the loss has not moved
#: a fall of that much (and 4 batch widths), then this share of it undone by this many coarse noise widths: the
#: rate threw the model back (a Trainer at 3x too high a rate, back at the chance level, was
#: called too_slow, x10)
COLLAPSE_REBOUND_SHARE = 0.5
COLLAPSE_NOISE_WIDTHS = 10.0
LATE_SHARE_SLOW = 0.12  #: the last 30% made this share of the improvement: still falling
STALL_HIGH_LOG = math.log(1.35)  #: improved less than this (log, ~26%): stalled high
TREND_T = 2.0  #: |t| below this: no significant trend
CREEP_T = 3.0  #: a stalled curve with a trend t below -CREEP_T is still creeping down (too slow)
CONSTANT_REL = 1e-12  #: every loss within this share of its size of the others: it never changed
#: with rates that decay (a cosine, step, one-cycle or warmup-stable-decay schedule: the last rate
#: at most half the peak), "still falling?" is judged on the stretch where the rate was at least
#: this share of its peak: the decay flattens a too-low rate's curve at the end (a review: 32 of
#: 109 such runs of the built-in examples, 3-30x below the best rate, read "healthy, keep"), and
#: the fall the decay itself brings (annealing) made good runs "still falling, x3"
PEAK_STRETCH = 0.7
#: ... when that stretch holds at least this share of the run (and ``min_points`` losses)
PEAK_STRETCH_MIN_SHARE = 0.3


@dataclasses.dataclass
class Diagnosis:
    """What :func:`diagnose` concluded about one loss history."""

    verdict: str
    confidence: float
    evidence: dict
    lr_factor: float | None
    explanation: str
    suggested_lr: float | None = None
    reasons: list[str] = dataclasses.field(default_factory=list)

    @property
    def recommendation(self) -> str:
        """The change of rate in words, e.g. ``"x0.3"`` or ``"keep"``."""
        if self.lr_factor is None:
            if self.evidence.get("constant_loss") is not None:
                return "none (the loss never changed: not a matter of the rate)"
            return "none (not enough data)"
        if self.lr_factor == 1.0:
            return "keep (x1)"
        return f"x{self.lr_factor:g}"

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["recommendation"] = self.recommendation
        return _jsonable(data)

    def __str__(self) -> str:
        lines = [f"verdict: {self.verdict} (confidence {self.confidence:.0%})",
                 f"change the rate: {self.recommendation}"
                 + (f" -> {self.suggested_lr:.3g}" if self.suggested_lr is not None else "")]
        if self.reasons:
            lines.append("evidence: " + "; ".join(self.reasons))
        lines.append(self.explanation)
        return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else str(v)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if callable(getattr(value, "tolist", None)) and hasattr(value, "shape"):
        # a numpy array or a torch tensor (evidence put in by hand): its numbers, JSON-ready
        return _jsonable(value.tolist())
    return value


# -- input ------------------------------------------------------------------------------------

def _is_tensor(value: Any) -> bool:
    """A torch tensor, recognised without importing torch."""
    return hasattr(value, "detach") and hasattr(value, "cpu")


def _by_step(mapping: Mapping, name: str) -> list[tuple[float, Any]]:
    """A ``{step: value}`` mapping's items in the order of their steps, read as numbers (keys
    from a JSON file are strings, and "100" sorts before "20")."""
    items = []
    for key, value in mapping.items():
        try:
            step = float(key)
        except (TypeError, ValueError):
            raise LrkitError(f"{name} has the key {key!r}: a {{step: loss}} dict needs step "
                             "numbers as keys") from None
        items.append((step, value))
    return sorted(items, key=lambda item: item[0])


def _step_key(key: Any, name: str) -> int:
    """A ``{step: loss}`` dict's key as a whole step number (3000, 3000.0, "3000" from JSON)."""
    step = None
    if not isinstance(key, (bool, np.bool_)):
        try:
            number = float(key.strip() if isinstance(key, str) else key)
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        if math.isfinite(number) and number.is_integer():
            step = int(number)
    if step is None:
        raise LrkitError(f"{name} has the key {key!r}: the keys of a {{step: loss}} dict are the "
                         "steps, whole numbers such as 3000; for other positions (epoch 0.5) "
                         "pass the losses as a list with steps=[...]")
    return step


def _keyed(mapping: Mapping, name: str) -> tuple[np.ndarray, list, np.ndarray]:
    """A ``{step: loss}`` dict as its steps in order, its values in that order, and the order
    (the positions of the dict's items as given, so that a list of rates that goes with the
    dict's items can be put in the same order)."""
    keys: dict[int, Any] = {}
    steps = []
    for key in mapping:
        step = _step_key(key, name)
        if step in keys:
            raise LrkitError(f"{name} has the step {step} twice (keys {keys[step]!r} and "
                             f"{key!r}); give each step once")
        keys[step] = key
        steps.append(step)
    values = list(mapping.values())
    order = np.argsort(np.asarray(steps, dtype=float), kind="stable")
    return (np.asarray(steps, dtype=float)[order], [values[i] for i in order], order)


def _not_real(name: str, what: str) -> LrkitError:
    return LrkitError(f"{name} holds {what}; pass real numbers, one per step (a complex loss "
                      "loses its imaginary part, and True/False are no loss)")


def _unreal_tensor(tensor: Any) -> bool:
    """A complex or boolean tensor (recognised without importing torch)."""
    return tensor.is_complex() or str(tensor.dtype) == "torch.bool"


def _to_numpy(values: Any, name: str) -> np.ndarray:
    if _is_tensor(values):  # any dtype (bfloat16 has no numpy twin), with or without grad
        if _unreal_tensor(values):
            raise _not_real(name, f"a tensor of dtype {values.dtype}")
        values = values.detach().cpu().double().numpy()
    if isinstance(values, np.ndarray) and values.dtype.kind in "cb":
        raise _not_real(name, f"an array of dtype {values.dtype}")
    if isinstance(values, Mapping):  # {step: loss}: the values in the order of their steps
        values = [v for _, v in _by_step(values, name)]
    if isinstance(values, (str, bytes)) or not isinstance(values, (Iterable, np.ndarray)):
        raise LrkitError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    if isinstance(values, (set, frozenset)):  # no order: another curve each time
        raise LrkitError(f"{name} is a set, which has no order; pass the values in the order of "
                         "their steps (a list or an array)")
    if isinstance(values, np.ndarray) and values.dtype == object:
        values = values.tolist()  # its items checked one by one, as a list's (a None was NaN)
    if not isinstance(values, np.ndarray):
        values = list(values)
        # plain floats (a guard's or a monitor's history) need no look one by one: that look
        # was a third of a 500-point diagnosis, which a guard runs on healthy runs too
        plain = all(type(item) is float for item in values)
        for i, item in enumerate([] if plain else values):
            if item is None:
                raise LrkitError(f"{name}[{i}] is None; pass one number per step (a step "
                                 "without a loss can be NaN, or left out)")
            if isinstance(item, (bool, np.bool_, complex, np.complexfloating)):
                raise _not_real(f"{name}[{i}]", repr(item))
            if isinstance(item, (str, bytes)):  # "2.3" from a CSV read as text
                raise LrkitError(f"{name}[{i}] = {item!r} is a string; pass numbers (convert "
                                 "values read from a text file with float())")
            if _is_tensor(item):
                if _unreal_tensor(item):
                    raise _not_real(f"{name}[{i}]", f"a tensor of dtype {item.dtype}")
                try:
                    values[i] = float(item.detach().cpu().double())
                except (RuntimeError, ValueError, TypeError):
                    raise LrkitError(f"{name}[{i}] is a tensor of shape {tuple(item.shape)}; pass "
                                     "one number (a scalar loss) per step") from None
    try:
        array = np.asarray(values, dtype=float)
    except OverflowError:  # an integer past float range (10**400)
        raise LrkitError(f"{name} holds a number too large for a float (beyond 1.8e308); pass "
                         "the losses as floats (inf is allowed)") from None
    except (TypeError, ValueError):
        for i, item in enumerate(values):
            try:
                float(item)
            except (TypeError, ValueError):
                raise LrkitError(
                    f"{name}[{i}] = {item!r} is not a number; pass one float per step "
                    "(NaN and inf are allowed)") from None
        raise LrkitError(f"{name} must be a flat sequence of numbers") from None
    if array.ndim != 1:
        raise LrkitError(f"{name} must be one-dimensional (one value per step), got shape "
                         f"{array.shape}")
    return array


def _validation(values: Any, n_train: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Validation values and their steps (``None`` when not given as ``(step, value)`` pairs)."""
    if isinstance(values, Mapping):
        items = _by_step(values, "val_losses")
        steps = _finite_steps(_to_numpy([k for k, _ in items], "val_losses steps"))
        return _to_numpy([v for _, v in items], "val_losses"), steps
    if _is_tensor(values):
        values = values.detach().cpu().double().numpy()
    if isinstance(values, np.ndarray) and values.ndim != 2:  # (n, 2): pairs
        return _to_numpy(values, "val_losses"), None
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise LrkitError(f"val_losses must be a sequence of numbers, (step, loss) pairs or a "
                         f"{{step: loss}} dict, got {type(values).__name__}")
    pair = lambda item: (isinstance(item, (tuple, list)) or (  # noqa: E731
        isinstance(item, np.ndarray) and item.ndim == 1)) and len(item) == 2
    values = list(values)
    if values and pair(values[0]):
        for i, item in enumerate(values):
            if not pair(item):
                raise LrkitError(f"val_losses[{i}] = {item!r}: give all entries as (step, loss) "
                                 "pairs, or all as plain numbers")
        steps = _finite_steps(_to_numpy([s for s, _ in values], "val_losses steps"))
        losses = _to_numpy([v for _, v in values], "val_losses")
        # in the order of their steps, as a dict's are: the measures read the curve in order
        order = np.argsort(steps, kind="stable")
        return losses[order], steps[order]
    return _to_numpy(values, "val_losses"), None


def _finite_steps(steps: np.ndarray) -> np.ndarray:
    """Validation steps, all finite (a NaN step failed deep inside, converted to an index)."""
    bad = np.flatnonzero(~np.isfinite(steps))
    if len(bad):
        raise LrkitError(f"val_losses has the step {steps[bad[0]]} (entry {int(bad[0])}): "
                         "validation points need finite step numbers")
    return steps


def _span(span: Any) -> tuple[float, float] | None:
    """``span`` as two finite numbers, first <= last (or None)."""
    if span is None:
        return None
    try:
        lo, hi = (float(v) for v in span)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi) or isinstance(
            span, (str, bytes)) or any(isinstance(v, (bool, np.bool_)) for v in span):
        raise LrkitError(f"span must be (first step, last step) of the run, two finite numbers "
                         f"with first <= last, got {span!r}")
    return lo, hi


def _check_within_training(val_steps: np.ndarray, train_steps: np.ndarray | None,
                           n_train: int, span: tuple[float, float] | None = None) -> None:
    """Refuse validation points outside the training history (give or take its widest logging
    interval, for an evaluation at the end of an epoch): the measures read the validation
    curve as this run's, and a run of 20 steps given a validation curve to step 199 was told
    it was bending over, from the other curve's shape."""
    if span is not None:
        lo, hi, margin = float(span[0]), float(span[1]), 0.0
    else:
        steps = train_steps if train_steps is not None else np.arange(n_train, dtype=float)
        finite = steps[np.isfinite(steps)]
        lo, hi = float(finite.min()), float(finite.max())
        # the widest gap: a log written every k steps evaluates at most k steps past its last
        interval = float(np.max(np.diff(np.sort(finite)))) if len(finite) > 1 else 1.0
        margin = max(interval, 1.0)
    outside = val_steps[(val_steps < lo - margin) | (val_steps > hi + margin)]
    if len(outside):
        where = ("" if train_steps is not None else
                 " (their positions: pass steps= when they were logged at other steps)")
        raise LrkitError(
            f"val_losses has a point at step {float(outside[0]):g}, outside the training "
            f"losses' steps {lo:g}..{hi:g}{where}; give the validation points of the same run "
            "(or plain numbers, spread evenly over the run)")


# -- the rules --------------------------------------------------------------------------------

def _confidence(margin: float, *, base: float = 0.6, points: int = 100) -> float:
    """From how far past its threshold a rule fired (0 = at it, 1 = twice as far) to 0.5..0.98."""
    value = base + (0.97 - base) * (1.0 - math.exp(-2.0 * max(margin, 0.0)))
    if points < 30:
        value *= 0.85 + 0.15 * points / 30
    return round(float(min(0.98, max(0.5, value))), 2)


def _pct(log_ratio: float) -> str:
    return f"{(math.exp(log_ratio) - 1) * 100:.0f}%"


def _above(change: float, log_scale: bool | float) -> str:
    """How far above, in words: a percentage on the log scale, a difference in the loss's units
    on the linear one (a loss that goes negative has no meaningful ratios). ``log_scale``: True,
    or the linear scale's unit (the evidence's ``scale``) that ``change`` is measured in."""
    return _pct(change) if log_scale is True else f"{change * log_scale:.3g}"


def _below(drop: float, log_scale: bool | float) -> str:
    """How far below (``drop`` > 0 is a fall); ``_pct(-drop)`` read "only -19% below"."""
    return (f"{(1.0 - math.exp(-drop)) * 100:.0f}%" if log_scale is True
            else f"{drop * log_scale:.3g}")


def _times(change: float, log_scale: bool | float) -> str:
    """A rise against the start: "2.5x its start", or "its start + 3" on the linear scale."""
    return (f"{math.exp(change):.3g}x its start" if log_scale is True
            else f"its start + {change * log_scale:.3g}")


def _decide(ev: dict, vev: dict | None) -> tuple[str, float, list[str]]:
    n = ev["finite_points"]
    reasons: list[str] = []
    at = lambda i: f"step {i}"  # noqa: E731
    # True, or the linear scale's unit: what the helpers that word a change need
    log = True if ev.get("log_scale", True) else float(ev.get("scale", 1.0))

    # diverged: non-finite and not recovered, or a high share of it
    if ev["nonfinite_points"]:
        share = ev["nonfinite_points"] / max(1, ev["points"])
        if ev["ends_nonfinite"] or share > NONFINITE_SHARE:
            reasons.append(f"the loss became non-finite at {at(ev['first_nonfinite_at'])}"
                           + ("" if ev["ends_nonfinite"] else f" ({share:.0%} of the steps)"))
            return "diverged", 0.98, reasons
    if vev and vev.get("val_ends_nonfinite"):
        reasons.append("the validation loss became non-finite")
        if ev["nonfinite_points"]:
            return "diverged", 0.95, reasons
        # every training loss finite: either the last update broke the model (no training loss
        # was logged after it), or the evaluation failed (0/0 over an empty loader); less sure
        reasons.append("every training loss is finite: the last update may have broken the "
                       "model, or the evaluation failed (an empty validation loader gives 0/0); "
                       "check the evaluation")
        return "diverged", 0.6, reasons
    if n < ev.get("min_points", MIN_POINTS):
        reasons.append(f"only {n} finite loss values; at least {ev.get('min_points', MIN_POINTS)} "
                       "are needed")
        return "not_enough_data", 1.0, reasons
    if ev.get("constant_loss") is not None:
        # every loss the same: no curve to read a rate from (it was "too_slow, x10", and an
        # all-zero loss too: a rate ten times higher changes nothing when no update lands)
        reasons.append(f"the loss is exactly {ev['constant_loss']:.6g} at all {n} steps: it never "
                       "changed, so it says nothing about the rate")
        return "not_enough_data", 1.0, reasons

    end_vs_start = ev["end_vs_start_log"]
    # a peak must stand out of the batch noise too to count as a blow-up: the smoothed peak by
    # PEAK_NOISE_WIDTHS noise widths, the highest single loss by 2 widths more than the highest
    # of n draws of pure noise reaches (sqrt(2 ln n) widths): a flat, noisy loss's highest batch
    # of 500 sits 3.5 widths up, and 4 made such curves "diverged" at 0.97 (1 in 3)
    noise_peak = math.sqrt(2.0 * math.log(max(n, 2))) + 2.0
    # single losses (a batch, the start) against the batches' own scatter about their level too
    batch = max(ev["noise"], ev["batch_noise"])
    blowup = max(BLOWUP_LOG, PEAK_NOISE_WIDTHS * max(ev["noise"], ev["smooth_noise"]))
    raw_blowup = max(BLOWUP_LOG, max(PEAK_NOISE_WIDTHS, noise_peak) * batch)
    # the highest batch counts as a blow-up only when it stands alone: at least LONE_PEAK_RATIO
    # times as high above the level as any batch outside its neighbourhood (a flat loss with
    # Student-t batch noise had its highest batch read as a blow-up in 43% of curves)
    # -- unless it is 5x the start or more (a positive loss): SGD at 0.5 on digits-mlp blew up
    # to 11x four times and never learned, which is divergence, not heavy tails
    # (a few of them: many are the hard batches of a run near convergence, not blow-ups)
    lone = ev.get("raw_peak_excursion_log", math.inf) >= LONE_PEAK_RATIO * max(
        ev.get("raw_second_excursion_log", 0.0), 0.0) or (
        ev.get("log_scale", True) and ev["raw_peak_log"] >= LONE_PEAK_ANYWAY_LOG
        and ev.get("big_batches", 0) <= max(3, 0.01 * n))
    raw_peak = ev["raw_peak_log"] if lone else -math.inf
    peak = max(raw_peak * blowup / raw_blowup, ev["overshoot_log"])  # on one scale
    tolerance = END_ABOVE_START_LOG
    # a climb from the first tenth to the last must stand out of the noise of those two medians
    # (3 standard errors): on a flat curve with heavy-tailed batches, i.i.d. exponential losses,
    # a first tenth 12% below the last made a plateau "diverged" at 0.97; at 2, 1 flat log-normal
    # curve in 25 still "climbed" (the noise width runs a little low), and the real-run
    # benchmark scores the same at 2, 2.5 and 3
    tenth = max(3, n // 10)
    climb_noise = 3.0 * 1.2533 * ev["noise"] * math.sqrt(2.0 / tenth)
    climbing = (end_vs_start >= tolerance
                and ev["end_vs_early_log"] >= max(CLIMB_LOG, climb_noise))
    # "ended 1.5x above its start" rests on the start, one to three losses: on a noisy curve it
    # needs the end above the first tenth's level too, or a margin of two noise widths
    ended_high = end_vs_start >= ENDED_HIGH_LOG and (
        ev["end_vs_early_log"] >= climb_noise or end_vs_start >= 2.0 * batch)
    if (ev.get("last_vs_start_log", -math.inf) >= raw_blowup
            and ev["last_vs_start_log"] >= ev["end_vs_start_log"] + BLOWUP_LOG
            # and past every loss before them by as much as a blown-up batch stands above the
            # start: the last of a few noisy points is the highest one time in n
            and ev.get("last_vs_before_log", -math.inf) >= raw_blowup):
        # the last losses blew up, far above the rest of the run: divergence under way (a
        # Monitor's report as it starts), not a run that "survives" (the last tenth's median
        # still read the good stretch before it)
        reasons.append(f"the loss blew up at the end of the run: its last losses reached "
                       f"{_times(ev['last_vs_start_log'], log)}")
        reasons.append(f"it ended at {ev['last']:.4g}, no lower than its start {ev['start']:.4g}")
        return "diverged", _confidence(ev["last_vs_start_log"] / raw_blowup - 1, base=0.7,
                                       points=n), reasons
    if ended_high or climbing or (end_vs_start >= tolerance and (
            peak >= blowup or ev["progress_log"] >= max(LOST_PROGRESS_LOG, 2.0 * batch))):
        if (ended_high or climbing) and peak < blowup:
            reasons.append(f"the loss climbed: it ended at {ev['end']:.4g}, "
                           f"{_above(ev['end_vs_early_log'], log)} above its level in the first "
                           f"tenth of the run and {_above(end_vs_start, log)} above its start")
        elif peak >= blowup:
            # the ratio and the step of the same peak: one batch's, or the smoothed curve's
            raw = raw_peak >= ev["overshoot_log"]
            reasons.append(f"the loss blew up to "
                           f"{_times(max(raw_peak, ev['overshoot_log']), log)} "
                           + (f"(one batch, at {at(ev['raw_peak_at'])})" if raw
                              else f"(peak at {at(ev['peak_at'])})"))
        else:
            reasons.append(f"it fell to {ev['best']:.4g} at {at(ev['best_at'])} and climbed back")
        reasons.append(f"it ended at {ev['end']:.4g}, no lower than its start {ev['start']:.4g}")
        margin = max(peak / blowup - 1, end_vs_start / ENDED_HIGH_LOG - 1,
                     ev["end_vs_early_log"] / CLIMB_LOG - 1 if climbing else -1,
                     ev["progress_log"] / LOST_PROGRESS_LOG - 1,
                     (end_vs_start - tolerance) / 0.1)
        return "diverged", _confidence(margin, base=0.7, points=n), reasons

    # unstable
    unstable: list[tuple[float, str]] = []
    if not lone and ev["raw_peak_log"] >= raw_blowup:
        # batches far above the start that do not stand alone: no divergence read from the
        # highest (heavy tails have several of a size), but no case for a higher rate either
        # (a flat loss with one batch at 3x its start was told "too_slow, x10")
        unstable.append((ev["raw_peak_log"] / raw_blowup - 1,
                         f"single batches jumped to {_times(ev['raw_peak_log'], log)} (the "
                         f"highest at {at(ev['raw_peak_at'])})"))
    if ev["nonfinite_points"]:
        unstable.append((1.0, f"{ev['nonfinite_points']} non-finite loss(es), first at "
                              f"{at(ev['first_nonfinite_at'])}, then it recovered"))
    if ev["end_vs_best_log"] >= END_ABOVE_BEST_LOG:
        unstable.append((ev["end_vs_best_log"] / END_ABOVE_BEST_LOG - 1,
                         f"it ended at {ev['end']:.4g}, {_above(ev['end_vs_best_log'], log)} above its "
                         f"best {ev['best']:.4g} (at {at(ev['best_at'])})"))
    if (ev["max_rebound"] >= REBOUND_SHARE
            and ev["rebound_log"] >= REBOUND_NOISE_WIDTHS * ev.get("rebound_noise",
                                                                    ev["coarse_noise"])
            and (ev["progress_log"] >= max(STALL_HIGH_LOG, 2.0 * batch)
                 # a small fall, mostly undone, far out of the noise: a rate too high that threw
                 # the model back to where it started (to the chance level), not a slow one
                 or (ev["max_rebound"] >= COLLAPSE_REBOUND_SHARE
                     and ev["progress_log"] >= max(NO_PROGRESS_LOG, 4.0 * batch)
                     and ev["rebound_log"] >= COLLAPSE_NOISE_WIDTHS * ev.get(
                         "rebound_noise", ev["coarse_noise"])))):
        unstable.append((ev["max_rebound"] / REBOUND_SHARE - 1,
                         f"after falling, the loss bounced back up by {ev['max_rebound']:.0%} of "
                         f"its progress (at step {ev['rebound_at']})"))
    if ev.get("bounces", 0) >= BOUNCES_MIN and ev["progress_log"] >= max(STALL_HIGH_LOG,
                                                                           2.0 * batch):
        unstable.append((ev["bounces"] / BOUNCES_MIN - 1 + 0.3,
                         f"after falling, the loss bounced back up {ev['bounces']} times, each "
                         "by over a third of its progress"))
    if ev["noise"] >= NOISE_UNSTABLE_LOG:
        unstable.append((ev["noise"] / NOISE_UNSTABLE_LOG - 1,
                         f"the loss jumps by "
                         + (f"{math.exp(ev['noise']):.2g}x" if log is True
                            else f"{ev['noise'] * log:.2g}")
                         + " from one step to the next (typical wiggle"
                         + (", log scale)" if log is True else ")")))
    if ev["late_peak_log"] >= max(LATE_PEAK_LOG, PEAK_NOISE_WIDTHS * ev["noise"],
                                  noise_peak * batch):
        unstable.append((ev["late_peak_log"] / LATE_PEAK_LOG - 1,
                         f"in the second half of the run the loss still jumped to "
                         f"{_times(ev['late_peak_log'], log)} (step "
                         f"{ev['late_peak_at']})"))
    if ev["early_peak_log"] >= EARLY_BLOWUP_LOG:
        unstable.append((ev["early_peak_log"] / EARLY_BLOWUP_LOG - 1,
                         f"early in the run the loss held {_times(ev['early_peak_log'], log)} "
                         "for two steps or more before it came down: the rate throws the model "
                         "off at the start"))
    needed = SPIKES_MIN if n >= 100 else 2  # a short (per-epoch) curve: two spikes are many
    if ev["spikes"] >= needed or (ev["spikes"] >= 2 and ev["max_spike"] >= SPIKE_UNDO_ALL):
        where = ", ".join(str(s) for s in ev["spike_steps"][:5])
        unstable.append((max(ev["spikes"] / needed, ev["max_spike"] / SPIKE_UNDO_ALL) - 1,
                         f"{ev['spikes']} spike(s) (steps {where}"
                         + ("..." if ev["spikes"] > 5 else "")
                         + (f"), the largest undoing {ev['max_spike']:.0%} of the progress"
                            if ev.get("progress_log", 0) > NO_PROGRESS_LOG else
                            # (no progress to undo: "34528% of the progress" said nothing)
                            "), single batches far above the level of a loss that made no "
                            "progress")))
    if (vev and vev.get("val_rise_log") is not None and vev["val_rise_log"] >= VAL_RISE_LOG
            and (vev.get("val_rise_share") or 0.0) >= VAL_RISE_SHARE):
        unstable.append((vev["val_rise_log"] / VAL_RISE_LOG - 1,
                         f"the validation loss ended {_pct(vev['val_rise_log'])} above its best "
                         f"{vev['val_best']:.4g}"
                         + (f" (at step {vev['val_best_step']})" if vev.get("val_best_step")
                            is not None else "")))
    if unstable:
        unstable.sort(key=lambda item: -item[0])
        reasons.extend(text for _, text in unstable)
        margin = unstable[0][0] + 0.3 * (len(unstable) - 1)
        return "unstable", _confidence(margin, points=n), reasons

    improvement = ev["improvement_log"]
    if improvement < NO_PROGRESS_LOG and ev["early_peak_log"] < COLLAPSE_EARLY_PEAK_LOG:
        reasons.append(f"the loss has not moved: {ev['start']:.4g} at the start, {ev['end']:.4g} "
                       "at the end")
        # surest for a loss that stayed put; a rise within the band (a loss that went up a
        # little) is no strong case for a tenfold higher rate (it was the surest of all)
        return "too_slow", _confidence(1 - abs(improvement) / NO_PROGRESS_LOG, points=n), reasons

    stalled_high = improvement < STALL_HIGH_LOG
    # a collapse's jump must stand out of the batches' scatter too: on flat log-normal noise
    # (0.3) a 3-step median of the first fifth sat 2-3.5x above a start drawn low in 23 of 60
    # curves (a jump that does not is left to the rules below: most such curves plateaued)
    if stalled_high and ev["early_peak_log"] >= max(COLLAPSE_EARLY_PEAK_LOG,
                                                    PEAK_NOISE_WIDTHS * batch):
        reasons.append(f"the loss jumped to {_times(ev['early_peak_log'], log)} early on, then "
                       f"stalled at {ev['end']:.4g}, only {_below(improvement, log)} below "
                       "the start")
        return "unstable", _confidence(ev["early_peak_log"] / COLLAPSE_EARLY_PEAK_LOG - 1,
                                       base=0.55, points=n), reasons

    # still falling at the end? judge on the validation curve when there is one
    share, source, still_falling = _still_falling(ev, vev)
    if still_falling:
        reasons.append(f"the {source} loss is still falling steadily: the last 30% of the run "
                       f"made {share:.0%} of its improvement")
        return "too_slow", _confidence(share / LATE_SHARE_SLOW - 1, points=n), reasons
    if stalled_high:
        if ev["trend_last_half_t"] < -CREEP_T:
            reasons.append(f"it stalled high ({ev['end']:.4g}, only {_below(improvement, log)} "
                           "below its start) and is still creeping down")
            return "too_slow", _confidence(0.3, base=0.55, points=n), reasons
        reasons.append(f"it fell {_below(improvement, log)} below its start, then stayed flat at "
                       f"{ev['end']:.4g} from {ev['flat_from']:.0%} of the run on"
                       if ev["flat_from"] > 0.0 else
                       f"it fell {_below(improvement, log)} below its start, within its "
                       f"batch-to-batch noise, and sits at {ev['end']:.4g}")
        return "plateaued", _confidence(1 - improvement / STALL_HIGH_LOG, base=0.55,
                                        points=n), reasons

    if ev["flat_from"] <= 0.0:
        # the whole smoothed curve lies within the batches' noise of its end: "flat since 0% of
        # the run" contradicted the fall it followed
        flat = (", a fall within its batch-to-batch noise (the smoothed curve stays that close "
                "to its end level from the start)")
    elif ev["flat_from"] <= 0.6:
        flat = f" and has been flat since {ev['flat_from']:.0%} of the run"
    else:
        flat = " and is bending over"
    reasons.append(f"the loss fell from {ev['start']:.4g} to {ev['end']:.4g}{flat}")
    if share is not None:
        reasons.append(f"the last 30% of the run made {max(share, 0):.0%} of the improvement")
    noise_margin = 1.0 - (ev["spikes"] / SPIKES_MIN)
    slow_margin = 1.0 - (max(share or 0.0, 0.0) / LATE_SHARE_SLOW)
    return "healthy", _confidence(min(noise_margin, slow_margin) + 0.2, points=n), reasons


def _still_falling(ev: dict, vev: dict | None) -> tuple[float | None, str, bool]:
    """The share of the improvement the last 30% of the curve made (on the validation curve when
    there is one), which curve that is, and whether that makes it "still falling steadily"."""
    late = ev["late_share_linear"]
    val_late = vev.get("val_late_share") if vev else None
    share = val_late if val_late is not None else late
    source = "validation" if val_late is not None else "training"
    falling = ev["trend_end_t"] < -TREND_T or ev["trend_last_half_t"] < -TREND_T
    return share, source, share is not None and share >= LATE_SHARE_SLOW and falling


def _peak_stretch_end(rates: np.ndarray, n: int, min_points: int) -> int | None:
    """The last position where a decaying schedule's rate was still at least ``PEAK_STRETCH``
    of its peak, or ``None`` when the rates do not decay (the last at most half the peak) or
    that stretch is too short to judge."""
    if len(rates) != n or n < 2:
        return None
    top = float(rates.max())
    if not top > 0 or float(rates[-1]) > 0.5 * top:
        return None
    end = int(np.flatnonzero(rates >= PEAK_STRETCH * top)[-1])
    if end >= n - 1 or end + 1 < max(min_points, PEAK_STRETCH_MIN_SHARE * n):
        return None
    return end


def _at_peak(values: np.ndarray, rates: np.ndarray, ev: dict, vev: dict | None,
             val: np.ndarray | None, val_steps: np.ndarray | None, step_of: np.ndarray | None,
             min_points: int, verdict: str, confidence: float,
             reasons: list[str]) -> tuple[str, float, list[str]]:
    """A ``healthy`` or ``too_slow`` verdict of a run whose rates decay, judged again on the
    stretch at the peak rate: a loss still falling steadily there is ``too_slow`` however flat
    the decay made its end; a ``too_slow`` read from a late fall is ``healthy`` when the loss had
    bent over at the peak rate (the fall came with the decay)."""
    end = _peak_stretch_end(rates, len(values), min_points)
    if end is None:
        return verdict, confidence, reasons
    head = values[: end + 1]
    ev_p = measure(head, min_points=min_points)
    if ev_p["finite_points"] < min_points or ev_p["nonfinite_points"] or "late_share_linear" \
            not in ev_p:
        return verdict, confidence, reasons
    vev_p = None
    if val is not None and len(val):
        if val_steps is not None:  # (step, loss) pairs: those up to the stretch's last step
            last = float(step_of[end]) if step_of is not None else end + 1.0
            keep = val_steps <= last
        else:  # plain numbers spread evenly over the run, the last at its end
            where = (np.arange(len(val)) + 1.0) * len(values) / len(val)
            keep = where <= end + 1.0
        if int(np.count_nonzero(keep)) >= 3:
            vev_p = measure_validation(val[keep], train_start=ev_p.get("start"))
    share_p, source_p, falling_p = _still_falling(ev_p, vev_p)
    stop = _at_steps({"at": end}, step_of)["at"]
    ev["peak_stretch_end"] = stop
    ev["peak_stretch_late_share"] = share_p
    if verdict == "healthy" and falling_p:
        ev["peak_stretch_still_falling"] = True
        return "too_slow", _confidence(share_p / LATE_SHARE_SLOW - 1, points=end + 1), [
            f"while the rate was at {PEAK_STRETCH:.0%} of its peak or more (to step {stop}), the "
            f"{source_p} loss was still falling steadily: the last 30% of that stretch made "
            f"{share_p:.0%} of its improvement; the curve flattened as the schedule lowered the "
            f"rate, not because it had converged (it fell from {ev['start']:.4g} to "
            f"{ev['end']:.4g})"]
    if (verdict == "too_slow" and _still_falling(ev, vev)[2]
            and ev["improvement_log"] >= STALL_HIGH_LOG and not falling_p
            and ev_p["improvement_log"] >= STALL_HIGH_LOG):
        ev["peak_stretch_still_falling"] = False
        return "healthy", _confidence(1.0 - max(share_p or 0.0, 0.0) / LATE_SHARE_SLOW + 0.2,
                                      points=end + 1), [
            f"the loss fell from {ev['start']:.4g} to {ev['end']:.4g}; it had bent over while the "
            f"rate was at {PEAK_STRETCH:.0%} of its peak or more (to step {stop}: the last 30% of "
            f"that stretch made {max(share_p or 0.0, 0.0):.0%} of its improvement), and its late "
            "fall came as the schedule lowered the rate, which is what the decay is for"]
    return verdict, confidence, reasons


_DECAY_ADVICE = ("If the loss has been flat for a long stretch, decaying the rate (for example "
                 "x0.1 for the last part) can settle it a little lower, or training can stop "
                 "sooner.")
_EXPLAIN = {
    "diverged": (
        "The rate is far too high: each step overshoots the valley it is in by more than it "
        "gains, so the loss grows instead of falling{where}. Lower the rate about tenfold (x0.1)"
        "{suggest}; if a warmup or schedule is used, also lower its peak. Gradient clipping can "
        "contain single bad batches but not a rate this high."),
    "unstable": (
        "The rate is too high for this model: the run survives, but the steps are large enough "
        "to bounce between the walls of the valley, so the loss oscillates, spikes, or settles "
        "above the best it reached{where}. Lower it {how}{suggest}; a decaying "
        "schedule (cosine, step) or warmup helps too. If only the validation loss rose, the model "
        "may also be overfitting: stop earlier or regularise."),
    "too_slow": (
        "The rate is too low: {trend}, so "
        "this run would need many more steps to get where a higher rate gets quickly{where}. "
        "Raise it {how}{suggest}, and watch that it does not start to spike."),
    "plateaued": (
        "The loss made some progress and then stopped improving well above where it started to "
        "fall{where}. Often the rate is too low to leave a flat region (a saddle), so try a rate "
        "about three times higher (x3){suggest}; if that does not help, the limit is the model, "
        "the data or the features rather than the rate."),
    "healthy": (
        "The rate looks right: the loss fell quickly, bent over and settled{settled}{where}. "
        "Keep it. {decay}"),
    "not_enough_data": (
        "There are too few loss values to tell a too-high rate from a too-low one: a short "
        "history is dominated by the first steps and by batch noise. Log more steps (at least "
        "{min_points}{better}) and ask again."),
}


def diagnose(
    losses: Any,
    lrs: Any = None,
    *,
    val_losses: Any = None,
    min_points: int = MIN_POINTS,
    steps: Any = None,
    span: tuple[float, float] | None = None,
) -> Diagnosis:
    """Classify a loss history as diverged, unstable, too_slow, plateaued or healthy.

    ``losses``: one training loss per step or per epoch, raw and noisy as logged (a list, a
    numpy array or a tensor; NaN and inf allowed). ``lrs``: the rate at each of those points (or
    one number), used to name the rate to try. ``val_losses``: an optional validation curve, as
    numbers evenly spread over the run, ``(step, loss)`` pairs or a ``{step: loss}`` dict.
    ``steps``: the step number of each loss (default: its position), so that
    the evidence and the reasons say where things happened in the run's own steps (a log written
    every 50 steps, or bin means of a long history). ``losses`` may be a ``{step: loss}`` dict:
    its keys (whole numbers, in any order) are then the steps, ``steps`` is not needed, and
    ``lrs`` is a ``{step: rate}`` dict with the same keys or a list in the dict's item order.
    Returns a :class:`Diagnosis` with the verdict, a confidence, the evidence in numbers, the
    recommended factor for the rate and a plain-words explanation; never guesses from fewer than
    ``min_points`` finite values (verdict ``not_enough_data``). ``span``: the first and last
    step of the run, when the losses leave some out (bin means, batches a guard dropped); the
    validation points must lie in it (default: within the losses' steps, give or take their
    widest gap).
    """
    span = _span(span)
    min_points = plain_int(min_points)
    if not isinstance(min_points, int) or min_points < 3:
        raise LrkitError(f"min_points must be an integer >= 3, got {min_points!r}")
    keyed_steps = keyed_order = None
    if isinstance(losses, Mapping):  # {step: loss}: its keys are the steps, in any order
        keyed_steps, keyed_values, keyed_order = _keyed(losses, "losses")
        values = _to_numpy(keyed_values, "losses")
    else:
        values = _to_numpy(losses, "losses")
    if len(values) == 0:
        raise LrkitError("losses is empty: pass the loss of each step (or epoch) so far")
    rates = None
    if lrs is not None:
        if isinstance(lrs, (bool, np.bool_)):
            raise LrkitError(f"lrs must be a rate or one rate per loss, got {lrs!r}")
        if isinstance(lrs, (int, float, np.floating, np.integer)) or (
                _is_tensor(lrs) and lrs.dim() == 0) or (
                isinstance(lrs, np.ndarray) and lrs.ndim == 0 and lrs.dtype.kind in "iuf"):
            rates = np.full(len(values), float(lrs.detach() if _is_tensor(lrs) else lrs))
        elif keyed_steps is not None and isinstance(lrs, Mapping):
            # {step: rate} with the losses' steps, matched by step
            lr_steps, lr_values, _ = _keyed(lrs, "lrs")
            if not np.array_equal(lr_steps, keyed_steps):
                extra = sorted(set(lr_steps.astype(int)) ^ set(keyed_steps.astype(int)))
                raise LrkitError(f"lrs and losses are {{step: value}} dicts with different "
                                 f"steps (e.g. step {extra[0]} is in only one of them); give "
                                 "both the same steps")
            rates = _to_numpy(lr_values, "lrs")
        else:
            rates = _to_numpy(lrs, "lrs")
            if len(rates) != len(values):
                raise LrkitError(f"lrs has {len(rates)} values but losses has {len(values)}; "
                                 "give one rate per loss (or a single number)")
            if keyed_order is not None:  # one rate per dict item as given: in the steps' order
                rates = rates[keyed_order]
        bad = np.flatnonzero(~np.isfinite(rates) | (rates < 0))
        if len(bad):
            raise LrkitError(f"lrs[{bad[0]}] = {float(rates[bad[0]])!r} is not a valid rate "
                             "(finite, >= 0)")
    step_of = keyed_steps
    if steps is not None and keyed_steps is not None:
        given = _to_numpy(steps, "steps")
        if not np.array_equal(np.sort(given), keyed_steps):
            raise LrkitError("losses is a {step: loss} dict, whose keys are the steps, and "
                             "steps= gives other step numbers; drop steps= (or pass the losses "
                             "as a list with steps=)")
    elif steps is not None:
        step_of = _to_numpy(steps, "steps")
        if not np.isfinite(step_of).all():  # a reason would say "step nan"
            bad = int(np.argmax(~np.isfinite(step_of)))
            raise LrkitError(f"steps[{bad}] = {float(step_of[bad])}: step numbers must be finite")
        if len(step_of) != len(values):
            raise LrkitError(f"steps has {len(step_of)} values but losses has {len(values)}; "
                             "give one step number per loss")
        if len(step_of) > 1 and (np.diff(step_of) < 0).any():
            # in the order of their steps, as a {step: loss} dict's are (a log appended out of
            # order, read as it comes, is another curve); but steps that go back to a step
            # already seen are a second run logged into the same history (losses logged at
            # one step in a row, as under gradient accumulation, are kept as they are)
            order = np.argsort(step_of, kind="stable")
            backs = np.flatnonzero(np.diff(step_of) < 0) + 1  # every one, not the first
            unique, inverse = np.unique(step_of, return_inverse=True)
            first = np.full(len(unique), len(step_of))
            np.minimum.at(first, inverse, np.arange(len(step_of)))  # each step's first position
            repeated = backs[first[inverse[backs]] < backs]
            if len(repeated):
                back = int(repeated[0])
                raise LrkitError(
                    f"steps go back to step {step_of[back]:g} at position {back}, a step seen "
                    "before: two runs logged into one history; diagnose each run on its own "
                    "(the last: losses[" + f"{back}" + ":])")
            step_of = step_of[order]
            values = values[order]
            if rates is not None:
                rates = rates[order]
    ev = measure(values, min_points=min_points)
    ev["min_points"] = min_points
    finite = values[np.isfinite(values)]
    if (len(finite) == len(values) and len(finite) >= min_points
            and float(np.ptp(finite)) <= CONSTANT_REL * float(np.max(np.abs(finite)))):
        ev["constant_loss"] = float(finite[0])
    vev = None
    val = val_steps = None
    if val_losses is not None:
        val, val_steps = _validation(val_losses, len(values))
        if val_steps is not None and len(val_steps):
            _check_within_training(val_steps, step_of, len(values), span)
        if len(val):
            vev = measure_validation(val, train_start=ev.get("start"))
            if val_steps is not None and vev.get("val_best") is not None:
                finite = np.isfinite(val)
                vev["val_best_step"] = int(val_steps[finite][int(np.argmin(val[finite]))])
            ev.update(vev)

    # the rules and the rates read positions; the reasons and the evidence name steps
    verdict, confidence, reasons = _decide(_at_steps(ev, step_of), vev)
    if rates is not None and verdict in ("healthy", "too_slow"):
        # a decaying schedule: judge "still falling?" where the rate was near its peak
        verdict, confidence, reasons = _at_peak(
            values, rates, ev, vev, val, val_steps, step_of, min_points, verdict, confidence,
            reasons)
    if verdict == "diverged" and vev and vev.get("val_ends_nonfinite") and not ev.get(
            "nonfinite_points"):
        ev["validation_only"] = True  # the trouble is at the end, and the wording its own
    factor = FACTORS[verdict]
    if verdict == "too_slow" and ev.get("improvement_log", 1.0) < NO_PROGRESS_LOG:
        factor = 10.0
    # severe: it ended far above its best, or spikes undid all its progress twice over; a lone
    # spike, however tall, is one batch (bad data looks the same) and gets the threefold cut
    # (spikes weighed against real progress: on a flat stretch, the tail of a converged run with
    # its hard batches, "undoing 34528% of the progress" was a division by almost nothing)
    if verdict == "unstable" and (ev.get("end_vs_best_log", 0) >= 2 * END_ABOVE_BEST_LOG
                                  or (ev.get("max_spike", 0) >= 2 * SPIKE_UNDO_ALL
                                      and ev.get("spikes", 0) >= 2
                                      and ev.get("progress_log", 0) > NO_PROGRESS_LOG)):
        factor = 0.1

    # where, and which rate
    suggested = None
    where = ""
    if rates is not None:
        ev["lr_end"] = float(rates[-1])
        ev["lr_min"], ev["lr_max"] = float(rates.min()), float(rates.max())
        trouble = None
        if verdict == "diverged" and ev.get("validation_only"):
            trouble = len(rates) - 1  # the last update, if any: the training curve held up
        elif verdict == "diverged":
            trouble = ev.get("first_nonfinite_at")
            if trouble is None:  # where the growth began, not where it ended
                trouble = ev.get("blowup_at")
                if trouble is None:  # no rise above the start: the peak, as before
                    trouble = ev.get("peak_at")
        elif verdict == "unstable" and ev.get("spike_steps"):
            trouble = ev["spike_steps"][0]
        if trouble is not None and trouble < len(rates):
            ev["lr_at_trouble"] = float(rates[trouble])
            where = (f" (trouble started at step {_at_steps({'at': trouble}, step_of)['at']}, "
                     f"rate {rates[trouble]:.3g})")
        scheduled = ev["lr_max"] > ev["lr_min"] * 1.01
        # with a schedule the change applies to its peak (what a user sets), not to the last,
        # decayed rate; where trouble started, to the rate there
        base = ev.get("lr_at_trouble", ev["lr_max"] if scheduled else ev["lr_end"])
        if factor is not None and base > 0:
            suggested = float(base * factor)
        if scheduled:
            ev["lr_schedule"] = True
    elif verdict in ("diverged",) and ev.get("first_nonfinite_at") is not None:
        where = (" (non-finite from step "
                 f"{_at_steps(ev, step_of)['first_nonfinite_at']})")
    suggest = f", to about {suggested:.3g}" if suggested is not None and factor != 1.0 else ""
    how = {0.1: "about tenfold (x0.1)", 0.3: "about threefold (x0.3)", 3.0: "about threefold (x3)",
           10.0: "about tenfold (x10), since the loss has barely moved"}.get(factor or 1.0, "")
    decay = _DECAY_ADVICE
    if (verdict == "healthy" and rates is not None and ev.get("lr_schedule")
            and ev["lr_end"] <= 0.5 * ev["lr_max"]):
        # the rates already decay: advising a decay for the last part told the user to add
        # what the run does (a cosine to 0 was told "decaying the rate ... x0.1")
        decay = ("The rates already decay (" + (
            f"to {ev['lr_end'] / ev['lr_max']:.0%} of their peak"
            if ev["lr_end"] >= 0.01 * ev["lr_max"] else "to about 0") + "), as they should.")
    # "falling steadily but slowly" was said of a loss that had not moved at all (the x10 case)
    trend = ("the loss has barely moved from where it started" if factor == 10.0 else
             "the loss is falling steadily but slowly and has not bent over")
    lone = int(ev.get("spikes") or 0) + int(ev.get("early_spikes") or 0)
    settled = (" without spikes or oscillation" if not lone else
               f", with {lone} lone spike{'s' if lone > 1 else ''} too few to matter "
               "(single batches far above the level)")
    # (a min_points of 1000 read "at least 1000, better a few hundred steps")
    better = ", better a few hundred steps or a dozen epochs" if min_points < 100 else ""
    explanation = _EXPLAIN[verdict].format(where=where, suggest=suggest, min_points=min_points,
                                           how=how, decay=decay, trend=trend, settled=settled,
                                           better=better)
    if rates is not None and float(rates.max()) == 0.0 and verdict in ("too_slow", "plateaued"):
        # a rate of 0 moves nothing: no factor of it can help, whatever the curve looks like
        explanation += " " + _ZERO_RATE
    if ev.get("constant_loss") is not None and verdict == "not_enough_data":
        explanation = _constant_explanation(ev["constant_loss"], len(values), rates)
    if ev.get("validation_only"):
        # not "the loss grows instead of falling": the training loss did not
        explanation = (
            "The last validation loss is not finite while every training loss is. Either the "
            "last update broke the model (a rate far too high shows first there: lower it about "
            f"tenfold{suggest}), or the evaluation itself failed (0/0 over an empty validation "
            "loader, a log of 0): check the evaluation first; if it is sound, the rate is the "
            "cause.")
    return Diagnosis(verdict, confidence, _jsonable(_at_steps(ev, step_of)), factor, explanation,
                     suggested, reasons)


#: said of a run whose logged rate is 0 at every step
_ZERO_RATE = ("The logged rate is 0 at every step: no update could move the parameters, so set a "
              "positive rate first (a scheduler or warmup that starts at 0 must rise from it).")


def _constant_explanation(value: float, n: int, rates: np.ndarray | None) -> str:
    """What a loss that never changed tells: no learning at all, and why that can be."""
    zero_rate = rates is not None and float(rates.max()) == 0.0
    if zero_rate:
        rate = _ZERO_RATE
    elif rates is not None:
        rate = (f"The rate was {float(rates.max()):.3g}, not 0: look at the gradients (for "
                "example, print each parameter's grad after backward()).")
    else:
        rate = ("Also check that the rate is not 0 (a scheduler or warmup at 0), or so small that "
                "no update shows at float precision.")
    if value == 0.0:
        return (f"The loss is exactly 0 at all {n} steps, so the curve says nothing about the "
                "rate and no change of rate is suggested. Either there is nothing left to learn "
                "(the model already fits these batches exactly: training can stop), or the "
                "logged loss is not wired to the model: multiplied by 0, a mask that removes "
                "every element, an empty batch, or a value logged before it is computed. Check "
                "that the loss of an untrained model on a real batch is not 0, and that the "
                "value logged is the one backward() is called on." + ("" if zero_rate else
                                                                      " " + rate))
    head = (f"The loss is exactly {value:.6g} at all {n} steps: no learning happened at all, so "
            "the curve says nothing about the rate")
    if zero_rate:
        return head + ". " + rate
    return (head + ", and no change of rate is suggested: if no update reaches the parameters, "
            "a higher rate changes nothing. Most often the gradients do not flow (a detach(), "
            "torch.no_grad(), requires_grad=False, the optimizer given other parameters than "
            "the model's, optimizer.step() never called, or zero_grad() between backward() and "
            "step()), the loss does not depend on the parameters, or the same number is logged "
            "at every step (a constant instead of loss.item()). " + rate)


_POSITIONS = ("at", "first_nonfinite_at", "best_at", "peak_at", "blowup_at", "rebound_at",
              "late_peak_at", "raw_peak_at")


def _at_steps(ev: dict, step_of: np.ndarray | None) -> dict:
    """The evidence with its positions (indices into the curve) as step numbers."""
    if step_of is None:
        return ev

    def step(i: int) -> float | int:
        value = float(step_of[i])
        return int(value) if value.is_integer() else value

    out = dict(ev)
    for key in _POSITIONS:
        if out.get(key) is not None:
            out[key] = step(out[key])
    if out.get("spike_steps"):
        out["spike_steps"] = [step(i) for i in out["spike_steps"]]
    return out
