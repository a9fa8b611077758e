"""Loss smoothing: an online EMA for the divergence check while the test runs, and a zero-lag
smoother for the suggestion afterwards.

An EMA lags: on a rising-rate curve it shifts every feature to higher rates, which is one reason
published finders suggest rates that are too high. Suggestions therefore use a centred
(forward-backward) smoother that has no lag.
"""
from __future__ import annotations

import math

import numpy as np


class OnlineEMA:
    """Bias-corrected exponential moving average (as fastai/Lightning), fed one value at a time."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self._avg = 0.0
        self._count = 0

    def update(self, value: float) -> float:
        self._count += 1
        self._avg = self.beta * self._avg + (1 - self.beta) * value
        return self._avg / (1 - self.beta ** self._count) if self.beta > 0 else value


def ema(values: np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected EMA of a whole curve."""
    smoother = OnlineEMA(beta)
    return np.array([smoother.update(float(v)) for v in values])


def centred(values: np.ndarray, window: float) -> np.ndarray:
    """Zero-lag smoothing: a Gaussian kernel of standard deviation ``window`` points, renormalised
    at the ends so that the first and last points are not pulled towards zero."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 3 or window <= 0:
        return values.copy()
    half = int(math.ceil(3 * window))
    offsets = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (offsets / window) ** 2)
    padded = np.pad(values, half, mode="constant")
    weights = np.pad(np.ones(n), half, mode="constant")
    num = np.convolve(padded, kernel, mode="valid")
    den = np.convolve(weights, kernel, mode="valid")
    return num / den


def auto_window(n: int) -> float:
    """A smoothing width that scales with the curve length (about 4% of the points, at least 1.5)."""
    return max(1.5, 0.04 * n)
