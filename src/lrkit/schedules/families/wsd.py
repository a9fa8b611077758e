"""Warmup-stable-decay (trapezoidal) schedules, as in MiniCPM and Hägele et al. 2024.

The formula is the one of transformers' ``get_wsd_schedule``: warm up from ``floor`` to the
peak, hold, then decay to ``floor`` over the last ``decay`` steps. A WSD run can be extended or
branched from any point of the stable phase, which is why the decay length is explicit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from lrkit.errors import require
from lrkit.schedules.base import Schedule, param
from lrkit.schedules.units import Length

__all__ = ["WSD", "WSD_SHAPES"]

WSD_SHAPES = ("linear", "cosine", "1-sqrt")


@dataclass(frozen=True, repr=False)
class WSD(Schedule):
    """Warmup for ``warmup`` steps, stay at the peak, decay over the last ``decay`` of ``steps``."""

    name: ClassVar[str] = "wsd"
    positional: ClassVar[int | None] = 1  # wsd(10000, decay=2000) reads better than wsd(10000, 2000)

    steps: Length = param("length", doc="total length: warmup + stable + decay")
    decay: Length = param("length", doc="decay length at the end")
    warmup: Length = param("length0", 0, doc="warmup length at the start")
    shape: str = param("choice", "1-sqrt", choices=WSD_SHAPES, doc="decay shape")
    warmup_shape: str = param("choice", "linear", choices=WSD_SHAPES, doc="warmup shape")
    floor: float = param("float", 0.0, lo=0.0, hi=1.0, doc="start and end value, fraction of the peak")

    def _check(self) -> None:
        require(self.warmup + self.decay <= self.steps,
                f"wsd(): warmup + decay = {self.warmup + self.decay} must be <= steps = {self.steps}")

    def _at(self, t: float) -> float:
        w, d = self.warmup, self.decay
        stable_end = self.steps - d
        floor = self.floor
        if t < w:
            p = t / w
            if self.warmup_shape == "linear":
                f = p
            elif self.warmup_shape == "cosine":
                f = 0.5 * (1.0 - math.cos(math.pi * p))
            else:
                f = 1.0 - math.sqrt(1.0 - p)
            f = f * (1.0 - floor) + floor
            return f if f > 0.0 else 0.0
        if t < stable_end:
            return 1.0
        if t < self.steps:
            p = (t - stable_end) / d
            if self.shape == "linear":
                f = 1.0 - p
            elif self.shape == "cosine":
                f = 0.5 * (1.0 + math.cos(math.pi * p))
            else:
                f = 1.0 - math.sqrt(p)
            f = f * (1.0 - floor) + floor
            return f if f > 0.0 else 0.0
        return floor

    @property
    def length(self) -> Length:
        return self.steps

    def bounds(self) -> tuple[float, float]:
        return (min(self.floor, 1.0), max(self.floor, 1.0))

    @property
    def monotone(self) -> int:
        if self.warmup == 0:
            return -1 if self.floor <= 1.0 else 1
        return 0

    @property
    def continuous(self) -> bool:
        return True
