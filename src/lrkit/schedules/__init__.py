"""Learning-rate schedules as pure functions of the optimizer step.

A schedule is a frozen dataclass mapping the optimizer step to a multiplier of the peak learning
rate (closed form, O(1), no hidden state), in the spirit of optax. The lowercase names build
schedules and read like the text spec::

    from lrkit.schedules import warmup, cosine, to_torch
    s = warmup(500) >> cosine(10000, floor=0.1)       # == parse("warmup(500) >> cosine(10000, floor=0.1)")
    s(0), s(500), s(10500)                             # 0.0, 1.0, 0.1
    scheduler = to_torch(optimizer, s)                 # a real torch LRScheduler

Multipliers (not rates) make one spec fit any optimizer: ``to_torch`` multiplies each parameter
group's own learning rate. ``peak(s, 3e-4)`` makes a schedule absolute.

This module imports neither torch nor matplotlib; :func:`to_torch`, :func:`preview` and
:func:`plot` import them when called.
"""
from __future__ import annotations

from typing import Any

from lrkit.schedules.base import (REGISTRY, Floor, Join, Peak, Scale, Schedule, Warmup, chain,
                                  iter_nodes, map_schedule)
from lrkit.schedules.families import (WSD, Constant, Cosine, Cyclic, Exponential, InverseSqrt,
                                     Linear, MultiStep, OneCycle, Plateau, PlateauState,
                                     Polynomial, Restarts, Step)
from lrkit.schedules.scaling import batch_factor, linear_rule, rescale, sqrt_rule
from lrkit.schedules.spec import (from_config, from_json, from_yaml, load, parse, to_config,
                                  to_json, to_spec, to_yaml)
from lrkit.schedules.units import Duration, epoch, steps_per_epoch_from, total

# lowercase builders: the Python API reads exactly like the text spec
constant = Constant
step = Step
multistep = MultiStep
exponential = Exponential
linear = Linear
polynomial = Polynomial
inverse_sqrt = InverseSqrt
cosine = Cosine
restarts = Restarts
cyclic = Cyclic
onecycle = OneCycle
wsd = WSD
plateau = Plateau
warmup = Warmup
join = Join
scale = Scale
floor = Floor
peak = Peak


def resolve(schedule: Any, *, total_steps: int | None = None, steps_per_epoch: float | None = None,
            batches_per_epoch: int | None = None, grad_accum: int = 1,
            epochs: float | None = None) -> Schedule:
    """``schedule`` with every length in whole optimizer steps (see :meth:`Schedule.resolve`)."""
    return from_config(schedule).resolve(
        total_steps=total_steps, steps_per_epoch=steps_per_epoch,
        batches_per_epoch=batches_per_epoch, grad_accum=grad_accum, epochs=epochs)


def to_torch(optimizer: Any, schedule: Any, **kwargs: Any) -> Any:
    """A ``torch.optim.lr_scheduler.LRScheduler`` driving ``optimizer`` by ``schedule``.

    See :func:`lrkit.schedules.torch_scheduler.to_torch` for the options.
    """
    from lrkit.schedules.torch_scheduler import to_torch as _to_torch

    return _to_torch(optimizer, schedule, **kwargs)


def preview(schedule: Any, steps: int, **kwargs: Any) -> Any:
    """Rates, key points and lint warnings over ``steps`` steps, without training.

    ``schedule`` may also be a factory ``lambda opt: torch.optim.lr_scheduler.X(opt, ...)``.
    See :func:`lrkit.schedules.inspection.preview`.
    """
    from lrkit.schedules.inspection import preview as _preview

    return _preview(schedule, steps, **kwargs)


def lint(schedule: Any, steps: int | None = None, **kwargs: Any) -> Any:
    """Warnings about likely mistakes (see :func:`lrkit.schedules.inspection.lint`)."""
    from lrkit.schedules.inspection import lint as _lint

    return _lint(schedule, steps, **kwargs)


def plot(previews: Any, path: str, **kwargs: Any) -> str:
    """Draw one or more previews to an image file (matplotlib, Agg backend)."""
    from lrkit.schedules.inspection import plot as _plot

    return _plot(previews, path, **kwargs)


__all__ = [
    "Schedule", "REGISTRY", "Duration", "PlateauState",
    "Constant", "Step", "MultiStep", "Exponential", "Linear", "Polynomial", "InverseSqrt",
    "Cosine", "Restarts", "Cyclic", "OneCycle", "WSD", "Plateau",
    "Warmup", "Join", "Scale", "Floor", "Peak",
    "constant", "step", "multistep", "exponential", "linear", "polynomial", "inverse_sqrt",
    "cosine", "restarts", "cyclic", "onecycle", "wsd", "plateau",
    "warmup", "join", "scale", "floor", "peak", "chain", "map_schedule", "iter_nodes",
    "epoch", "total", "resolve", "steps_per_epoch_from",
    "parse", "to_spec", "from_config", "to_config", "from_json", "to_json", "from_yaml",
    "to_yaml", "load",
    "to_torch", "preview", "lint", "plot",
    "linear_rule", "sqrt_rule", "batch_factor", "rescale",
]
