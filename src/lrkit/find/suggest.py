"""Suggestion methods: each maps a recorded range-test curve (rates, losses) to one rate.

All methods see the same prepared curve: cut at the first non-finite loss (so NaN/inf can never
corrupt a suggestion), smoothed without lag, on a log-rate axis. Every method returns a rate inside
the swept range, is unchanged when a constant is added to the loss, and returns ``None`` when the
curve holds no usable information (too short, or the loss never fell).
"""
from __future__ import annotations

import bisect
import dataclasses
import functools
import math
from typing import Callable

import numpy as np

from lrkit.errors import LrkitError
from lrkit.find.smoothing import auto_window, centred


@dataclasses.dataclass(frozen=True)
class Curve:
    """A range-test curve ready for the suggestion methods."""

    lrs: np.ndarray  #: rates of the finite prefix
    raw: np.ndarray  #: raw losses of the finite prefix
    smooth: np.ndarray  #: lag-free smoothed losses
    log_lrs: np.ndarray
    window: float  #: standard deviation, in points, of the smoothing kernel that made ``smooth``
    #: the gradient's noise-to-signal ratio at the batch size (:mod:`lrkit.find.noise`), if measured
    gradient_noise: float | None = None
    #: the optimizer's family as the trainable reports it ("adam", "sgd" or "other"): Adam's
    #: kind reads a high noise differently (:func:`edge_fraction`)
    optimizer_family: str = "other"
    #: the planned run's length in optimizer steps, if known (:func:`edge_fraction`)
    budget_steps: int | None = None

    @property
    def n(self) -> int:
        return len(self.lrs)

    @functools.cached_property
    def edge_fraction(self) -> float:
        """The share of the loss minimum's rate that ``edge`` takes (:func:`edge_fraction`)."""
        return edge_fraction(self.gradient_noise, self.optimizer_family, self.budget_steps)

    @functools.cached_property
    def min_index(self) -> int:
        return first_min(self.smooth)

    @functools.cached_property
    def fell(self) -> bool:
        """Did the loss fall by more than the smoothed curve's own noise before its minimum?

        The noise is the raw points' scatter around the smoothed curve (up to the minimum), scaled
        down by the number of points the smoother averages; the test is scale-free and shift-free.
        The start is the higher of the first smoothed point and the median of the first tenth (the
        good range's starting level): at the curve's edge the smoother averages few points, and
        on batches of 8 two low first losses put it under the whole flat start, so that a curve
        falling by a third "never fell" (regression-mlp/b8 in benchmarks/finder_quality.py).
        """
        return self._drop_stands_out and not self.lowest_at_start

    @functools.cached_property
    def _drop_stands_out(self) -> bool:
        """The drop from the start to the minimum is larger than the noise (see ``fell``)."""
        if self.n < 5:
            return False
        start = max(float(self.smooth[0]), float(np.median(self.smooth[: max(3, self.n // 10)])))
        drop = start - self.smooth[self.min_index]
        # below float32's resolution of the loss, a "drop" is rounding: a perfectly flat loss
        # (a model whose output ignores its parameters) never fell
        level = max(abs(start), abs(float(self.smooth[self.min_index])))
        return bool(drop > 3 * self.smooth_noise and drop > FLAT_TOLERANCE * level and drop > 0)

    @functools.cached_property
    def lowest_at_start(self) -> bool:
        """Whether the loss dipped below its starting level only in the curve's first tenth (the
        flat start, whose median is that level), and never again: there the rate has not acted
        yet, and such a dip is the noise's (a trained model, or a start_lr already too high),
        not a fall. None of the 480 curves of benchmarks/finder_quality.py has its minimum
        there."""
        return self._drop_stands_out and self.min_index < max(3, self.n // 10)

    @functools.cached_property
    def smooth_noise(self) -> float:
        """The smoothed curve's own noise: the raw points' scatter around it (up to the minimum,
        a robust standard deviation), scaled down by the number of points the smoother averages."""
        upto = self.min_index + 1
        scatter = 1.25 * float(np.median(np.abs(self.raw[:upto] - self.smooth[:upto])))
        return scatter / math.sqrt(2 * math.sqrt(math.pi) * max(self.window, 0.5))


MIN_POINTS = 8
#: a curve shorter than this that did not fall clearly may just be too short to show it
SHORT_CURVE = 20
#: a fall smaller than this share of the loss's level is float32 rounding, not a fall
FLAT_TOLERANCE = 1e-6


def first_min(values: np.ndarray) -> int:
    """Index of the first value within a hair (1e-9 of the range) of the minimum: unlike
    argmin, it does not flip between near-ties when a constant is added (rounding)."""
    low, high = float(np.min(values)), float(np.max(values))
    return int(np.argmax(values <= low + 1e-9 * (high - low)))


def prepare(lrs, losses, window: float | None = None,
            gradient_noise: float | None = None, optimizer_family: str = "other",
            budget_steps: int | None = None) -> Curve:
    lrs = np.asarray(lrs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise LrkitError(f"rates and losses must be 1-D of equal length, got {lrs.shape} and {losses.shape}")
    bad = ~np.isfinite(losses) | ~np.isfinite(lrs) | (lrs <= 0)
    end = int(np.argmax(bad)) if bad.any() else len(losses)
    lrs, raw = lrs[:end], losses[:end]
    window = auto_window(len(raw)) if window is None else window
    smooth = centred(_capped_tail(raw), window)
    return Curve(lrs, raw, smooth, np.log10(lrs) if len(lrs) else lrs, window, gradient_noise,
                 optimizer_family, budget_steps)


#: losses after the lowest one, above it by more than this many times the fall to it (from the
#: highest loss before it), are capped there before smoothing (see :func:`_capped_tail`)
TAIL_CAP = 10.0


def _capped_tail(raw: np.ndarray) -> np.ndarray:
    """The losses with a blow-up's extreme values capped. Why: the last losses before the
    divergence stop (3387 where the loss had fallen from 6.1 to 0.61) leak into a centred
    smoother's points before the minimum, and hid a clear fall ("the loss never fell") or
    moved the suggestion down. The cap sits far above the curve's own levels, so that only such
    a tail is touched (11 of the default's 480 suggestions on the finder benchmark moved)."""
    if len(raw) < 2:
        return raw
    low = int(np.argmin(raw))
    fall = float(np.max(raw[: low + 1])) - float(raw[low])
    if fall <= 0 or low < max(2, len(raw) // 10):
        # lowest at or near the start: no fall to protect (the cap flattened the whole curve)
        return raw
    # measured from the minimum, in the curve's own fall: the same for any shift of the loss
    cap = float(raw[low]) + TAIL_CAP * fall
    return np.minimum(raw, cap) if (raw > cap).any() else raw


def _trim(curve: Curve, start_fraction: float = 0.1, end_points: int = 5) -> slice:
    lo = int(curve.n * start_fraction)
    hi = max(lo + 2, curve.n - end_points)
    return slice(lo, min(hi, curve.n))


def steepest(curve: Curve) -> float | None:
    """Steepest descent of the smoothed loss against log-rate, before the loss minimum
    (the gradient after the minimum is the divergence, never a candidate)."""
    if curve.n < MIN_POINTS or not curve.fell:
        return None
    hi = curve.min_index + 1
    lo = int(curve.n * 0.05)
    if hi - lo < 3:
        lo = 0
    if hi - lo < 3:
        return None
    grad = np.gradient(curve.smooth[lo:hi], curve.log_lrs[lo:hi])
    return float(curve.lrs[lo + first_min(grad)])


def valley(curve: Curve) -> float | None:
    """fastai's valley (:func:`fastai_valley`), but ``None`` when the loss never fell, as every
    lrkit method (fastai suggests a rate on any curve)."""
    if not curve.fell:
        return None
    return fastai_valley(curve)


def fastai_valley(curve: Curve) -> float | None:
    """fastai's valley: the longest run of decreasing loss; the point about midway into it.
    Re-implemented from fastai's published algorithm (trim the first tenth and last 5 points)."""
    if curve.n < MIN_POINTS:
        return None
    part = _trim(curve)
    losses = curve.smooth[part].tolist()  # plain floats: a Python loop over numpy items is slower
    n = len(losses)
    # longest decreasing subsequence ending at each point, in fastai's order of updates: the run's
    # start is fixed when the running length first exceeds the previous best (fastai compares
    # after every j, so later j cannot move it)
    # fastai's double loop (O(n^2): 12 s at 20,000 steps) gives each point the length of the
    # longest strictly decreasing run of points ending there; a new longest run ends at i, and
    # starts at i - its length, where that length first exceeds the best so far (fastai fixes the
    # start when the running length first passes the best; the best is the longest run, so it
    # passes it by one, to this same length). Patience sorting on the negated losses gives the
    # same lengths in O(n log n): ``tails[k]``, the lowest end of a run of length k + 1
    tails: list[float] = []
    best = 0
    max_start = max_end = 0
    for i, value in enumerate(losses):
        k = bisect.bisect_left(tails, -value)
        if k == len(tails):
            tails.append(-value)
        else:
            tails[k] = -value
        if k + 1 > best:
            if i > 0:
                max_end, max_start = i, i - (k + 1)
            best = k + 1
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(curve.lrs[part][min(max(idx, 0), n - 1)])


def minimum(curve: Curve) -> float | None:
    """The rate at the smoothed minimum divided by 10 (fastai's ``minimum``; Smith's upper bound
    of usable rates, with a safety factor)."""
    if curve.n < MIN_POINTS or not curve.fell:
        return None
    return max(float(curve.lrs[curve.min_index]) / 10, float(curve.lrs[0]))


#: fraction of the minimum's rate that ``edge`` suggests; chosen on the tuning tasks of
#: benchmarks/finder_quality.py (fractions 1/1.5 .. 1/10 compared; 1/2.5 had the lowest median regret)
EDGE_FRACTION = 0.4


#: Adam's kind at a noise ratio of at least ``ADAM_NOISY`` takes ``ADAM_NOISY_FRACTION`` of the
#: minimum's rate (chosen on the 6 tasks of benchmarks/finder_quality.py on Adam or AdamW at that
#: noise, whose best rates were 0.03-0.26x the minimum's; of 6 more, held out, 4 had 0.02-0.18x
#: and 2 had 1.2-1.4x; docs/find.md)
ADAM_NOISY = 1.3
ADAM_NOISY_FRACTION = 0.15
#: ... in a run of at least this many steps, or of unknown length: in shorter ones the noise has
#: no time to tell, and speed counts (budgets of 32 steps: 0.4x did better on 4 of 6 such tasks;
#: of 100-400: 0.15x on 4-5 of 6)
ADAM_LONG_RUN = 100
#: what a trainable's ``optimizer_family`` may say (lrkit.trainable)
OPTIMIZER_FAMILIES = ("adam", "sgd", "other")


def edge_fraction(gradient_noise: float | None, optimizer_family: str = "other",
                  budget_steps: int | None = None) -> float:
    """The share of the loss minimum's rate that ``edge`` suggests: ``EDGE_FRACTION``, raised to
    ``1 / (1 + B_noise / B)`` when the gradient noise is measured and low. McCandlish et al.'s
    best step shrinks by that factor; where the noise is small the minimum itself is a close
    guide, and the best rate of the benchmark's low-noise tasks was 0.75-0.9x the minimum's.
    Never lowered below ``EDGE_FRACTION`` (on its noisy tasks the full factor cut too far:
    hastie-mlp, friedman-deep), except for Adam's kind (``optimizer_family="adam"``) at a ratio
    of ``ADAM_NOISY`` or more, in a run of ``ADAM_LONG_RUN`` steps or more (``budget_steps``; or
    of unknown length): ``ADAM_NOISY_FRACTION``. With Adam the step does not shrink with
    the gradient, so the noise keeps its size to the end of a run at a constant rate, which a
    short ramp does not see (docs/find.md)."""
    if gradient_noise is None or not gradient_noise >= 0:
        return EDGE_FRACTION
    if (optimizer_family == "adam" and gradient_noise >= ADAM_NOISY
            and (budget_steps is None or budget_steps >= ADAM_LONG_RUN)):
        return ADAM_NOISY_FRACTION
    return max(EDGE_FRACTION, 1.0 / (1.0 + gradient_noise))


def edge(curve: Curve) -> float | None:
    """A fraction of the rate at the lag-free loss minimum (:func:`edge_fraction`).

    Past the minimum, training at a constant rate is unstable (Smith's upper bound), and the best
    constant rate for a full run sits below it: on the benchmark tasks 0.2-1x the minimum's
    rate, less where the gradient is noisy.
    """
    if curve.n < MIN_POINTS or not curve.fell:
        return None
    return max(float(curve.lrs[curve.min_index]) * curve.edge_fraction, float(curve.lrs[0]))


METHODS: dict[str, Callable[[Curve], float | None]] = {
    "edge": edge,
    "steepest": steepest,
    "valley": valley,
    "minimum": minimum,
}


#: the fall that counts as "started": this share of the whole drop, below the starting level
FALL_STARTED = 0.10


def good_range(curve: Curve) -> tuple[float, float] | None:
    """Rates worth using: from where the loss has clearly started to fall to just below the
    rate of the loss minimum (half of it: past the minimum training is already unstable; or
    ``edge``'s rate, when a low gradient noise put that higher), and at least down to ``edge``'s
    rate.

    "Started to fall" is the first rate after which the smoothed loss stays below the starting
    level (the median of the first tenth of the curve) by more than ``FALL_STARTED`` of its whole
    drop and three times its own noise. A first dip of the noise on the flat start does not count: taking the first
    crossing of a 5% line from the first point, the bound scattered by 0.4-4.2 decades (median
    2.8) between seeds of the same task; this rule, by 0.2-1.6 (median 0.3; the 60 curves of
    benchmarks/finder_quality.py)."""
    if curve.n < MIN_POINTS or not curve.fell:
        return None
    i_min = curve.min_index
    smooth, best = curve.smooth[: i_min + 1], curve.smooth[i_min]
    start = max(float(np.median(curve.smooth[: max(3, curve.n // 10)])), best)
    fall = max(FALL_STARTED * (start - best), 3 * curve.smooth_noise)
    above = np.nonzero(smooth > start - fall)[0]
    first = min(int(above[-1]) + 1, i_min) if len(above) else 0
    # up to half the minimum's rate, or to edge's rate where low gradient noise put it higher,
    # and down to edge's rate where a noisy Adam put it below the fall's start: a suggestion
    # outside its own good range would say two things at once
    min_rate = float(curve.lrs[i_min])
    fraction = curve.edge_fraction
    # (and at least down to half the minimum's rate: where the fall "started" at or above
    # edge's rate, a high fraction made the range one point)
    lo = min(float(curve.lrs[first]),
             max(min_rate * min(fraction, 0.5), float(curve.lrs[0])))
    hi = max(min_rate * max(0.5, fraction), lo)
    return lo, hi


#: the method ``method="auto"`` uses; chosen by benchmarks/finder_quality.py (see the README)
DEFAULT_METHOD = "edge"


@dataclasses.dataclass
class Analysis:
    curve: Curve
    suggestions: dict[str, float | None]
    method: str
    suggested_lr: float | None
    good_range: tuple[float, float] | None
    warnings: list[str]
    #: why the curve cannot carry a suggestion (too few points, no fall), one of ``warnings``;
    #: None when it can (a method may still find no point on it)
    unreadable: str | None = None
    #: the warning that the methods' rates part ways (one of ``warnings``), or None
    disagreement: str | None = None


def analyse(lrs, losses, *, method: str = "auto", smooth_window: float | None = None,
            gradient_noise: float | None = None, optimizer_family: str = "other",
            budget_steps: int | None = None) -> Analysis:
    """Every method's suggestion, the chosen one, the good range and warnings for one curve
    (``gradient_noise``: the measured ``B_noise / B``, which ``edge`` reads, with the
    ``optimizer_family`` and the run's ``budget_steps``: see :func:`edge_fraction`)."""
    curve = prepare(lrs, losses, smooth_window, gradient_noise, optimizer_family, budget_steps)
    chosen = DEFAULT_METHOD if method == "auto" else method
    if chosen not in METHODS:
        raise LrkitError(f"unknown suggestion method {method!r}; choose 'auto' or one of {sorted(METHODS)}")
    suggestions = {name: fn(curve) for name, fn in METHODS.items()}
    unreadable = None
    if curve.n < MIN_POINTS:
        unreadable = (f"only {curve.n} usable points in the curve: too few to suggest a rate; "
                      "use more steps or a lower start_lr")
    elif curve.lowest_at_start:
        unreadable = ("the loss was lowest at the start of the sweep and never fell below it: "
                      "the model may be trained already, or start_lr is too high for it; lower "
                      "start_lr, or check the model and data")
    elif not curve.fell and curve.n < SHORT_CURVE:
        # (a validation curve of 10 points that fell from 2.0 to 0.7 read "never fell ... widen
        # the range": its points were too few to tell the fall from their noise)
        unreadable = (f"the loss did not fall clearly over the curve's {curve.n} points, too few "
                      "to tell a fall from the noise: use more steps (on the validation curve, "
                      "a smaller val_every) before widening the range")
    elif not curve.fell:
        unreadable = ("the loss never fell over the swept range: check the model and data, "
                      "or widen the range (lower start_lr, higher end_lr)")
    warnings: list[str] = [unreadable] if unreadable else []
    # (valley trims fastai's last 5 points, sized for 100-point curves: on a short validation
    # curve it read the first few points only, and "the methods disagree" was its artefact)
    found = {name: v for name, v in suggestions.items() if v is not None
             and not (name == "valley" and curve.n < SHORT_CURVE)}
    disagreement = None
    if len(found) >= 2:
        low, high = min(found, key=found.get), max(found, key=found.get)
        spread = np.log10(found[high]) - np.log10(found[low])
        if spread > 1.5:
            # measured: on the benchmark's curves this warning did not mark worse suggestions
            # from the default (median regret 0.5% with it, 5% without), so it does not say the
            # default is in doubt; it says the methods, and so the published rules, part ways
            advice = (f"the default ({chosen}) was measured on such curves too, but look at the "
                      "plot before picking another method" if method == "auto" else
                      f"look at the plot: the suggestion is {chosen}'s, chosen by you")
            disagreement = (f"the methods disagree by {spread:.1f} decades ({low} "
                            f"{found[low]:.3g} .. {high} {found[high]:.3g}); {advice}")
            warnings.append(disagreement)
    good = good_range(curve)
    rate = suggestions[chosen]
    if good is not None and rate is not None:
        # the chosen method's rate inside its own good range (edge's always is; a method chosen
        # by name, minimum/10 say, could sit below it: two things said at once)
        good = (min(good[0], rate), max(good[1], rate))
    return Analysis(curve, suggestions, chosen, rate, good, warnings, unreadable, disagreement)
