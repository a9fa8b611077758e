"""Cosine annealing, and cosine with warm restarts (SGDR) with per-cycle peak decay."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from lrkit.schedules.base import Schedule, param
from lrkit.schedules.units import Length

__all__ = ["Cosine", "Restarts"]


@dataclass(frozen=True, repr=False)
class Cosine(Schedule):
    """Half cosine from the peak down to ``floor`` over ``steps``, then hold ``floor``.

    ``CosineAnnealingLR(T_max=steps, eta_min=floor * lr)`` over its first ``steps`` steps (torch
    keeps going back up after ``T_max``; a schedule that rises again is rarely intended).
    """

    name: ClassVar[str] = "cosine"

    steps: Length = param("length", doc="decay length")
    floor: float = param("float", 0.0, lo=0.0, hi=1.0, doc="final value, as a fraction of the peak")

    def _at(self, t: float) -> float:
        n = self.steps
        if t >= n:
            return self.floor
        return self.floor + (1.0 - self.floor) * (1.0 + math.cos(math.pi * t / n)) / 2.0

    @property
    def length(self) -> Length:
        return self.steps

    def bounds(self) -> tuple[float, float]:
        return (min(self.floor, 1.0), max(self.floor, 1.0))

    @property
    def monotone(self) -> int:
        return -1 if self.floor <= 1.0 else 1

    @property
    def continuous(self) -> bool:
        return True


@dataclass(frozen=True, repr=False)
class Restarts(Schedule):
    """Cosine cycles of ``period * mult**i`` steps; cycle ``i`` peaks at ``decay**i``.

    ``CosineAnnealingWarmRestarts(T_0=period, T_mult=mult, eta_min=floor * lr)`` when
    ``decay == 1`` (timm's ``cycle_decay`` otherwise). ``mult`` may be fractional.
    """

    name: ClassVar[str] = "restarts"

    period: Length = param("length", doc="length of the first cycle")
    mult: float = param("float", 1.0, lo=1.0, doc="each cycle is this many times longer")
    floor: float = param("float", 0.0, lo=0.0, hi=1.0,
                         doc="value at the end of each cycle, as a fraction of the peak")
    decay: float = param("float", 1.0, lo=0.0, hi=1.0, lo_open=True,
                         doc="peak of cycle i is decay**i")

    def _cycle(self, t: float) -> tuple[int, float, float]:
        """(cycle index, steps into the cycle, cycle length), exact for whole steps."""
        p = self.period
        m = self.mult
        if m == 1.0:
            i = int(t // p)
            return i, t - i * p, p
        mi = int(m) if m.is_integer() else m  # integers keep the cycle starts exact
        start = self.cycle_start
        i = int(math.log(t / p * (m - 1.0) + 1.0, m)) if t > 0 else 0
        while i > 0 and start(i) > t:
            i -= 1
        while start(i + 1) <= t:
            i += 1
        return i, t - start(i), p * mi ** i

    def cycle_start(self, k: int) -> float:
        """The step where cycle ``k`` starts: ``period * (mult**k - 1) / (mult - 1)``, exact for
        an integer ``mult``, else rounded to 1e-9 of a step (100 * (1.1**2 - 1) / 0.1 is
        331.00000000000006, and cycle 2 began a step late, at 332)."""
        p, m = self.period, self.mult
        if m == 1.0:
            return p * k
        if m.is_integer():
            mi = int(m)
            return p * (mi ** k - 1) // (mi - 1)
        return round(p * (m ** k - 1) / (m - 1), 9)

    def _at(self, t: float) -> float:
        i, t_cur, t_i = self._cycle(t)
        top = self.decay ** i if self.decay != 1.0 else 1.0
        return self.floor + (top - self.floor) * (1.0 + math.cos(math.pi * t_cur / t_i)) / 2.0

    def bounds(self) -> tuple[float, float]:
        lowest_top = 1.0 if self.decay == 1.0 else 0.0
        return (min(self.floor, lowest_top), max(self.floor, 1.0))
