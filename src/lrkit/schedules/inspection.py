"""Preview, key points, lint and plots: look at a schedule before training with it.

:func:`preview` evaluates a schedule over a planned run without touching a model. It also runs
any existing torch scheduler, given as a factory ``lambda opt: torch.optim.lr_scheduler.X(opt,
...)``, on a throwaway one-parameter optimizer, so both can be compared on one plot.

:func:`lint` flags the usual mistakes:

=================  ==========================================================================
code               what it means
=================  ==========================================================================
zero-start         the rate is 0 at step 0, so the first optimizer step does nothing
join-jump          a join switches to a piece that does not start where the last one ended
warmup-too-long    a warmup ends at or after the end of the run (the peak is never reached)
short-horizon      the schedule ends before the run does and holds its last value
long-horizon       the run ends before the schedule does, so it never reaches its end value
floor-above-peak   a floor is above the peak it is meant to sit under
=================  ==========================================================================
"""
from __future__ import annotations

import itertools
import math
import operator
from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from lrkit.errors import LrkitError, is_real, plain_int, require, require_plot_path
from lrkit.schedules.base import Floor, Join, Peak, Schedule, Warmup
from lrkit.schedules.families import (WSD, Cosine, Cyclic, Exponential, Linear, MultiStep, OneCycle,
                                      Plateau, Polynomial, Restarts, Step)
from lrkit.schedules.spec import from_config

__all__ = ["Preview", "KeyPoint", "LintWarning", "SampledRates", "preview", "lint", "key_points",
           "plot", "LINT_CODES", "DENSE_STEPS", "MAX_STEPS", "MAX_TORCH_STEPS"]

LINT_CODES = ("zero-start", "join-jump", "warmup-too-long", "short-horizon", "long-horizon",
              "floor-above-peak")
_JUMP_RTOL = 1e-3
_MAX_EVENTS = 40
#: runs up to this many steps are previewed at every step (``Preview.rates`` is a list)
DENSE_STEPS = 100_000
#: longer runs are read at about this many evenly spread steps, plus every boundary
_SAMPLES = 4096
#: boundaries (joins, warmup ends, milestones) added to the samples of a long run
_MAX_SAMPLED_EVENTS = 4096
#: the longest run a preview accepts: steps beyond 2**53 are not exact as floats
MAX_STEPS = 2 ** 53
#: a torch scheduler is stepped one step at a time (about 70 us a step), so its runs are capped
MAX_TORCH_STEPS = 1_000_000


class SampledRates(Sequence):
    """The rates of a long run, computed on demand.

    ``rates[t]`` is the exact rate at step ``t`` (as for the list of a short run), but nothing is
    stored for every step: ``points`` are the steps actually read for the peak, the lowest point,
    the key points and plots (about 4,000 evenly spread steps plus every boundary), and ``values``
    their rates.
    """

    def __init__(self, rate: Callable[[int], float], steps: int, points: Sequence[int]) -> None:
        self._rate = rate
        self._n = steps
        self.points: list[int] = sorted(set(points))
        self.values: list[float] = [rate(t) for t in self.points]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            picks = range(self._n)[index]
            require(len(picks) <= DENSE_STEPS,
                    f"a slice of {len(picks)} rates is too long; read at most {DENSE_STEPS} at once")
            return [self._rate(t) for t in picks]
        t = operator.index(index)
        if t < 0:
            t += self._n
        if not 0 <= t < self._n:
            raise IndexError(f"step {index} is outside the run of {self._n} steps")
        return self._rate(t)

    def __iter__(self) -> Iterator[float]:
        return map(self._rate, range(self._n))

    def __repr__(self) -> str:
        return f"<rates of {self._n} steps, sampled at {len(self.points)}>"


def _scan(rates: Sequence[float]) -> tuple[Sequence[int], Sequence[float]]:
    """(steps, rates) to read for statistics: every step of a short run, the samples of a long one."""
    if isinstance(rates, SampledRates):
        return rates.points, rates.values
    return range(len(rates)), rates


def _argmax(steps: Sequence[int], values: Sequence[float]) -> int:
    return steps[max(range(len(values)), key=values.__getitem__)]


def _argmin(steps: Sequence[int], values: Sequence[float]) -> int:
    return steps[min(range(len(values)), key=values.__getitem__)]


@dataclass(frozen=True)
class LintWarning:
    """One finding: a stable ``code``, a message that says what to change, and the step."""

    code: str
    message: str
    step: int | None = None

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


@dataclass(frozen=True)
class KeyPoint:
    step: int
    rate: float
    label: str


@dataclass
class Preview:
    """Rates over a planned run, with key points and lint warnings."""

    rates: Sequence[float]  # a list, or SampledRates for a run longer than DENSE_STEPS
    lr: float
    label: str
    source: str  # "lrkit" or "torch"
    schedule: Schedule | None = None
    key_points: list[KeyPoint] = field(default_factory=list)
    warnings: list[LintWarning] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.rates)

    @property
    def sampled(self) -> bool:
        """True for a long run whose statistics come from sampled steps (see :class:`SampledRates`)."""
        return isinstance(self.rates, SampledRates)

    @property
    def peak(self) -> tuple[int, float]:
        """(first step at the highest rate, that rate); of the sampled steps in a long run."""
        best = _argmax(*_scan(self.rates))
        return best, self.rates[best]

    def to_dict(self, max_points: int = 500) -> dict[str, Any]:
        n = self.steps
        max_points = _check_max_points(max_points)
        stride = max(1, math.ceil(n / max_points))
        picks = sorted(set(range(0, n, stride)) | {n - 1} | {k.step for k in self.key_points})
        return {
            "label": self.label,
            "source": self.source,
            "spec": None if self.schedule is None else self.schedule.to_spec(),
            "absolute": bool(self.schedule is not None and self.schedule.is_absolute),
            "steps": n,
            "sampled": self.sampled,
            "lr": self.lr,
            "peak": {"step": self.peak[0], "rate": self.peak[1]},
            "key_points": [asdict(k) for k in self.key_points],
            "warnings": [asdict(w) for w in self.warnings],
            "curve": [[t, self.rates[t]] for t in picks],
        }

    def format(self) -> str:
        """A plain-text report: key points table and warnings."""
        lines = [f"schedule: {self.label}"]
        if self.schedule is not None:
            kind = ("absolute rates" if self.schedule.is_absolute
                    else f"relative: multiplies the optimizer's lr; shown for lr={self.lr:g}")
            lines.append(f"  ({kind})")
        step, rate = self.peak
        lines.append(f"steps: {self.steps}   peak: {rate:.6g} at step {step}   "
                     f"end: {self.rates[-1]:.6g}")
        if isinstance(self.rates, SampledRates):
            lines.append(f"  (a long run: peak and lowest are read at {len(self.rates.points)} "
                         "sampled steps, boundaries included)")
        lines.append("")
        lines.append(f"  {'step':>9}  {'rate':>12}  {'x peak':>8}  what")
        for k in self.key_points:
            frac = k.rate / rate if rate else 0.0
            lines.append(f"  {k.step:>9}  {k.rate:>12.6g}  {frac:>8.4f}  {k.label}")
        if self.warnings:
            lines.append("")
            lines.append("lint:")
            for w in self.warnings:
                lines.append(f"  warning {w}")
        return "\n".join(lines)

    def plot(self, path: str, *, others: Sequence["Preview"] = (), **kwargs: Any) -> str:
        return plot([self, *others], path, **kwargs)

    __str__ = format  # print(preview) shows the report, as print(result) does for the finder

    def __repr__(self) -> str:  # not thousands of rates
        step, rate = self.peak
        return (f"Preview({self.label!r}, steps={self.steps}, peak={rate:.6g} at step {step}, "
                f"warnings={[w.code for w in self.warnings]})")


# ------------------------------------------------------------------------------------------
# walking the tree with absolute offsets
# ------------------------------------------------------------------------------------------

def _walk(node: Schedule, offset: int = 0) -> Iterator[tuple[Schedule, int]]:
    yield node, offset
    if isinstance(node, Join):
        starts = (0,) + tuple(node.boundaries)
        for child, start in zip(node.schedules, starts):
            yield from _walk(child, offset + start)
    elif isinstance(node, Warmup):
        if node.then is not None:
            yield from _walk(node.then, offset + node.steps)
    else:
        for child in node.children():
            yield from _walk(child, offset)


def _first_leaf(s: Schedule) -> Schedule:
    """The schedule that sets the rate at step 0 to 0: down joins' first parts, through wrappers
    over a zero, and past a warmup of no length."""
    node = s
    while True:
        if isinstance(node, Join):
            node = node.schedules[0]
        elif isinstance(node, Warmup) and node.steps == 0 and node.then is not None:
            node = node.then
        elif (not isinstance(node, Warmup) and len(node.children()) == 1
              and node.children()[0](0) == 0.0):  # a wrapper over a zero (not a scale by 0)
            node = node.children()[0]
        else:
            return node


def _zero_start_fix(s: Schedule) -> str:
    """What makes the first rate above 0, named by the parameter that sets it to 0."""
    node = _first_leaf(s)
    if isinstance(node, Warmup):
        length = node.steps if isinstance(node.steps, int) else 500
        return f"start the warmup above 0, e.g. warmup({length}, start=0.01)"
    if isinstance(node, WSD):
        return ("wsd's warmup starts at its floor, 0 here: give it a floor above 0, e.g. "
                "floor=0.01 (the value it also decays to)")
    if isinstance(node, Linear):
        return (f"start the line above 0, e.g. linear({node.steps}, start=0.01, "
                f"end={node.end:g})")
    if isinstance(node, Cyclic):
        return "raise the bottom of the wave above 0, e.g. low=0.01"
    return f"make its first value above 0 ({_short(node)} is 0 there)"


def _short(s: Schedule, width: int = 48) -> str:
    text = s.to_spec()
    return text if len(text) <= width else text[: width - 3] + "..."


def _events(schedule: Schedule, steps: int) -> list[tuple[int, str]]:
    """Boundaries worth showing: joins, warmup ends, phase changes, milestones."""
    out: list[tuple[int, str]] = []
    for node, off in _walk(schedule):
        if isinstance(node, Join):
            for b, child in zip(node.boundaries, node.schedules[1:]):
                out.append((off + b, f"switch to {_short(child)}"))
        elif isinstance(node, Warmup):
            out.append((off + node.steps, "warmup ends"))
        elif isinstance(node, WSD):
            if node.warmup:
                out.append((off + node.warmup, "wsd warmup ends"))
            out.append((off + node.steps - node.decay, "wsd decay starts"))
            out.append((off + node.steps, "wsd ends"))
        elif isinstance(node, MultiStep):
            for m in node.milestones:
                out.append((off + m, f"x{node.gamma:g} (milestone)"))
        elif isinstance(node, Step):
            for k in range(1, 11):
                out.append((off + k * node.every, f"x{node.gamma:g} (step)"))
        elif isinstance(node, Restarts):  # the cycle starts the schedule itself uses
            for k in range(1, 11):
                out.append((off + int(math.ceil(node.cycle_start(k))), "restart"))
        elif isinstance(node, (Cosine, Polynomial, OneCycle, Linear)):
            length = node.length
            if isinstance(length, int):
                out.append((off + length, f"{node.name} ends"))
    return [(t, label) for t, label in out if 0 <= t < steps]


def key_points(schedule: Schedule, rates: Sequence[float]) -> list[KeyPoint]:
    """Start, end, peak, lowest point and every boundary within the run.

    For a long run (:class:`SampledRates`) the peak and lowest point are those of the sampled
    steps.
    """
    n = len(rates)
    marks: dict[int, list[str]] = {}

    def add(t: int, label: str) -> None:
        marks.setdefault(t, [])
        if label not in marks[t]:
            marks[t].append(label)

    add(0, "start")
    for t, label in _events(schedule, n)[: _MAX_EVENTS]:
        add(t, label)
    steps, values = _scan(rates)
    add(_argmax(steps, values), "peak")
    add(_argmin(steps, values), "lowest")
    add(n - 1, "end")
    return [KeyPoint(t, rates[t], ", ".join(marks[t])) for t in sorted(marks)]


# ------------------------------------------------------------------------------------------
# lint
# ------------------------------------------------------------------------------------------

def _fmt_rate(value: float, lr: float | None) -> str:
    """A rate as lint words it: ``lr`` None for an absolute schedule (its values are the rates:
    "0.0001x lr" read as a multiplier of 0.0001); a relative schedule's value multiplies the
    optimizer's lr ("x peak" would clash with the table's column, relative to the highest rate
    the run reaches)."""
    if lr is None:
        return f"{value:.4g}"
    return f"{value * lr:.4g}" if lr != 1.0 else f"{value:.4g}x lr"


def lint(schedule: Any, steps: int | None = None, *, lr: float = 1.0,
         **units: Any) -> list[LintWarning]:
    """Likely mistakes in ``schedule`` for a run of ``steps`` optimizer steps.

    Rules that need the run length (warmup-too-long, short-/long-horizon) are skipped without
    ``steps``. ``units`` (``steps_per_epoch=``, ...) resolve lengths in epochs.
    """
    if steps is not None:
        steps = plain_int(steps)
        _check_steps(steps)
    require(is_real(lr) and math.isfinite(lr) and lr > 0,
            f"lr must be a finite number > 0, got {lr!r}")
    s = from_config(schedule)
    _check_units(units)
    # (a spec in steps too: resolve() refuses options that contradict each other, or that would
    # be ignored, as the CLI does)
    s = s.resolve(total_steps=units.pop("total_steps", steps), **units)
    scale = None if s.is_absolute else lr
    out: list[LintWarning] = []

    if s(0) == 0.0:
        out.append(LintWarning(
            "zero-start", "the rate is 0 at step 0, so the first optimizer step changes nothing; "
            + _zero_start_fix(s), 0))

    for node, off in _walk(s):
        if isinstance(node, Join):
            starts = (0,) + tuple(node.boundaries)
            for i, b in enumerate(node.boundaries):
                prev, nxt = node.schedules[i], node.schedules[i + 1]
                left, right = prev._at(b - starts[i]), nxt._at(0)
                big = max(abs(left), abs(right))
                # and the run's own rates jump there too: a floor() or clamp around the join
                # can take the jump away ("0x lr to 0.5x lr" where the rate stays 0.5)
                before, after = s._at(max(off + b - 1, 0)), s._at(off + b)
                seen = max(abs(before), abs(after))
                if (big > 1e-12 and abs(left - right) > _JUMP_RTOL * big
                        and seen > 1e-12 and abs(after - before) > _JUMP_RTOL * seen):
                    ratio = f" (x{right / left:.3g})" if left else ""
                    out.append(LintWarning(
                        "join-jump",
                        f"at step {off + b} the rate jumps from {_fmt_rate(left, scale)} to "
                        f"{_fmt_rate(right, scale)}{ratio} when {_short(prev, 32)} hands over to "
                        f"{_short(nxt, 32)}; scale the next piece to start where the last one "
                        "ends, or ignore this if the restart is intended", off + b))
        if steps is not None and isinstance(node, Warmup) and off + node.steps >= steps:
            out.append(LintWarning(
                "warmup-too-long",
                f"{_short(node, 40)} ends at step {off + node.steps}, but the run has only "
                f"{steps} steps: training never reaches the peak; shorten the warmup", off))
        if steps is not None and isinstance(node, WSD) and node.warmup and off + node.warmup >= steps:
            out.append(LintWarning(
                "warmup-too-long",
                f"{_short(node, 40)} warms up until step {off + node.warmup}, but the run has "
                f"only {steps} steps", off))
        out.extend(_floor_findings(node, off, steps))

    if steps is not None:
        out.extend(_collapse_findings(s, steps, scale))
    length = s.length
    if steps is not None and isinstance(length, int):
        if length < steps:
            out.append(LintWarning(
                "short-horizon",
                f"the schedule ends at step {length} but the run has {steps} steps: the last "
                f"{steps - length} steps stay at {_fmt_rate(s._at(length), scale)}; set the "
                f"schedule's length to the run (e.g. use total or {steps})", length))
        elif length > steps:
            stop, final = s._at(steps - 1), s._at(length)
            if abs(stop - final) > _JUMP_RTOL * max(abs(stop), abs(final), 1e-12):
                out.append(LintWarning(
                    "long-horizon",
                    f"the schedule is {length} steps long but the run has {steps}: it stops at "
                    f"{_fmt_rate(stop, scale)} instead of {_fmt_rate(final, scale)}; shorten the "
                    "schedule to the run", steps - 1))
    return out


#: a rate this far below the schedule's highest, in the first half of the run, trains nothing
_COLLAPSE = 1e-6


def _collapse_findings(s: Schedule, steps: int, scale: float | None) -> list[LintWarning]:
    """The rate falling below a millionth of its highest in the first half of the run: most
    often a per-epoch decay written per step (``exponential(0.9)`` at 390 steps an epoch is
    1e-18 after one epoch, and exactly 0 from step 7073)."""
    half = steps // 2
    points = {int(i * half / 2000) for i in range(2001)}  # every step of short runs
    # and the second half, where a restart or a cycle may come back up (read only for that:
    # a trough at the middle of a run of warm restarts read "collapse")
    points.update(half + int(i * (steps - 1 - half) / 1000) for i in range(1001))
    for node, off in _walk(s):  # and where pieces meet (the peak after a warmup)
        if isinstance(node, Join):
            points.update(off + b + d for b in node.boundaries for d in (-1, 0))
        if isinstance(node, Warmup):
            points.add(off + node.steps)
    points = sorted(t for t in points if 0 <= t < steps)
    values = [abs(s._at(t)) for t in points]
    later = list(itertools.accumulate(reversed(values), max))[::-1]  # the highest from here on
    first, top = None, 0.0
    for i, (t, value) in enumerate(zip(points, values)):
        if t > half:
            break
        # falling below a millionth of the highest so far (a warmup from 0 rises) and staying
        # there (a cosine restart, a cyclic low of 0, come back up)
        if later[i] < _COLLAPSE * top:
            first = t
            break
        top = max(top, value)
    if first is None:
        return []
    length = s.length
    if isinstance(length, int) and length < steps and first >= 0.9 * length:
        return []  # a schedule decaying to its early end: the short-horizon warning's
    hint = ""
    if any(isinstance(node, Exponential) and node.every == 1 for node, _ in _walk(s)):
        hint = (" (exponential's gamma is per step; a decay per epoch is "
                "exponential(gamma, every=1*epoch))")
    return [LintWarning(
        "collapse",
        f"the rate falls below a millionth of its highest by step {first} of {steps} "
        f"({_fmt_rate(s._at(first), scale)}), so the rest of the run trains at almost nothing; "
        f"check the decay's rate or length{hint}", first)]


def _floor_findings(node: Schedule, off: int, steps: int | None) -> list[LintWarning]:
    # a cosine/exponential/wsd/restarts floor or a polynomial end above the peak (> 1) is refused
    # when the schedule is built; what is left to find is a floor above what it sits under
    if isinstance(node, Restarts):
        if node.decay < 1.0 and node.floor > 0.0:
            # the first cycle whose peak is strictly below the floor (decay**k == floor is a
            # flat cycle at the floor, not one that rises to it)
            k = math.floor(math.log(node.floor) / math.log(node.decay) + 1e-9) + 1
            start = node.cycle_start(k)
            if steps is None or off + start < steps:
                return [LintWarning(
                    "floor-above-peak",
                    f"{_short(node, 40)}: from cycle {k} (step {off + int(start)}) the cycle peak "
                    f"decay**{k}={node.decay ** k:.3g} is below floor={node.floor:g}, so cycles "
                    "rise from their peak to the floor", off)]
    if isinstance(node, Floor):
        n = node.schedule.length if isinstance(node.schedule.length, int) else None
        horizon = min(x for x in (n, steps, 100_000) if x is not None)
        top = max(node.schedule._at(t) for t in range(max(horizon, 1)))
        if node.value >= top:
            return [LintWarning(
                "floor-above-peak",
                f"{_short(node, 40)}: the floor {node.value:g} is at or above the highest value "
                f"of the schedule under it ({top:.4g}), so the rate is flat at the floor", off)]
    return []


# ------------------------------------------------------------------------------------------
# preview
# ------------------------------------------------------------------------------------------

#: the unit options preview and lint take (Schedule.resolve's)
_UNITS = ("total_steps", "steps_per_epoch", "batches_per_epoch", "grad_accum", "epochs")


def _check_units(units: dict[str, Any]) -> None:
    """Unknown unit options named (a misspelled one raised a TypeError from resolve, or was
    ignored when the schedule needed no resolving)."""
    unknown = sorted(k for k in units if k not in _UNITS)
    if unknown:
        raise LrkitError(f"unknown option {unknown[0]!r}; the unit options are "
                         f"{', '.join(_UNITS)}")


def _check_max_points(max_points: Any) -> int:
    value = plain_int(max_points)  # numpy integers are the numbers they stand for
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"max_points must be an integer >= 1 (the points kept of the curve), got "
            f"{max_points!r}")
    return value


def _metric_map(metrics: Any) -> dict[int, float]:
    if metrics is None:
        return {}
    items = metrics.items() if isinstance(metrics, Mapping) else metrics
    out = {}
    for item in items:
        require(isinstance(item, (tuple, list)) and len(item) == 2,
                f"metrics: {item!r} is not a (step, value) pair; give {{step: value}} or "
                "[(step, value), ...]")
        step, value = item
        step = plain_int(step)  # numpy integers are the steps they stand for; True is not one
        require(isinstance(step, int) and not isinstance(step, bool) and step >= 0,
                f"metrics: step {item[0]!r} must be an int >= 0")
        try:
            out[step] = float(value)
        except (TypeError, ValueError):
            raise LrkitError(f"metrics: the value at step {step} is {value!r}, not a number"
                             ) from None
    return out


def _is_factory(obj: Any) -> bool:
    return callable(obj) and not isinstance(obj, (Schedule, str, dict, list, tuple))


def _check_steps(steps: Any, what: str = "steps") -> None:
    require(isinstance(steps, int) and not isinstance(steps, bool) and steps > 0,
            f"{what} must be a positive integer, got {steps!r}")
    require(steps <= MAX_STEPS,
            f"{what}={steps} is more than can be previewed (at most 2**53 = {MAX_STEPS} steps, "
            "beyond which steps are not exact as floats)")


def preview(schedule: Any, steps: int, *, lr: float | None = None, metrics: Any = None,
            label: str | None = None, **units: Any) -> Preview:
    """Rates for ``steps`` optimizer steps, key points and lint warnings, without training.

    ``schedule`` is an lrkit schedule/spec/config, or a factory taking an optimizer and
    returning a torch scheduler. ``lr`` is the optimizer's learning rate (1.0 shows
    multipliers; ignored for absolute ``peak(...)`` schedules). ``metrics`` maps a step to a
    validation metric reported after that step, for ``plateau`` or ``ReduceLROnPlateau``.
    ``units`` (``steps_per_epoch=``, ``batches_per_epoch=``, ``grad_accum=``) resolve epochs;
    fractions of the run resolve against ``steps``.

    A run of up to :data:`DENSE_STEPS` steps is read at every step (``rates`` is a list). A
    longer one is read at about 4,000 evenly spread steps plus every boundary (joins, warmup
    ends, milestones): ``rates`` is then a :class:`SampledRates`, whose ``rates[t]`` is still
    exact, and the peak and lowest point are those of the sampled steps. A torch factory is
    stepped one step at a time, so its runs are limited to :data:`MAX_TORCH_STEPS` steps.
    """
    steps = plain_int(steps)
    _check_steps(steps)
    require(lr is None or (is_real(lr) and math.isfinite(lr) and lr > 0),
            f"lr must be a finite number > 0, got {lr!r}")
    reports = _metric_map(metrics)
    if _is_factory(schedule):
        return _preview_torch(schedule, steps, lr=1.0 if lr is None else float(lr),
                              reports=reports, label=label)
    s = from_config(schedule)
    _check_units(units)
    # (a spec in steps too: resolve() refuses options that contradict each other, or that would
    # be ignored, as the CLI does)
    s = s.resolve(total_steps=units.pop("total_steps", steps), **units)
    base = 1.0 if (lr is None or s.is_absolute) else float(lr)
    value = _plateau_values(s, reports, steps) if reports else s._at
    if steps <= DENSE_STEPS:
        rates: Sequence[float] = [base * value(t) for t in range(steps)]
    else:
        rates = SampledRates(_Scaled(base, value), steps, _sample_steps(s, steps))
    prev = Preview(rates=rates, lr=base, label=label or s.to_spec(), source="lrkit", schedule=s)
    prev.key_points = key_points(s, rates)
    prev.warnings = lint(s, steps, lr=base)
    return prev



def _sample_steps(s: Schedule, steps: int) -> list[int]:
    """About :data:`_SAMPLES` evenly spread steps, both ends, and each boundary with the step
    before it (so that a jump shows)."""
    last = steps - 1
    picks = {last * i // (_SAMPLES - 1) for i in range(_SAMPLES)}
    for t, _label in _events(s, steps)[:_MAX_SAMPLED_EVENTS]:
        picks.add(t)
        if t > 0:
            picks.add(t - 1)
    return sorted(picks)


def _plateau_values(s: Schedule, reports: dict[int, float], steps: int) -> Callable[[int], float]:
    """``step -> value`` of a plateau schedule fed ``reports`` (metric reported after a step)."""
    plateau = s.schedule if isinstance(s, Peak) else s
    if not isinstance(plateau, Plateau):
        raise LrkitError("metrics were given but the schedule has no plateau(); wrap it, e.g. "
                         "plateau(cosine(10000), patience=3)")
    state = plateau.init()
    after: list[int] = []  # the scale changes after these steps ...
    scales: list[float] = [state.scale]  # ... to these (scales[0]: before any report)
    for t in sorted(k for k in reports if k < steps):
        state = plateau.update(state, reports[t])
        after.append(t)
        scales.append(state.scale)

    return _PlateauValues(s, after, scales)


class _Scaled:
    """``t -> base * value(t)``: a long preview's rates, picklable (a lambda was not, so such a
    preview could not be stored or sent to another process)."""

    def __init__(self, base: float, value: Callable[[int], float]) -> None:
        self.base, self.value = base, value

    def __call__(self, t: int) -> float:
        return self.base * self.value(t)


class _PlateauValues:
    """``t -> value`` of a plateau schedule after the reports: its scale changes after the steps
    ``after`` to ``scales`` (``scales[0]``: before any report). Picklable, as :class:`_Scaled`."""

    def __init__(self, schedule: Schedule, after: list[int], scales: list[float]) -> None:
        self.schedule, self.after, self.scales = schedule, after, scales

    def __call__(self, t: int) -> float:
        return self.schedule._at(t) * self.scales[bisect_left(self.after, t)]


def _preview_torch(factory: Callable[[Any], Any], steps: int, *, lr: float,
                   reports: dict[int, float], label: str | None) -> Preview:
    import warnings

    import torch

    require(steps <= MAX_TORCH_STEPS,
            f"steps={steps} is too long to preview a torch scheduler, which is stepped one step "
            f"at a time; at most {MAX_TORCH_STEPS} (an lrkit schedule has no such limit)")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = factory(opt)
        plateau = isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if not (plateau or isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
                or callable(getattr(sched, "step", None))):
            raise LrkitError(
                f"the factory returned {type(sched).__name__ if sched is not None else 'None'}, "
                "not a torch scheduler; it must return one built on the optimizer it is given, "
                "e.g. lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000)")
        rates = []
        t = 0
        try:
            for t in range(steps):
                rates.append(float(opt.param_groups[0]["lr"]))
                if plateau:
                    if t in reports:
                        sched.step(reports[t])
                    continue
                opt.step()
                sched.step()
                if t in reports and hasattr(sched, "report"):
                    sched.report(reports[t])
        except (ValueError, RuntimeError, TypeError, ZeroDivisionError, IndexError) as exc:
            raise LrkitError(f"the torch scheduler {type(sched).__name__} failed after step {t} "
                             f"of the {steps}-step preview: {exc}") from None
    name = label or type(sched).__name__
    prev = Preview(rates=rates, lr=lr, label=name, source="torch")
    n = len(rates)
    top = max(range(n), key=rates.__getitem__)
    marks = {0: "start", top: "peak", n - 1: "end"}
    prev.key_points = [KeyPoint(t, rates[t], marks[t]) for t in sorted(marks)]
    return prev


# ------------------------------------------------------------------------------------------
# plot
# ------------------------------------------------------------------------------------------

def plot(previews: Preview | Sequence[Preview], path: str, *, title: str | None = None,
         log: bool = False, max_points: int = 20_000) -> str:
    """Draw the curves to ``path`` (PNG, SVG, PDF by extension) with matplotlib's Agg canvas.

    Uses ``matplotlib.figure.Figure`` directly, so no display and no pyplot state are needed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lrkit.show.plots import plain

    items = [previews] if isinstance(previews, Preview) else list(previews)
    require(len(items) > 0, "plot() needs at least one preview")
    require(path is not None, "plot() needs a file to write, such as 'schedule.png'")
    require_plot_path(path)
    fig = Figure(figsize=(9, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    def relative(p: Preview) -> bool:  # its values multiply the optimizer's lr
        return p.lr == 1.0 and not (p.schedule is not None and p.schedule.is_absolute)

    mixed = len({relative(p) for p in items}) > 1
    drawn: list[float] = []
    max_points = _check_max_points(max_points)
    for i, p in enumerate(items):
        n = p.steps
        stride = max(1, math.ceil(n / max_points))
        xs = sorted(set(range(0, n, stride)) | {n - 1} | {k.step for k in p.key_points}
                    | {max(k.step - 1, 0) for k in p.key_points}
                    | set(p.rates.points if isinstance(p.rates, SampledRates) else ()))
        ys = [p.rates[t] for t in xs]
        drawn.extend(ys)
        label = plain(p.label) + (" (x optimizer lr)" if mixed and relative(p) else "")
        ax.plot(xs, ys, label=label, linewidth=1.6 if i == 0 else 1.2,
                linestyle="-" if i == 0 else "--")
    first = items[0]
    for k in first.key_points:
        ax.plot([k.step], [k.rate], marker="o", markersize=3.5, color="black")
    if log:
        # (no rate above 0: matplotlib drew an empty axis from 1 to 10 with a warning)
        require(any(v > 0 for v in drawn), "a log scale needs a rate above 0, and every rate "
                                           "drawn is 0 or below; drop the log scale (--log)")
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    # true of every curve drawn: a relative one's legend says so when they mix
    ax.set_ylabel("learning rate" if mixed or not relative(first)
                  else "learning rate (x optimizer lr)")
    ax.set_title(plain(title or (first.label if len(items) == 1 else "learning-rate schedules")),
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    if len(items) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path
