"""Lengths in steps, epochs or fractions of the run, resolved once into optimizer steps.

A schedule is always *evaluated* in optimizer steps (the number of ``optimizer.step()`` calls
that were applied). Users often think in epochs ("warm up for 2 epochs") or in fractions of the
run ("decay over the last 20%"), so every length parameter also accepts a :class:`Duration`::

    warmup(2 * epoch) >> cosine(total - 2 * epoch, floor=0.1)
    wsd(total, decay=0.2 * total)

:func:`resolve` turns those into whole steps once, given the steps per epoch (after gradient
accumulation) and the total number of optimizer steps. Doing it once, up front, keeps the
per-step evaluation O(1) and means a checkpoint only needs to store the step.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Union

from lrkit.errors import LrkitError, is_real, plain_int, require

__all__ = ["Duration", "Length", "epoch", "total", "as_length", "is_resolved_length",
           "steps_per_epoch_from", "resolve_length"]

#: the longest length in steps, and the largest step a schedule evaluates: every formula stays
#: inside float range up to it
MAX_STEPS = 2 ** 1000
_MAX_STEPS_TEXT = "2**1000"


def _int_text(steps: int) -> str:
    text = str(steps)
    if len(text) > 40:  # a number of hundreds of digits says nothing more than its size
        text = f"{text[:7 if steps < 0 else 6]}... ({len(text.lstrip('-'))} digits)"
    return text


def _too_long(where: str, steps: int) -> str:
    return (f"{where} is too large, got {_int_text(steps)}: a length is at most "
            f"{_MAX_STEPS_TEXT} steps (the largest step a schedule evaluates)")


@dataclass(frozen=True)
class Duration:
    """``steps + epochs * steps_per_epoch + fraction * total_steps``, kept symbolic until resolved.

    Durations support ``+``, ``-`` and multiplication by a number, so ``total - 2 * epoch``
    works both in Python and in a text spec.
    """

    steps: float = 0.0
    epochs: float = 0.0
    fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "epochs", "fraction"):
            value = getattr(self, name)
            try:  # an integer past float range (10**400) overflows math.isfinite itself
                finite = is_real(value) and math.isfinite(value)
            except OverflowError:
                finite = False
            require(finite, f"duration: {name} must be a finite number (a length past "
                            f"{_MAX_STEPS_TEXT} steps is too large), got {_int_text(value)}")
            # normalise 2 and 2.0 to one representation so equal durations compare equal
            object.__setattr__(self, name, float(value) + 0.0)

    # arithmetic -----------------------------------------------------------------------------
    def __add__(self, other: object) -> "Duration":
        other_d = _as_duration(other)
        if other_d is None:
            return NotImplemented
        return Duration(self.steps + other_d.steps, self.epochs + other_d.epochs,
                        self.fraction + other_d.fraction)

    __radd__ = __add__

    def __neg__(self) -> "Duration":
        return Duration(-self.steps, -self.epochs, -self.fraction)

    def __sub__(self, other: object) -> "Duration":
        other_d = _as_duration(other)
        if other_d is None:
            return NotImplemented
        return self + (-other_d)

    def __rsub__(self, other: object) -> "Duration":
        other_d = _as_duration(other)
        if other_d is None:
            return NotImplemented
        return other_d + (-self)

    def __mul__(self, factor: object) -> "Duration":
        if not is_real(factor):
            return NotImplemented
        try:
            return Duration(self.steps * factor, self.epochs * factor, self.fraction * factor)
        except OverflowError:
            raise LrkitError(f"the length {self.to_spec()} x {factor!r} is too large") from None

    __rmul__ = __mul__

    # text -------------------------------------------------------------------------------------
    def to_spec(self) -> str:
        """Spec text such as ``2*epoch``, ``0.1*total`` or ``total - 500``."""
        terms: list[tuple[float, str]] = []
        if self.fraction:
            terms.append((self.fraction, "total"))
        if self.epochs:
            terms.append((self.epochs, "epoch"))
        if self.steps:
            terms.append((self.steps, ""))
        if not terms:
            return "0"
        out = ""
        for i, (coef, unit) in enumerate(terms):
            sign = "-" if coef < 0 else "+"
            mag = abs(coef)
            if unit:
                text = unit if mag == 1 else f"{_fmt(mag)}*{unit}"
            else:
                text = _fmt(mag)
            if i == 0:
                out = ("-" if sign == "-" else "") + text
            else:
                out += f" {sign} {text}"
        return out

    def __repr__(self) -> str:
        return self.to_spec()

    def resolve(self, steps_per_epoch: float | None, total_steps: int | None) -> int:
        """Whole optimizer steps (rounded half up)."""
        value = self.steps
        if self.epochs:
            if steps_per_epoch is None:
                raise LrkitError(
                    f"the length {self.to_spec()} is in epochs: give steps_per_epoch "
                    "(or batches_per_epoch and grad_accum) to resolve it")
            value += self.epochs * steps_per_epoch
        if self.fraction:
            if total_steps is None:
                raise LrkitError(
                    f"the length {self.to_spec()} is a fraction of the run: give total_steps "
                    "(or epochs with steps_per_epoch) to resolve it")
            value += self.fraction * total_steps
        require(math.isfinite(value), f"the length {self.to_spec()} is too large: it resolves "
                                      f"past {_MAX_STEPS_TEXT} steps")
        return int(math.floor(value + 0.5))


def _fmt(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def _as_duration(x: object) -> Duration | None:
    if isinstance(x, Duration):
        return x
    if is_real(x):
        return Duration(steps=x)
    return None


#: one epoch (resolved with ``steps_per_epoch``)
epoch = Duration(epochs=1.0)
#: the whole run (resolved with ``total_steps``)
total = Duration(fraction=1.0)

#: a length parameter: whole optimizer steps, or a symbolic :class:`Duration`
Length = Union[int, Duration]


def as_length(value: object, where: str, *, allow_zero: bool = False) -> Length:
    """Normalise a user value to a :data:`Length` (int steps or a Duration with units).

    A duration made of plain steps becomes an ``int``, so ``500`` and ``Duration(steps=500)``
    compare equal after construction.
    """
    if isinstance(value, Duration):
        if not value.epochs and not value.fraction:
            value = value.steps
        else:
            # units differ (total - 1*epoch), so the sign is only known once resolved
            # (resolve_length checks it then); refuse only a length that can never be positive
            can_be_positive = value.steps > 0 or value.epochs > 0 or value.fraction > 0
            require(can_be_positive or allow_zero,
                    f"{where} must be a positive length, got {value.to_spec()}")
            return value
    if isinstance(value, bool) or not is_real(value):
        raise LrkitError(
            f"{where} must be a length: whole steps (500), epochs (2*epoch) or a fraction of the "
            f"run (0.1*total); got {value!r}")
    # an integer is whole as it is: compared with its float it may differ (10**22 - 1), and
    # one past float range has no float at all
    if not isinstance(value, numbers.Integral) and (
            not math.isfinite(value) or float(value) != math.floor(value)):
        hint = f" (for a fraction of the run write {value!r}*total)" if 0 < value < 1 else ""
        raise LrkitError(f"{where} must be a whole number of steps, got {value!r}{hint}")
    steps = int(value)
    if allow_zero:
        require(steps >= 0, f"{where} must be >= 0 steps, got {_int_text(steps)}")
    else:
        require(steps > 0, f"{where} must be > 0 steps, got {_int_text(steps)}")
    require(steps <= MAX_STEPS, _too_long(where, steps))
    return steps


def is_resolved_length(value: object) -> bool:
    return isinstance(value, int)


def steps_per_epoch_from(batches_per_epoch: int, grad_accum: int = 1) -> int:
    """Optimizer steps per epoch with gradient accumulation.

    The last, partial accumulation window of an epoch is still applied (as the Hugging Face
    Trainer and Lightning do), hence the ceiling.
    """
    batches_per_epoch, grad_accum = plain_int(batches_per_epoch), plain_int(grad_accum)
    require(isinstance(batches_per_epoch, int) and not isinstance(batches_per_epoch, bool)
            and batches_per_epoch > 0,
            f"batches_per_epoch must be a positive integer, got {batches_per_epoch!r}")
    require(isinstance(grad_accum, int) and not isinstance(grad_accum, bool) and grad_accum > 0,
            f"grad_accum must be a positive integer, got {grad_accum!r}")
    return -(-batches_per_epoch // grad_accum)


def resolve_length(value: Length, where: str, steps_per_epoch: float | None,
                   total_steps: int | None, *, allow_zero: bool = False) -> int:
    if isinstance(value, int):
        return value
    steps = value.resolve(steps_per_epoch, total_steps)
    if allow_zero:
        require(steps >= 0, f"{where}={value.to_spec()} resolves to {steps} steps; it must be >= 0")
    else:
        require(steps > 0, f"{where}={value.to_spec()} resolves to {steps} steps; it must be > 0")
    require(steps <= MAX_STEPS, _too_long(f"{where}={value.to_spec()}", steps))
    return steps
