"""Schedule base class, parameter checking, and the combinators (warmup, join, scale, floor, peak).

A schedule is a frozen dataclass: a pure, closed-form function from the optimizer step to a
*multiplier* of the peak learning rate (see ``docs/schedules.md`` for why multipliers).
Frozen dataclasses give value equality (so a spec survives a text round trip unchanged),
hashing, and pickling without lambdas.

Each family declares its parameters with :func:`param`, which records the kind of value
(length, float, choice, ...), its bounds and allowed values. The base class uses that one
description to coerce and check arguments, to parse text and config specs, to print specs back,
and to word error messages that name the bad parameter and what is allowed.
"""
from __future__ import annotations

import math
import numbers
import sys
from bisect import bisect_right
from dataclasses import MISSING, dataclass, field, fields, replace
from functools import cached_property
from typing import Any, Callable, ClassVar, Iterator, Sequence

from lrkit.errors import LrkitError, is_real, plain_int, require
from lrkit.schedules.units import (MAX_STEPS, Length, _int_text, as_length, resolve_length,
                                   steps_per_epoch_from)

__all__ = ["Schedule", "Wrapping", "param", "REGISTRY", "Warmup", "Join", "Scale", "Floor",
           "Peak", "chain", "map_schedule", "WARMUP_SHAPES"]

#: the largest step a schedule evaluates: any formula stays inside float range up to it
_MAX_STEP = MAX_STEPS
#: the largest int that has a float (the largest float, a whole number)
_MAX_FLOAT_INT = int(sys.float_info.max)

#: spec name -> schedule class, filled in as families are defined
REGISTRY: dict[str, type["Schedule"]] = {}


def param(kind: str, default: Any = MISSING, *, lo: float | None = None, hi: float | None = None,
          lo_open: bool = False, hi_open: bool = False,
          choices: Sequence[str] | None = None, doc: str = "") -> Any:
    """Declare a schedule parameter.

    ``kind`` is one of ``length`` (> 0 steps or a Duration), ``length0`` (>= 0), ``length?``
    (a length or None), ``lengths``
    (a non-decreasing list of lengths), ``float``, ``int``, ``bool``, ``choice``, ``schedule``,
    ``schedule?`` (optional schedule) or ``schedules``.
    """
    meta = {"kind": kind, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open,
            "choices": tuple(choices) if choices else None, "doc": doc}
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)



def _fmt_num(x: float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(x)


def _bounds_text(meta: dict) -> str:
    lo, hi = meta["lo"], meta["hi"]
    parts = []
    if lo is not None:
        parts.append(f"{'>' if meta['lo_open'] else '>='} {_fmt_num(float(lo))}")
    if hi is not None:
        parts.append(f"{'<' if meta['hi_open'] else '<='} {_fmt_num(float(hi))}")
    return " and ".join(parts)


def _coerce(kind: str, value: Any, where: str, meta: dict) -> Any:
    """Check one parameter value and return its canonical form."""
    if kind == "length?" and value is None:
        return None
    if kind in ("length", "length0", "length?"):
        return as_length(value, where, allow_zero=kind == "length0")
    if kind == "lengths":
        require(isinstance(value, (list, tuple)),
                f"{where} must be a list of lengths, e.g. [30, 60, 90], got {value!r}")
        out = tuple(as_length(v, f"{where}[{i}]", allow_zero=True) for i, v in enumerate(value))
        ints = [v for v in out if isinstance(v, int)]
        if len(ints) == len(out):
            require(all(a <= b for a, b in zip(ints, ints[1:])),
                    f"{where} must be non-decreasing, got {list(out)}")
        return out
    if kind in ("float", "int"):
        require(is_real(value), f"{where} must be a number, got {value!r}")
        if isinstance(value, numbers.Integral) and kind == "float":
            # an int past float range has no float (math.isfinite would raise OverflowError)
            require(abs(value) <= _MAX_FLOAT_INT,
                    f"{where} is too large for a float, got {_int_text(int(value))}")
        require(isinstance(value, numbers.Integral) or math.isfinite(value),
                f"{where} must be finite, got {value!r}")
        if kind == "int":
            require(isinstance(value, numbers.Integral) or float(value).is_integer(),
                    f"{where} must be a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value) + 0.0  # -0.0 -> 0.0 so that equal specs print equally
        lo, hi = meta["lo"], meta["hi"]
        ok = True
        if lo is not None:
            ok = ok and (value > lo if meta["lo_open"] else value >= lo)
        if hi is not None:
            ok = ok and (value < hi if meta["hi_open"] else value <= hi)
        hint = f" ({meta['doc']})" if meta.get("doc") else ""
        require(ok, f"{where}={_fmt_num(value)} is not allowed; it must be {_bounds_text(meta)}{hint}")
        return value
    if kind == "bool":
        require(isinstance(value, bool), f"{where} must be True or False, got {value!r}")
        return value
    if kind == "choice":
        allowed = ", ".join(repr(c) for c in meta["choices"])
        require(isinstance(value, str) and value in meta["choices"],
                f"{where}={value!r} is not allowed; allowed values: {allowed}")
        return value
    if kind == "schedule?" and value is None:
        return None
    if kind in ("schedule", "schedule?"):
        if not isinstance(value, Schedule):
            raise LrkitError(f"{where} must be a schedule, got {value!r}")
        return value
    if kind == "schedules":
        if not (isinstance(value, (list, tuple)) and len(value) > 0
                and all(isinstance(v, Schedule) for v in value)):
            raise LrkitError(f"{where} must be a non-empty list of schedules, got {value!r}")
        return tuple(value)
    raise AssertionError(f"unknown parameter kind {kind!r}")  # pragma: no cover


@dataclass(frozen=True, repr=False)
class Schedule:
    """A pure function ``step -> multiplier`` (or ``-> rate`` under :class:`Peak`).

    Subclasses set ``name`` (the spec name), declare parameters with :func:`param`, implement
    ``_at(t)`` (closed form, O(1), no hidden state), ``length`` (steps until the final value,
    ``None`` if never) and may refine ``bounds``/``monotone``/``continuous`` which the tests and
    the linter rely on.
    """

    name: ClassVar[str] = ""
    #: how many leading parameters a spec writes without their name (default: the required ones)
    positional: ClassVar[int | None] = None
    #: True for nodes that must wrap the whole schedule (peak, plateau)
    outer: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name:
            REGISTRY[cls.name] = cls

    # construction ---------------------------------------------------------------------------
    def __post_init__(self) -> None:
        for f in fields(self):
            kind = f.metadata.get("kind")
            if kind is None:
                continue
            value = _coerce(kind, getattr(self, f.name), f"{self.name}(): {f.name}", dict(f.metadata))
            object.__setattr__(self, f.name, value)
            if kind.startswith("schedule"):
                kids = value if isinstance(value, tuple) else (value,)
                for kid in kids:
                    if kid is not None and kid.outer and not self._may_wrap(kid):
                        raise LrkitError(
                            f"{kid.name}() must wrap the whole schedule, it cannot be inside "
                            f"{self.name}(); write e.g. peak(plateau(warmup(500) >> cosine(10000)), 0.001)")
        if self.is_resolved:
            self._check()

    def _may_wrap(self, child: "Schedule") -> bool:
        return False

    def _check(self) -> None:
        """Checks that need whole steps (run again after :meth:`resolve`)."""

    @classmethod
    def signature(cls) -> str:
        """``cosine(steps, floor=0.0)``: used in error messages and docs."""
        parts = []
        for f in fields(cls):
            if f.default is MISSING:
                parts.append(f.name)
            else:
                d = f.default
                parts.append(f"{f.name}={d!r}" if not is_real(d) else f"{f.name}={_fmt_num(d)}")
        return f"{cls.name}({', '.join(parts)})"

    # evaluation -----------------------------------------------------------------------------
    def _at(self, t: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, step: float) -> float:
        """Value at optimizer step ``step`` (0-based): a multiplier, or a rate under ``peak``."""
        if not self.is_resolved:
            raise LrkitError(
                f"{self!r} has lengths in epochs or fractions of the run; call "
                ".resolve(total_steps=..., steps_per_epoch=...) before evaluating it")
        step = plain_int(step)  # numpy's and 0-dim tensors' integers are steps too
        if not is_real(step) and getattr(step, "shape", None) == () \
                and callable(getattr(step, "item", None)):
            step = step.item()  # a 0-dim float tensor or array: a step, as the float 5.0 is
        if not (is_real(step) and step >= 0):
            raise LrkitError(f"step must be a number >= 0, got {step!r}")
        if not isinstance(step, int):
            step = float(step)  # numpy's floats compare with 2**1000 without a cast warning
        if not step <= _MAX_STEP:  # inf gives nan or an OverflowError deep inside a formula
            raise LrkitError(f"step must be finite (at most 2**1000), got {step!r}")
        return self._at(step)

    def values(self, steps: int) -> list[float]:
        """Values at steps ``0 .. steps-1``."""
        self(0)  # checks resolution
        at = self._at
        return [at(t) for t in range(steps)]

    # structure ------------------------------------------------------------------------------
    def children(self) -> tuple["Schedule", ...]:
        out: list[Schedule] = []
        for f in fields(self):
            kind = f.metadata.get("kind", "")
            value = getattr(self, f.name)
            if kind == "schedules":
                out.extend(value)
            elif kind.startswith("schedule") and value is not None:
                out.append(value)
        return tuple(out)

    @cached_property
    def is_resolved(self) -> bool:
        """True when every length is in whole optimizer steps."""
        for f in fields(self):
            kind = f.metadata.get("kind", "")
            value = getattr(self, f.name)
            if kind in ("length", "length0", "length?") and not isinstance(value, (int, type(None))):
                return False
            if kind == "lengths" and not all(isinstance(v, int) for v in value):
                return False
        return all(c.is_resolved for c in self.children())

    def resolve(self, *, total_steps: int | None = None, steps_per_epoch: float | None = None,
                batches_per_epoch: int | None = None, grad_accum: int = 1,
                epochs: float | None = None) -> "Schedule":
        """The same schedule with every length in whole optimizer steps.

        ``steps_per_epoch`` counts optimizer steps; alternatively give ``batches_per_epoch`` and
        ``grad_accum``. ``total_steps`` (or ``epochs``) resolves fractions of the run.
        """
        # numpy's integers (len(array), np.ceil(...).astype(int)) are whole numbers too
        total_steps = plain_int(total_steps)
        # options that contradict each other, or that would be ignored, are refused (as the CLI does)
        require(steps_per_epoch is None or batches_per_epoch is None,
                "give steps_per_epoch or batches_per_epoch (with grad_accum), not both: "
                "steps_per_epoch already counts optimizer steps")
        require(plain_int(grad_accum) == 1 or batches_per_epoch is not None,
                f"grad_accum={grad_accum!r} goes with batches_per_epoch (steps per epoch = "
                "batches / grad_accum); steps_per_epoch already counts optimizer steps")
        if steps_per_epoch is None and batches_per_epoch is not None:
            steps_per_epoch = steps_per_epoch_from(batches_per_epoch, grad_accum)
        if steps_per_epoch is not None:
            require(is_real(steps_per_epoch) and math.isfinite(steps_per_epoch)
                    and steps_per_epoch > 0,
                    f"steps_per_epoch must be a finite number > 0, got {steps_per_epoch!r}")
        if epochs is not None:
            require(is_real(epochs) and math.isfinite(epochs) and epochs > 0,
                    f"epochs must be a number > 0, got {epochs!r}")
            if steps_per_epoch is not None:
                run = int(math.floor(epochs * steps_per_epoch + 0.5))
                require(run > 0,
                        f"epochs={epochs!r} at {_fmt_num(float(steps_per_epoch))} steps per epoch is "
                        "0 optimizer steps; the run needs at least 1")
                require(total_steps is None or total_steps == run,
                        f"total_steps={total_steps!r} but epochs={epochs!r} at "
                        f"{_fmt_num(float(steps_per_epoch))} steps per epoch is {run} steps; "
                        "give one of them")
                total_steps = run
        if total_steps is not None:
            require(isinstance(total_steps, int) and not isinstance(total_steps, bool)
                    and total_steps > 0,
                    f"total_steps must be a positive integer, got {total_steps!r}")
        return self._resolve(steps_per_epoch, total_steps)

    def _resolve(self, spe: float | None, total_steps: int | None) -> "Schedule":
        if self.is_resolved:
            return self
        changes: dict[str, Any] = {}
        for f in fields(self):
            kind = f.metadata.get("kind", "")
            value = getattr(self, f.name)
            where = f"{self.name}(): {f.name}"
            if kind in ("length", "length0", "length?") and value is not None:
                changes[f.name] = resolve_length(value, where, spe, total_steps,
                                                 allow_zero=kind == "length0")
            elif kind == "lengths":
                changes[f.name] = tuple(resolve_length(v, where, spe, total_steps, allow_zero=True)
                                        for v in value)
            elif kind == "schedules":
                changes[f.name] = tuple(c._resolve(spe, total_steps) for c in value)
            elif kind.startswith("schedule") and value is not None:
                changes[f.name] = value._resolve(spe, total_steps)
        return replace(self, **changes)

    # properties used by combinators, the linter and the tests -------------------------------
    @property
    def length(self) -> Length | None:
        """Steps until the schedule reaches its final value (``None``: it never ends)."""
        return None

    def bounds(self) -> tuple[float, float]:
        """(lowest, highest) value the schedule can take over all steps."""
        return (0.0, 1.0)

    @property
    def monotone(self) -> int:
        """-1: never increases, +1: never decreases, 0: no promise."""
        return 0

    @property
    def continuous(self) -> bool:
        """True when the schedule, read as a function of a real step, has no jumps."""
        return False

    @property
    def is_absolute(self) -> bool:
        """True when values are learning rates (``peak(...)``), not multipliers."""
        return False

    # operators: the Python API reads like the text spec ------------------------------------
    def __rshift__(self, other: object) -> "Schedule":
        if not isinstance(other, Schedule):
            return NotImplemented
        return chain(self, other)

    def __mul__(self, factor: object) -> "Schedule":
        if not is_real(factor):
            return NotImplemented
        return Scale(self, factor)

    __rmul__ = __mul__

    # text -----------------------------------------------------------------------------------
    def to_spec(self) -> str:
        """The short text form; ``parse(s.to_spec()) == s``."""
        from lrkit.schedules.spec import to_spec

        return to_spec(self)

    def to_config(self) -> Any:
        """A dict/list form for JSON or YAML; ``from_config(s.to_config()) == s``."""
        from lrkit.schedules.spec import to_config

        return to_config(self)

    def __repr__(self) -> str:
        return self.to_spec()

    __str__ = __repr__


def map_schedule(schedule: Schedule, fn: Callable[[Schedule], Schedule | None], *,
                 rejoin: Callable[["Join", tuple[Schedule, ...]], tuple[Any, ...]] | None = None
                 ) -> Schedule:
    """Rebuild ``schedule`` bottom-up; ``fn`` returns a replacement node or ``None`` to keep it.
    ``rejoin(join, new_pieces)`` gives a join whose pieces changed its new boundaries (a join
    keeps absolute boundaries: without it, a piece that got shorter leaves a gap before the
    next one)."""
    changes: dict[str, Any] = {}
    for f in fields(schedule):
        kind = f.metadata.get("kind", "")
        value = getattr(schedule, f.name)
        if kind == "schedules":
            changes[f.name] = tuple(map_schedule(c, fn, rejoin=rejoin) for c in value)
        elif kind.startswith("schedule") and value is not None:
            changes[f.name] = map_schedule(value, fn, rejoin=rejoin)
    if (rejoin is not None and isinstance(schedule, Join)
            and changes["schedules"] != schedule.schedules):
        node: Schedule = Join(changes["schedules"], rejoin(schedule, changes["schedules"]))
    else:
        node = replace(schedule, **changes) if changes else schedule
    out = fn(node)
    return node if out is None else out


# ------------------------------------------------------------------------------------------
# combinators
# ------------------------------------------------------------------------------------------

WARMUP_SHAPES = ("linear", "cosine", "exponential")


@dataclass(frozen=True, repr=False)
class Warmup(Schedule):
    """Ramp from ``start`` x target up to the target over ``steps``, then run ``then``.

    The target is ``then``'s value at its own step 0 (1.0 without ``then``), so a warmup fits in
    front of any schedule without a jump. ``start`` is a fraction of the target; 0 is allowed for
    every shape. ``exponential`` is a geometric ramp ``start * (1/start) ** x``; from 0 it uses
    the same curve as a ramp from 1/1000 shifted to start at 0.
    """

    name: ClassVar[str] = "warmup"

    # 0 allowed: warmup(0.01*total) on a short smoke run resolves to none (transformers takes
    # num_warmup_steps=0 too); a warmup of 0 steps is the schedule after it
    steps: Length = param("length0", doc="warmup length")
    start: float = param("float", 0.0, lo=0.0, hi=1.0, doc="first value, as a fraction of the target")
    shape: str = param("choice", "linear", choices=WARMUP_SHAPES, doc="ramp shape")
    then: Schedule | None = param("schedule?", None, doc="the schedule that follows (via >>)")

    @cached_property
    def _target(self) -> float:
        return 1.0 if self.then is None else self.then._at(0)

    def _at(self, t: float) -> float:
        n = self.steps
        if t >= n:
            return 1.0 if self.then is None else self.then._at(t - n)
        x = t / n
        if self.shape == "linear":
            f = x
        elif self.shape == "cosine":
            f = 0.5 * (1.0 - math.cos(math.pi * x))
        elif self.start > 0.0:  # geometric: start * (1/start) ** x, written to avoid overflow
            return self._target * self.start ** (1.0 - x)
        else:  # from 0: the geometric curve of a ramp from 1/1000, shifted down to start at 0
            f = (1000.0 ** x - 1.0) / 999.0
        return self._target * (self.start + (1.0 - self.start) * f)

    def _resolve(self, spe: float | None, total_steps: int | None) -> "Schedule":
        """Resolve as any schedule, then round the end of ``warmup(a) >> s`` as a whole when
        ``s`` is a single piece of one length: rounded on their own, both halves of a spec that
        fills the run could round up (``warmup(0.1*total) >> cosine(total - 0.1*total)`` at
        1005 steps was 101 + 905 = 1006 steps, and the linter flagged the spec as too long)."""
        if self.is_resolved:
            return self
        done = super()._resolve(spe, total_steps)
        then = self.then
        if then is None:
            return done
        last = _rounded_as_whole(self.steps, then, done.steps, done.then, spe, total_steps,
                                 f"{self.name}(): length")
        return done if last is done.then else replace(done, then=last)

    @property
    def length(self) -> Length | None:
        if self.then is None:  # a bare warmup holds the peak: like warmup(n) >> constant()
            return None
        rest = self.then.length
        return None if rest is None else as_length(self.steps + rest, "warmup length")

    def bounds(self) -> tuple[float, float]:
        if self.steps == 0:  # no ramp: never at start x the target
            return (1.0, 1.0) if self.then is None else self.then.bounds()
        if self.then is None:
            return (self.start, 1.0)
        lo, hi = self.then.bounds()
        target = self._target if self.is_resolved else hi
        return (min(lo, target * self.start), max(hi, target))

    @property
    def monotone(self) -> int:
        return 1 if self.then is None else 0

    @property
    def continuous(self) -> bool:
        return self.then is None or self.then.continuous


@dataclass(frozen=True, repr=False)
class Join(Schedule):
    """Run ``schedules[i]`` from ``boundaries[i-1]``; each child counts from its own start.

    ``a >> b`` builds a join at ``a``'s end; ``join([a, b], [1000])`` cuts ``a`` at step 1000.
    """

    name: ClassVar[str] = "join"

    schedules: tuple[Schedule, ...] = param("schedules", doc="the pieces, in order")
    boundaries: tuple[Length, ...] = param("lengths", doc="absolute step where each next piece starts")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.boundaries) == len(self.schedules) - 1,
                f"join(): {len(self.schedules)} schedules need {len(self.schedules) - 1} "
                f"boundaries, got {len(self.boundaries)}")

    def _check(self) -> None:
        b = self.boundaries
        require(all(x > 0 for x in b[:1]) and all(x < y for x, y in zip(b, b[1:])),
                f"join(): boundaries must be > 0 and strictly increasing, got {list(b)}")

    def _resolve(self, spe: float | None, total_steps: int | None) -> "Schedule":
        """Resolve the pieces, then each boundary. A boundary that ``a >> b`` put at ``a``'s
        end is rounded from its symbolic sum when ``a`` is a piece of one length, which takes
        the difference; else it stays at ``a``'s resolved end (rounded on its own, the boundary
        ``0.5*epoch + 2.5*epoch`` at 391 steps an epoch is 1173, but a warmup and cosine round
        to 196 + 978 = 1174: ``a`` would be cut a step before its end). A piece wrapped in
        ``floor``/``scale``, a warmup with a piece after it and a nested join are not reached
        inside: their rounding errors still add up."""
        if self.is_resolved:
            return self
        pieces = [c._resolve(spe, total_steps) for c in self.schedules]
        out: list[int] = []
        start: Any = 0
        for i, (b, piece) in enumerate(zip(self.boundaries, self.schedules)):
            done, prev = pieces[i], (out[-1] if out else 0)
            end = _add_lengths(start, piece.length)
            if end is not None and end == b and isinstance(done.length, int):
                # a >> b: the boundary is a's end. A symbolic one is rounded as a whole and a
                # piece of one length takes the difference (each piece rounded on its own, the
                # errors added up: three pieces filling 1005 steps made 1006)
                field = _sole_length(piece)
                at = (resolve_length(b, f"{self.name}(): boundaries", spe, total_steps,
                                     allow_zero=True) if field and not isinstance(b, int)
                      else None)
                moved = None
                if at is not None and at - prev >= (0 if field[1] == "length0" else 1):
                    try:  # a length the piece's own checks refuse (onecycle's pct*steps > 1)
                        moved = replace(done, **{field[0]: at - prev})
                    except LrkitError:
                        moved = None
                if moved is not None:
                    pieces[i] = moved
                    out.append(at)
                else:
                    out.append(prev + done.length)
            else:
                out.append(resolve_length(b, f"{self.name}(): boundaries", spe, total_steps,
                                          allow_zero=True))
            start = b
        if out:  # the end rounded as a whole too, as warmup(a) >> b's
            pieces[-1] = _rounded_as_whole(self.boundaries[-1], self.schedules[-1], out[-1],
                                           pieces[-1], spe, total_steps,
                                           f"{self.name}(): length")
        return replace(self, schedules=tuple(pieces), boundaries=tuple(out))

    def _at(self, t: float) -> float:
        b = self.boundaries
        i = bisect_right(b, t)
        if i == 0:
            return self.schedules[0]._at(t)
        return self.schedules[i]._at(t - b[i - 1])

    @property
    def length(self) -> Length | None:
        rest = self.schedules[-1].length
        if rest is None or not self.boundaries:  # join([s], []) is s
            return rest
        return as_length(self.boundaries[-1] + rest, "join length")

    def bounds(self) -> tuple[float, float]:
        bs = [c.bounds() for c in self.schedules]
        return (min(b[0] for b in bs), max(b[1] for b in bs))


def _sole_length(schedule: Schedule) -> tuple[str, str] | None:
    """``(field, kind)`` of a schedule whose length is one length field of its own (cosine(n),
    linear(n, ...)); None for others (a warmup with a piece after it, wsd, a join)."""
    found = [(f.name, f.metadata.get("kind")) for f in fields(schedule)
             if f.metadata.get("kind") in ("length", "length0", "length?")
             and getattr(schedule, f.name) is not None]
    if len(found) != 1 or getattr(schedule, found[0][0]) != schedule.length:
        return None
    return found[0]


def _with_length(schedule: Schedule, steps: int) -> Schedule | None:
    """``schedule`` resolved, with its length set to ``steps``: a piece of one length field
    (``cosine(n)``), ``wsd`` (its ``steps``), or a wrapper of such a piece (``s * 0.5``,
    ``floor(s, v)``, ``peak(s, lr)``: a ``schedule`` field and no length of its own); None when
    its length is not one number to set (it then resolves as it did)."""
    field = _sole_length(schedule)
    if field is None and schedule.name == "wsd":
        field = ("steps", "length")  # (its warmup and decay are lengths inside it)
    if field is not None:
        return replace(schedule, **{field[0]: steps})
    inner = getattr(schedule, "schedule", None)
    if isinstance(inner, Schedule) and inner.length == schedule.length and not any(
            f.metadata.get("kind") in ("length", "length0", "length?") for f in fields(schedule)):
        resized = _with_length(inner, steps)
        return None if resized is None else replace(schedule, schedule=resized)
    return None


def _rounded_as_whole(first: Length, then: Schedule, first_done: int, then_done: Schedule,
                      spe: float | None, total_steps: int | None, what: str) -> Schedule:
    """``then_done`` (the resolved second piece of ``first >> then``), its length set so that
    the two end where their symbolic sum rounds to, when ``then`` is a single piece of one
    length: rounded on their own, both halves of a spec that fills the run could round up
    (``warmup(0.1*total) >> cosine(total - 0.1*total)``, or ``linear(...)`` in front, at 1005
    steps was 101 + 905 = 1006 steps, and the linter flagged the spec as too long)."""
    whole = _add_lengths(first, then.length)
    if whole is None or isinstance(whole, int):
        return then_done
    rest = resolve_length(whole, what, spe, total_steps) - first_done
    if rest <= 0 or rest == then_done.length:
        return then_done
    try:
        resized = _with_length(then_done, rest)
    except LrkitError:  # a length the piece's own checks refuse: as it resolved on its own
        return then_done
    return then_done if resized is None else resized


def _add_lengths(a: Length, b: Length | None) -> Length | None:
    """``a + b`` as :meth:`Join.length` and :func:`chain` add them (None: no such length)."""
    if b is None:
        return None
    try:
        return as_length(a + b, "length", allow_zero=True)
    except LrkitError:
        return None


def _open_end(s: Schedule) -> bool:
    """A warmup still waiting for the schedule it ramps into (``warmup(500)`` before ``>>``)."""
    if isinstance(s, Warmup):
        return s.then is None or _open_end(s.then)
    if isinstance(s, Join):
        return _open_end(s.schedules[-1])
    return False


def _attach(s: Schedule, right: Schedule) -> Schedule:
    if isinstance(s, Warmup):
        return replace(s, then=right if s.then is None else _attach(s.then, right))
    assert isinstance(s, Join)
    return Join(s.schedules[:-1] + (_attach(s.schedules[-1], right),), s.boundaries)


def chain(left: Schedule, right: Schedule) -> Schedule:
    """``left >> right``: a warmup ramps into ``right``; anything else is joined at its end."""
    if _open_end(left):
        return _attach(left, right)
    end = left.length
    if end is None:
        inner = left
        while isinstance(inner, Wrapping):
            inner = inner.schedule
        if inner is not left and _open_end(inner):
            # 0.5 * warmup(500) >> cosine(...) reads as (0.5 * warmup(500)) >> cosine(...):
            # Python's * binds tighter than >>, and the wrapped warmup has nothing to ramp into
            raise LrkitError(
                f"{left!r} is a warmup with nothing to ramp into, wrapped before '>>' joined "
                f"{right!r} to it: '*' and function calls bind tighter than '>>', so put the "
                "whole chain in brackets, e.g. 0.5 * (warmup(500) >> cosine(10000)) or "
                "floor(warmup(500) >> cosine(10000), 0.1)")
        raise LrkitError(
            f"{left!r} never ends, so there is no step where {right!r} could start; "
            f"use join([a, b], [step]) to cut it at a given step")
    if isinstance(left, Join):
        return Join(left.schedules + (right,), left.boundaries + (end,))
    return Join((left, right), (end,))


class Wrapping(Schedule):
    """A schedule that transforms one child ``schedule`` without reshaping its time axis: its
    length, direction and continuity are the child's (``scale``, ``peak``, ``floor``,
    ``plateau``)."""

    schedule: Schedule

    @property
    def length(self) -> Length | None:
        return self.schedule.length

    @property
    def monotone(self) -> int:
        return self.schedule.monotone

    @property
    def continuous(self) -> bool:
        return self.schedule.continuous


class _Multiplied(Wrapping):
    """A child schedule times a constant ``multiplier``: values and bounds are scaled (shared by
    ``scale`` and ``peak``)."""

    @property
    def multiplier(self) -> float:  # pragma: no cover - defined by each subclass
        raise NotImplementedError

    def _at(self, t: float) -> float:
        return self.multiplier * self.schedule._at(t)

    def bounds(self) -> tuple[float, float]:
        lo, hi = self.schedule.bounds()
        return (lo * self.multiplier, hi * self.multiplier)


@dataclass(frozen=True, repr=False)
class Scale(_Multiplied):
    """Multiply a schedule by a constant (``s * 0.5``)."""

    name: ClassVar[str] = "scale"

    schedule: Schedule = param("schedule")
    factor: float = param("float", lo=0.0)

    @property
    def multiplier(self) -> float:
        return self.factor


@dataclass(frozen=True, repr=False)
class Floor(Wrapping):
    """Never go below ``value`` (a fraction of the peak)."""

    name: ClassVar[str] = "floor"

    schedule: Schedule = param("schedule")
    value: float = param("float", lo=0.0)

    def _at(self, t: float) -> float:
        v = self.schedule._at(t)
        return v if v > self.value else self.value

    def bounds(self) -> tuple[float, float]:
        lo, hi = self.schedule.bounds()
        return (max(lo, self.value), max(hi, self.value))


@dataclass(frozen=True, repr=False)
class Peak(_Multiplied):
    """Make a schedule absolute: values are ``lr * multiplier`` learning rates.

    Without ``peak`` a schedule is relative and ``to_torch`` multiplies each parameter group's
    own learning rate by it. ``peak`` must be the outermost node.
    """

    name: ClassVar[str] = "peak"
    outer: ClassVar[bool] = True

    schedule: Schedule = param("schedule")
    lr: float = param("float", lo=0.0, lo_open=True, doc="the peak learning rate")

    def _may_wrap(self, child: Schedule) -> bool:
        return child.name == "plateau"

    @property
    def multiplier(self) -> float:
        return self.lr

    @property
    def is_absolute(self) -> bool:
        return True


def iter_nodes(schedule: Schedule) -> Iterator[Schedule]:
    """Every node of the tree, depth first."""
    yield schedule
    for child in schedule.children():
        yield from iter_nodes(child)

