"""When a range test has gone too far: the stop rule, shared by the finder and Guard's probe."""
from __future__ import annotations

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

    Keeps an EMA of the loss (``smoothing`` = beta), its best value, and the loss's noise level
    (an EMA of the absolute deviation from the EMA), taken at the best point rather than while the
    loss explodes. No verdict in the first ``min_steps`` steps, while the noise estimate settles.
    """

    def __init__(self, threshold: float, smoothing: float, min_steps: int) -> None:
        self.threshold = threshold
        self.min_steps = min_steps
        self._ema = OnlineEMA(smoothing)
        self._deviation = OnlineEMA(smoothing)
        self.best = math.inf
        self._best_noise = 0.0
        self._first: float | None = None
        self._value = math.nan
        self._step = -1

    def update(self, loss: float) -> bool:
        """Record a finite loss; True when the test has diverged."""
        self._step += 1
        noise = self._deviation.update(abs(loss - self._value)) if self._first is not None else 0.0
        self._value = self._ema.update(loss)
        self.best = min(self.best, self._value)
        if self._value <= self.best or self._step <= self.min_steps:
            self._best_noise = noise  # the noise level at the best point, not while it explodes
        if self._first is None:
            self._first = self._value
        return self._step >= self.min_steps and has_diverged(
            self._value, self.best, self._first, self.threshold, self._best_noise)
