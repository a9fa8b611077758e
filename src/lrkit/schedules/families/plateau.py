"""Reduce-on-plateau as a multiplier on top of any schedule.

``torch.optim.lr_scheduler.ReduceLROnPlateau`` owns the learning rate, so it cannot follow a
warmup or a cosine (``SequentialLR``/``ChainedScheduler`` reject it). Here the plateau logic only
keeps a *scale* (``factor ** reductions``), and the rate is ``schedule(step) * scale``: the
schedule stays a pure function of the step and the plateau state is a small value object.

The decision rule is torch's, so ``plateau(constant())`` reproduces ``ReduceLROnPlateau``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

from lrkit.errors import require
from lrkit.schedules.base import Schedule, Wrapping, param

__all__ = ["Plateau", "PlateauState"]


@dataclass(frozen=True)
class PlateauState:
    """What the plateau rule remembers between metric reports."""

    best: float
    bad: int = 0
    cooldown: int = 0
    scale: float = 1.0
    reductions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PlateauState":
        return cls(**data)


@dataclass(frozen=True, repr=False)
class Plateau(Wrapping):
    """Multiply ``schedule`` by ``factor`` each time the reported metric stalls for ``patience``.

    As a pure function (no metrics reported) it equals ``schedule``. Reports go through
    :meth:`update` or ``ScheduleLR.report(metric)``.
    """

    name: ClassVar[str] = "plateau"
    outer: ClassVar[bool] = True

    schedule: Schedule = param("schedule")
    factor: float = param("float", 0.1, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    patience: int = param("int", 10, lo=0, doc="reports without improvement before reducing")
    mode: str = param("choice", "min", choices=("min", "max"))
    threshold: float = param("float", 1e-4, lo=0.0)
    threshold_mode: str = param("choice", "rel", choices=("rel", "abs"))
    cooldown: int = param("int", 0, lo=0, doc="reports to wait after a reduction")
    min_scale: float = param("float", 0.0, lo=0.0, hi=1.0, doc="lowest scale")

    def _at(self, t: float) -> float:
        return self.schedule._at(t)

    # the plateau rule -----------------------------------------------------------------------
    def init(self) -> PlateauState:
        return PlateauState(best=math.inf if self.mode == "min" else -math.inf)

    def _better(self, value: float, best: float) -> bool:
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return value < best * (1.0 - self.threshold)
            return value < best - self.threshold
        if self.threshold_mode == "rel":
            return value > best * (self.threshold + 1.0)
        return value > best + self.threshold

    def update(self, state: PlateauState, metric: float) -> PlateauState:
        """The state after one metric report (same rule as ``ReduceLROnPlateau.step``)."""
        value = float(metric)
        require(math.isfinite(value), f"plateau(): metric must be finite, got {metric!r}")
        best, bad, cooldown, scale, reductions = (state.best, state.bad, state.cooldown,
                                                  state.scale, state.reductions)
        if self._better(value, best):
            best, bad = value, 0
        else:
            bad += 1
        if cooldown > 0:
            cooldown -= 1
            bad = 0
        if bad > self.patience:
            new_scale = max(scale * self.factor, self.min_scale)
            if new_scale < scale:
                scale, reductions = new_scale, reductions + 1
            cooldown, bad = self.cooldown, 0
        return replace(state, best=best, bad=bad, cooldown=cooldown, scale=scale,
                       reductions=reductions)

    # length, direction and continuity are the child's (Wrapping) -----------------------------
    def _may_wrap(self, child: Schedule) -> bool:
        return False

    def bounds(self) -> tuple[float, float]:
        return self.schedule.bounds()
