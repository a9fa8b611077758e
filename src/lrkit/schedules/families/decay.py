"""Simple decays: constant, step, multistep, exponential, linear, polynomial, inverse square root.

All values are multipliers of the peak (1.0 = the peak). Each formula is the closed form of the
matching ``torch.optim.lr_scheduler`` class, so the two agree to rounding (see the tests).
"""
from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import ClassVar

from lrkit.schedules.base import Schedule, param
from lrkit.schedules.units import Length

__all__ = ["Constant", "Step", "MultiStep", "Exponential", "Linear", "Polynomial", "InverseSqrt"]


@dataclass(frozen=True, repr=False)
class Constant(Schedule):
    """A flat multiplier; ``constant()`` is the peak itself."""

    name: ClassVar[str] = "constant"
    positional: ClassVar[int | None] = 1

    value: float = param("float", 1.0, lo=0.0)

    def _at(self, t: float) -> float:
        return self.value

    def bounds(self) -> tuple[float, float]:
        return (self.value, self.value)

    @property
    def monotone(self) -> int:
        return -1

    @property
    def continuous(self) -> bool:
        return True


@dataclass(frozen=True, repr=False)
class Step(Schedule):
    """Multiply by ``gamma`` every ``every`` steps (``StepLR``)."""

    name: ClassVar[str] = "step"

    every: Length = param("length", doc="steps between decays")
    gamma: float = param("float", 0.1, lo=0.0, hi=1.0, lo_open=True)

    def _at(self, t: float) -> float:
        return self.gamma ** (t // self.every)

    @property
    def monotone(self) -> int:
        return -1


@dataclass(frozen=True, repr=False)
class MultiStep(Schedule):
    """Multiply by ``gamma`` at each milestone (``MultiStepLR``); repeats decay twice."""

    name: ClassVar[str] = "multistep"

    milestones: tuple[Length, ...] = param("lengths", doc="steps where the rate drops")
    gamma: float = param("float", 0.1, lo=0.0, hi=1.0, lo_open=True)

    def _at(self, t: float) -> float:
        return self.gamma ** bisect_right(self.milestones, t)

    def bounds(self) -> tuple[float, float]:
        return (self.gamma ** len(self.milestones), 1.0)

    @property
    def monotone(self) -> int:
        return -1


@dataclass(frozen=True, repr=False)
class Exponential(Schedule):
    """``gamma ** (t / every)``, never below ``floor``: a smooth decay by ``gamma`` over each
    ``every`` steps (``ExponentialLR`` plus a floor); "10% a epoch" is
    ``exponential(0.9, every=1*epoch)``, and ``step(1*epoch, gamma=0.9)`` its staircase."""

    name: ClassVar[str] = "exponential"

    gamma: float = param("float", lo=0.0, hi=1.0, lo_open=True, doc="decay per `every` steps")
    floor: float = param("float", 0.0, lo=0.0, hi=1.0, doc="lowest value, as a fraction of the peak")
    every: Length = param("length", 1, doc="steps over which the rate falls by gamma")

    def _at(self, t: float) -> float:
        v = self.gamma ** (t / self.every) if self.every != 1 else self.gamma ** t
        return v if v > self.floor else self.floor

    def bounds(self) -> tuple[float, float]:
        return (min(self.floor, 1.0), max(self.floor, 1.0))

    @property
    def monotone(self) -> int:
        return -1

    @property
    def continuous(self) -> bool:
        return True


@dataclass(frozen=True, repr=False)
class Linear(Schedule):
    """Straight line from ``start`` to ``end`` over ``steps``, then hold ``end`` (``LinearLR``)."""

    name: ClassVar[str] = "linear"

    steps: Length = param("length")
    # fractions of the peak, as every family's ends (torch's LinearLR refuses factors above 1 too)
    start: float = param("float", 1.0, lo=0.0, hi=1.0, doc="first value, fraction of the peak")
    end: float = param("float", 0.0, lo=0.0, hi=1.0, doc="last value, fraction of the peak")

    def _at(self, t: float) -> float:
        n = self.steps
        if t >= n:  # exactly the end: start + (end - start) * n / n rounds (to -1.4e-17 from 0.1)
            return self.end
        return self.start + (self.end - self.start) * t / n

    @property
    def length(self) -> Length:
        return self.steps

    def bounds(self) -> tuple[float, float]:
        return (min(self.start, self.end), max(self.start, self.end))

    @property
    def monotone(self) -> int:
        return -1 if self.end <= self.start else 1

    @property
    def continuous(self) -> bool:
        return True


@dataclass(frozen=True, repr=False)
class Polynomial(Schedule):
    """``end + (1 - end) * (1 - t/steps) ** power`` (``PolynomialLR`` when ``end=0``)."""

    name: ClassVar[str] = "polynomial"

    steps: Length = param("length")
    power: float = param("float", 1.0, lo=0.0, lo_open=True)
    end: float = param("float", 0.0, lo=0.0, hi=1.0, doc="final value, as a fraction of the peak")

    def _at(self, t: float) -> float:
        n = self.steps
        return self.end + (1.0 - self.end) * (1.0 - (t if t < n else n) / n) ** self.power

    @property
    def length(self) -> Length:
        return self.steps

    def bounds(self) -> tuple[float, float]:
        return (min(self.end, 1.0), max(self.end, 1.0))

    @property
    def monotone(self) -> int:
        return -1 if self.end <= 1.0 else 1

    @property
    def continuous(self) -> bool:
        return True


@dataclass(frozen=True, repr=False)
class InverseSqrt(Schedule):
    """``1 / sqrt(1 + t / timescale)``: the Transformer decay.

    ``warmup(n) >> inverse_sqrt(n)`` is transformers' ``get_inverse_sqrt_schedule(n)``.
    """

    name: ClassVar[str] = "inverse_sqrt"

    timescale: Length = param("length", doc="steps for the rate to fall to 1/sqrt(2)")

    def _at(self, t: float) -> float:
        s = self.timescale
        return 1.0 / math.sqrt((t + s) / s)

    @property
    def monotone(self) -> int:
        return -1

    @property
    def continuous(self) -> bool:
        return True
