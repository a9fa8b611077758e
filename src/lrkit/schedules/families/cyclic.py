"""Cyclical rates (Smith 2017) and the one-cycle policy (Smith & Topin 2018).

Both follow ``torch.optim.lr_scheduler.CyclicLR`` / ``OneCycleLR`` step for step, with the rate
expressed relative to the peak (``max_lr``): ``low = base_lr / max_lr``, ``div = div_factor``.
Momentum cycling is left to the optimizer; lrkit schedules set the learning rate only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from lrkit.errors import require
from lrkit.schedules.base import Schedule, param
from lrkit.schedules.units import Length

__all__ = ["Cyclic", "OneCycle"]


@dataclass(frozen=True, repr=False)
class Cyclic(Schedule):
    """Triangle waves between ``low`` and the peak: ``up`` steps rising, ``down`` falling.

    ``triangular2`` halves the height every cycle; ``exp_range`` scales it by ``gamma ** t``.
    """

    name: ClassVar[str] = "cyclic"

    up: Length = param("length", doc="rising half-cycle")
    down: Length | None = param("length?", None, doc="falling half-cycle (default: up)")
    low: float = param("float", 0.1, lo=0.0, hi=1.0, doc="bottom of the wave, fraction of the peak")
    mode: str = param("choice", "triangular", choices=("triangular", "triangular2", "exp_range"))
    gamma: float = param("float", 1.0, lo=0.0, hi=1.0, lo_open=True, doc="exp_range decay per step")

    def _at(self, t: float) -> float:
        up = float(self.up)
        size = up + (float(self.down) if self.down is not None else up)
        ratio = up / size
        cycle = math.floor(1 + t / size)
        x = 1.0 + t / size - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        height = (1.0 - self.low) * scale
        if self.mode == "triangular":
            return self.low + height
        if self.mode == "triangular2":
            # torch's 1 / 2.0 ** (cycle - 1), exactly, but 2.0 ** 1024 overflows (OverflowError
            # after 1024 cycles) where 0.5 ** 1024 just underflows towards 0
            return self.low + height * 0.5 ** (cycle - 1)
        return self.low + height * self.gamma ** t

    def bounds(self) -> tuple[float, float]:
        return (self.low, 1.0)

    @property
    def continuous(self) -> bool:
        return True


@dataclass(frozen=True, repr=False)
class OneCycle(Schedule):
    """Rise from ``1/div`` to the peak over ``pct`` of ``steps``, then fall to ``1/(div*final_div)``.

    ``three_phase`` falls back to ``1/div`` symmetrically before the final annihilation, as in
    Smith's paper. After ``steps`` the rate holds its last value (torch raises instead).
    """

    name: ClassVar[str] = "onecycle"

    steps: Length = param("length", doc="total length")
    pct: float = param("float", 0.3, lo=0.0, hi=1.0, lo_open=True, hi_open=True,
                       doc="fraction of steps spent rising")
    div: float = param("float", 25.0, lo=1.0, doc="peak / starting value")
    final_div: float = param("float", 1e4, lo=1.0, doc="starting value / final value")
    anneal: str = param("choice", "cosine", choices=("cosine", "linear"))
    three_phase: bool = param("bool", False)

    def _check(self) -> None:
        n = self.steps
        rise = self.pct * n
        require(rise > 1.0, f"onecycle(): pct*steps = {rise:g} must be > 1 so that the rise "
                            f"has at least one step; raise pct or steps")
        if self.three_phase:
            require(2 * rise - 2 < n - 1,
                    f"onecycle(): with three_phase=True, pct must be < (steps+1)/(2*steps) "
                    f"= {(n + 1) / (2 * n):.4g}; got pct={self.pct!r}")
        else:
            require(rise - 1 < n - 1, "onecycle(): pct*steps must be < steps")

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if pct >= 1.0:  # the end exactly (linear's arithmetic ended an ulp below its bound)
            return end
        if self.anneal == "cosine":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _at(self, t: float) -> float:
        n = self.steps
        initial = 1.0 / self.div
        final = initial / self.final_div
        last = n - 1
        if t > last:
            t = last
        e1 = float(self.pct * n) - 1
        if self.three_phase:
            e2 = float(2 * self.pct * n) - 2
            if t <= e1:
                return self._anneal(initial, 1.0, t / e1)
            if t <= e2:
                return self._anneal(1.0, initial, (t - e1) / (e2 - e1))
            return self._anneal(initial, final, (t - e2) / (last - e2))
        if t <= e1:
            return self._anneal(initial, 1.0, t / e1)
        return self._anneal(1.0, final, (t - e1) / (last - e1))

    @property
    def length(self) -> Length:
        return self.steps

    def bounds(self) -> tuple[float, float]:
        return ((1.0 / self.div) / self.final_div, 1.0)  # as _at computes its final value

    @property
    def continuous(self) -> bool:
        return True
