"""When a range test has gone too far: the stop rule, shared by the finder and Guard's probe."""
from __future__ import annotations

import math



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


#: the first step whose smoothed loss can be the best: the first value is one batch, where later
#: ones average several, and a low first batch was a "best" that the next, ordinary batches
#: "rose" from (a stop at 1e-6, before the model had moved: SGD on a shuffled loader, 1 seed in
#: 6 of an end-to-end review's script)
BEST_FROM = 1


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
        # two bias-corrected EMAs (as OnlineEMA, same arithmetic), kept inline: this runs once per
        # step of the range test, and on models with 0.4 ms steps its method calls were a
        # measurable share of the finder's overhead
        self._beta = smoothing
        self._ema_sum = self._deviation_sum = 0.0
        self.best = math.inf
        self._best_noise = 0.0
        self._first: float | None = None
        self._raw = math.nan
        self._changes: list[float] = []  # |raw loss - previous raw loss|
        self._value = math.nan
        self._step = -1

    def update(self, loss: float) -> bool:
        """Record a finite loss; True when the test has diverged."""
        self._step += 1
        beta = self._beta
        first = self._first
        if first is not None:
            # the deviation's EMA has seen one value fewer than the loss's (none at the first)
            self._deviation_sum = beta * self._deviation_sum + (1 - beta) * abs(loss - self._value)
            noise = (self._deviation_sum / (1 - beta ** self._step) if beta > 0
                     else abs(loss - self._value))
            self._changes.append(abs(loss - self._raw))
        else:
            noise = 0.0
        self._raw = loss
        self._ema_sum = beta * self._ema_sum + (1 - beta) * loss
        value = self._value = self._ema_sum / (1 - beta ** (self._step + 1)) if beta > 0 else loss
        if value < self.best and self._step >= BEST_FROM:
            self.best = value
        if value <= self.best or self._step <= self.min_steps:
            self._best_noise = noise  # the noise level at the best point, not while it explodes
        if first is None:
            self._first = first = value
        if self._step < self.min_steps or self.best == math.inf or not has_diverged(
                value, self.best, first, self.threshold, self._best_noise):
            return False
        # the median change only raises the noise level, so it can only turn a "diverged" into
        # "not yet": computed just then (a sort per step cost more than the rest of the rule)
        changes = sorted(self._changes)
        return has_diverged(value, self.best, first, self.threshold,
                            max(self._best_noise, changes[len(changes) // 2]))
