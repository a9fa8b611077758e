"""Synthetic loss curves with a known verdict, for tests, the accuracy benchmark and examples.

Each family is a shape with multiplicative noise, per step (hundreds of noisy points) or per epoch
(a few dozen smooth points)::

    from lrkit.diagnose.synthetic import curve
    losses = curve("unstable", rng=np.random.default_rng(0), per_epoch=False)
"""
from __future__ import annotations

import numpy as np

FAMILIES = ("healthy", "too_slow", "unstable", "diverged", "plateaued", "not_enough_data")


def _noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    return np.exp(rng.normal(0.0, sigma, n))


def curve(family: str, *, rng: np.random.Generator, per_epoch: bool = False) -> np.ndarray:
    """One curve of ``family`` (see :data:`FAMILIES`)."""
    if family == "not_enough_data":
        return 2.3 * _noise(rng, int(rng.integers(1, 8)), 0.05)
    n = int(rng.integers(12, 60)) if per_epoch else int(rng.integers(200, 2000))
    sigma = float(rng.uniform(0.01, 0.04)) if per_epoch else float(rng.uniform(0.05, 0.3))
    t = np.linspace(0.0, 1.0, n)
    start = float(rng.uniform(0.5, 3.0))
    floor = start * float(rng.uniform(0.02, 0.3))
    if family == "healthy":
        tau = float(rng.uniform(0.04, 0.18))
        clean = floor + (start - floor) * np.exp(-t / tau)
    elif family == "too_slow":
        if rng.random() < 0.5:  # straight line, 10-50% down
            clean = start * (1.0 - float(rng.uniform(0.1, 0.5)) * t)
        else:  # an exponential far longer than the run
            tau = float(rng.uniform(1.5, 6.0))
            clean = floor + (start - floor) * np.exp(-t / tau)
    elif family == "plateaued":
        drop = float(rng.uniform(0.1, 0.3))
        tau = float(rng.uniform(0.02, 0.08))
        clean = start * (1.0 - drop * (1.0 - np.exp(-t / tau)))
    elif family == "unstable":
        # it survives: the loss stays below its start, but well above the best it reached
        floor = start * float(rng.uniform(0.02, 0.1))
        tau = float(rng.uniform(0.04, 0.15))
        clean = floor + (start - floor) * np.exp(-t / tau)
        kind = rng.integers(0, 3)
        if kind == 0:  # spikes that undo most of the progress
            k = int(rng.integers(3, 8)) if not per_epoch else int(rng.integers(2, 4))
            where = rng.choice(np.arange(int(0.15 * n), n), size=min(k, n - int(0.15 * n)),
                               replace=False)
            clean[where] = clean[where] + (start - clean[where]) * rng.uniform(0.8, 2.0, len(where))
        elif kind == 1:  # falls, then climbs back well above its best
            rise = float(rng.uniform(2.5, min(5.0, 0.7 * start / floor)))
            clean = clean * np.where(t > 0.5, 1.0 + (rise - 1.0) * (t - 0.5) / 0.5, 1.0)
        else:  # bounces: large up-and-down swings around a level
            period = float(rng.uniform(0.05, 0.2))
            swing = np.clip(np.sin(2 * np.pi * t / period), 0, None) ** 2
            level = np.maximum(clean, floor * 2)
            high = start * float(rng.uniform(0.3, 0.7))
            clean = np.where(t > 0.2, level + (high - level) * swing, clean)
    elif family == "diverged":
        kind = rng.integers(0, 3)
        at = int(rng.uniform(0.2, 0.8) * n)
        tau = float(rng.uniform(0.05, 0.2))
        clean = floor + (start - floor) * np.exp(-t / tau)
        if kind == 0:  # blows up to NaN
            clean[at:] = clean[at] * np.exp(np.arange(n - at) * float(rng.uniform(0.2, 1.0)))
            clean[clean > 1e30] = np.inf
            if rng.random() < 0.5:
                clean[np.isinf(clean)] = np.nan
        elif kind == 1:  # blows up and stays high
            clean[at:] = start * float(rng.uniform(3.0, 50.0))
        else:  # climbs steadily from the start
            clean = start * np.exp(t * float(rng.uniform(1.0, 4.0)))
    else:
        raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")
    with np.errstate(invalid="ignore", over="ignore"):
        return clean * _noise(rng, n, sigma)
