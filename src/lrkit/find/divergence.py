"""When a range test has gone too far: the stop rule, shared by the finder and Guard's probe."""
from __future__ import annotations

import bisect
import math

from lrkit.find.smoothing import OnlineEMA


def has_diverged(smoothed: float, best: float, first: float, threshold: float,
                 noise: float = 0.0) -> bool:
    """True when the smoothed loss has risen too far above its best.

    The rise is measured against the improvement seen so far (``first - best``), or the loss's
    noise level before there is any improvement. Both are differences of losses, so the rule is
    the same for losses that are negative or near zero (fastai #962) and unchanged when a constant
    is added to the loss; for a loss that fell to a small fraction of its start it stops a few
    steps later than the usual "``threshold`` x best" rule.
    """
    scale = max(first - best, noise, 1e-12 * (abs(best) + 1.0))
    return smoothed - best > (threshold - 1.0) * scale


class DivergenceWatch:
    """Feed it one loss per step of a rising-rate test; :meth:`update` says when to stop.

    Keeps an EMA of the loss (``smoothing`` = beta), its best value, and the loss's noise level:
    an EMA of the absolute deviation from the EMA, taken at the best point rather than while the
    loss explodes, and never below the median step-to-step change of the raw loss so far. The
    median is the floor because the best point can come in the first few steps of a flat, noisy
    start, where the EMA of the deviation has not yet seen the noise: the test then stopped on
    noise at 1e-5 (digits-mlp, 1 seed in 12). A median is robust to the explosion itself. No
    verdict in the first ``min_steps`` steps.
    """

    def __init__(self, threshold: float, smoothing: float, min_steps: int) -> None:
        self.threshold = threshold
        self.min_steps = min_steps
        self._ema = OnlineEMA(smoothing)
        self._deviation = OnlineEMA(smoothing)
        self.best = math.inf
        self._best_noise = 0.0
        self._first: float | None = None
        self._raw = math.nan
        self._changes: list[float] = []  # |raw loss - previous raw loss|, sorted
        self._value = math.nan
        self._step = -1

    def update(self, loss: float) -> bool:
        """Record a finite loss; True when the test has diverged."""
        self._step += 1
        noise = self._deviation.update(abs(loss - self._value)) if self._first is not None else 0.0
        if self._first is not None:
            bisect.insort(self._changes, abs(loss - self._raw))
        self._raw = loss
        self._value = self._ema.update(loss)
        self.best = min(self.best, self._value)
        if self._value <= self.best or self._step <= self.min_steps:
            self._best_noise = noise  # the noise level at the best point, not while it explodes
        if self._first is None:
            self._first = self._value
        if self._step < self.min_steps:
            return False
        typical_change = self._changes[len(self._changes) // 2]
        return has_diverged(self._value, self.best, self._first, self.threshold,
                            max(self._best_noise, typical_change))
