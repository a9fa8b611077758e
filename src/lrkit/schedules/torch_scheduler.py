"""PyTorch at the edge: a real ``LRScheduler`` that sets each group's rate from the closed form.

Why a new scheduler class rather than ``LambdaLR``:

* it counts *applied* optimizer steps (an optimizer step post-hook), so a step that
  ``GradScaler`` skips because of inf/NaN gradients does not advance the schedule, and calling
  ``scheduler.step()`` twice (or not at all) cannot shift it;
* its whole state is the step (plus the plateau state, if any), so a resumed run continues
  bit for bit, whatever the order of loading optimizer and scheduler state;
* it pickles (no lambdas), and supports tensor learning rates (``group['lr']`` filled in place).

Relative schedules multiply each group's initial learning rate; an absolute schedule
(``peak(...)``) sets the first group's rate and keeps the other groups' ratios to it. A list of
schedules gives one schedule per parameter group.
"""
from __future__ import annotations

import contextlib
import math
import warnings
import weakref
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lrkit.errors import LrkitError, is_real, one_number, require
from lrkit.schedules.base import Peak, Schedule
from lrkit.schedules.families.plateau import Plateau, PlateauState
from lrkit.schedules.spec import from_config

__all__ = ["ScheduleLR", "to_torch", "paused"]

_Tensor = torch.Tensor

_COUNTS = ("optimizer", "calls")
#: the optimizer attribute that marks its steps as not to be counted (see :func:`paused`)
_PAUSED = "_lrkit_schedules_paused"


def _unwrap(schedule: Schedule) -> tuple[Schedule, float | None, Plateau | None]:
    """(core, absolute peak or None, plateau or None)."""
    peak = None
    if isinstance(schedule, Peak):
        peak, schedule = schedule.lr, schedule.schedule
    plateau = None
    if isinstance(schedule, Plateau):
        plateau, schedule = schedule, schedule.schedule
    return schedule, peak, plateau


def _check_group_rate(i: int, group: dict[str, Any]) -> None:
    """Refuse a group whose rate the schedule would multiply into NaN or inf rates at every step
    (NaN or inf), or into steps uphill (negative); checked before torch's ``LRScheduler`` copies
    it to ``initial_lr``, so that a fixed rate is taken up by the next scheduler."""
    key = "initial_lr" if "initial_lr" in group else "lr"
    value = group[key]
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        number = math.nan
    if math.isfinite(number) and number >= 0 and not isinstance(value, bool):
        return
    shown = number if isinstance(value, _Tensor) and value.numel() == 1 else value
    if key == "lr":
        raise LrkitError(f"parameter group {i} has learning rate {shown!r}; the schedule "
                         "multiplies it, so it must be a finite number >= 0: give the group a "
                         "finite rate (lr=0.1 in the optimizer, or in add_param_group)")
    raise LrkitError(f"parameter group {i} has initial_lr={shown!r} (left there by an earlier "
                     "scheduler; it is the rate the schedule multiplies), which must be a finite "
                     "number >= 0: set group['initial_lr'] to a finite rate, or delete it")


def _same_rate(a: Any, b: Any) -> bool:
    """``a == b``, with NaN the same as NaN (a NaN rate is not a rate changed by someone else)."""
    return bool(a == b) or (a != a and b != b)


class _OnOptimizerStep:
    """Optimizer post-step hook; holds the scheduler weakly so a dropped scheduler detaches."""

    def __init__(self, scheduler: "ScheduleLR") -> None:
        self.ref = weakref.ref(scheduler)

    def __call__(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        scheduler = self.ref()
        if scheduler is not None and not getattr(optimizer, _PAUSED, 0):
            found_inf = getattr(optimizer, "found_inf", None)
            if found_inf is not None and bool(found_inf):
                # a fused optimizer under a GradScaler: the scaler hands it the overflow flag
                # and the kernel skips the update itself, but step() still runs; a skipped step
                # does not move the schedule (one read-back, on that path only)
                return
            scheduler._check_owner()
            scheduler._t += 1
            scheduler._apply()


@contextlib.contextmanager
def paused(optimizer: Optimizer) -> Iterator[None]:
    """Inside, the lrkit schedulers that follow ``optimizer`` do not count its steps: for steps
    that are undone afterwards (a range test, a recipe's short runs, a guard's probe), which
    must not move a user's schedule on. Other step hooks run as usual; schedulers created or
    detached meanwhile are treated alike (the pause is a mark on the optimizer, not a removal
    of hooks). An optimizer Accelerate has wrapped is paused inside, where they follow it."""
    optimizer = _innermost(optimizer)
    depth = getattr(optimizer, _PAUSED, 0)
    setattr(optimizer, _PAUSED, depth + 1)
    try:
        yield
    finally:
        if depth:
            setattr(optimizer, _PAUSED, depth)
        else:
            delattr(optimizer, _PAUSED)


def _innermost(optimizer: Any) -> Any:
    """The torch optimizer inside a wrapper that forwards to it (Accelerate's
    ``AcceleratedOptimizer``, which never ran ``Optimizer.__init__``): its step hooks are the
    ones that fire, and only on the steps it actually takes."""
    while (isinstance(optimizer, Optimizer) and "_optimizer_step_post_hooks" not in vars(optimizer)
           and isinstance(getattr(optimizer, "optimizer", None), Optimizer)):
        optimizer = optimizer.optimizer
    return optimizer


class ScheduleLR(LRScheduler):
    """Learning rates from lrkit schedules, one per parameter group (or one for all).

    ``count="optimizer"`` (default) advances on every optimizer step that actually ran and sets
    the new rate right away; ``step()`` is then idempotent and kept for the usual training-loop
    shape. ``count="calls"`` advances on each ``step()`` call, like torch's schedulers.
    """

    def __init__(self, optimizer: Optimizer, schedules: Sequence[Schedule], *,
                 per_group: bool = False, count: str = "optimizer") -> None:
        optimizer = _innermost(optimizer)
        if not isinstance(optimizer, Optimizer):
            raise LrkitError(f"to_torch() needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
        require(count in _COUNTS, f"count={count!r} is not allowed; allowed values: 'optimizer', 'calls'")
        schedules = list(schedules) if isinstance(schedules, (list, tuple)) else [schedules]
        require(len(schedules) > 0, "ScheduleLR needs at least one schedule")
        require(per_group or len(schedules) == 1,
                f"{len(schedules)} schedules without per_group=True: give one schedule for all "
                "groups, or per_group=True for one schedule per group")
        for s in schedules:
            if not isinstance(s, Schedule):
                raise LrkitError(f"expected a schedule, got {s!r}")
            if not s.is_resolved:
                raise LrkitError(f"{s!r} has lengths in epochs or fractions of the run; pass "
                                 "total_steps=/steps_per_epoch= to to_torch() to resolve them")
        for i, group in enumerate(optimizer.param_groups):
            _check_group_rate(i, group)
        self._schedules = tuple(schedules)
        self._per_group = per_group
        self.count = count
        self._t = 0
        self._scale = 1.0  #: a factor on every rate, set by scale_rates (a guard's cut)
        self._applied = -1
        self._warned_owner = False
        self._plateau: list[PlateauState | None] | None = None
        self._hook_handle: Any = None
        super().__init__(optimizer)
        if count == "optimizer":
            self._register_hook()

    # setup ----------------------------------------------------------------------------------
    def _initial_step(self) -> None:  # called by LRScheduler.__init__ once base_lrs are known
        self._step_count = 0
        self._setup()
        self._apply()
        self._step_count = 1

    def _setup(self) -> None:
        groups = self.optimizer.param_groups
        if self._per_group:
            require(len(self._schedules) == len(groups),
                    f"{len(self._schedules)} schedules for {len(groups)} parameter groups; give "
                    "one schedule, or one per group")
            per_group = list(self._schedules)
        else:
            per_group = [self._schedules[0]] * len(groups)
        base = [float(b) for b in self.base_lrs]
        evals: list[Callable[[float], float]] = []
        mults: list[float] = []
        plateaus: list[Plateau | None] = []
        for i, s in enumerate(per_group):
            core, peak, plateau = _unwrap(s)
            if peak is None:
                mult = base[i]
            elif self._per_group or i == 0:
                mult = peak
            else:
                require(base[0] != 0.0, "an absolute schedule keeps the groups' ratios to the "
                                        "first group, whose learning rate is 0")
                mult = peak * base[i] / base[0]
            evals.append(core._at)
            mults.append(mult)
            plateaus.append(plateau)
        self._evals = evals
        self._mults = mults
        self._plateaus = plateaus
        if self._plateau is None or len(self._plateau) != len(plateaus):
            self._plateau = [p.init() if p is not None else None for p in plateaus]

    def _sync_groups(self) -> None:
        """Take in parameter groups added since setup (``optimizer.add_param_group``, e.g. for
        gradual unfreezing): a shared schedule multiplies each new group's own initial rate, as
        for the groups present at the start; the plateau state is shared with group 0, since its
        rule saw the same reports. One schedule per group cannot guess the new group's."""
        groups = self.optimizer.param_groups
        known = len(self._mults)
        require(not self._per_group,
                f"the optimizer now has {len(groups)} parameter groups but this scheduler was "
                f"given one schedule for each of {known}; after add_param_group, make a new "
                "scheduler with one schedule per group (or one schedule for all)")
        require(len(groups) > known, f"the optimizer has {len(groups)} parameter groups, fewer "
                                     f"than the {known} this scheduler was set up for")
        for i, group in enumerate(groups[known:], start=known):
            _check_group_rate(i, group)
        for group in groups[known:]:
            initial = group["lr"]
            group.setdefault("initial_lr", initial.clone() if isinstance(initial, _Tensor)
                             else initial)
            self.base_lrs.append(group["initial_lr"])
            self._plateau.append(self._plateau[0])
        self._setup()

    def _register_hook(self) -> None:
        handle = self.optimizer.register_step_post_hook(_OnOptimizerStep(self))
        self._hook_handle = handle
        # a scheduler dropped without detach() takes its hook with it: 1000 schedulers made on
        # one optimizer left 1000 hooks, and each step ran 10x slower
        weakref.finalize(self, handle.remove)

    def detach(self) -> None:
        """Stop following the optimizer (removes the step hook)."""
        if self._hook_handle is not None:
            self._hook_handle.remove()
            self._hook_handle = None

    # the rate -------------------------------------------------------------------------------
    def _rates(self, t: int) -> list[float]:
        if len(self.optimizer.param_groups) != len(self._mults):
            self._sync_groups()
        out = []
        for ev, mult, st in zip(self._evals, self._mults, self._plateau):
            lr = mult * self._scale * ev(t)
            if st is not None:
                lr *= st.scale
            out.append(lr)
        return out

    def _apply(self) -> None:
        # the per-step hot path: one closed-form evaluation and one assignment per group
        t = self._t
        scale = self._scale
        if len(self.optimizer.param_groups) != len(self._mults):
            self._sync_groups()
        last: list[Any] = []
        for group, ev, mult, st in zip(self.optimizer.param_groups, self._evals, self._mults,
                                       self._plateau):
            lr = mult * scale * ev(t)
            if st is not None:
                lr *= st.scale
            cur = group["lr"]
            if isinstance(cur, _Tensor):
                cur.fill_(lr)
                last.append(cur.clone())
            else:
                group["lr"] = lr
                last.append(lr)
        self._last_lr = last
        self._applied = self.last_epoch = t

    def _check_owner(self) -> None:
        """Warn (once) when a group's rate is not the one this scheduler set last: another
        scheduler on the optimizer (or a ``SequentialLR``/``ChainedScheduler`` around this one)
        writes it too, and the next apply overwrites that write, so neither schedule is followed.
        Steps inside :func:`paused` are left out (their rates are undone); tensor rates are not
        read (a device sync per step)."""
        if self._warned_owner or getattr(self.optimizer, _PAUSED, 0):
            return
        for i, (group, last) in enumerate(zip(self.optimizer.param_groups, self._last_lr)):
            cur = group["lr"]
            if not isinstance(cur, _Tensor) and not isinstance(last, _Tensor) \
                    and not _same_rate(cur, last):
                self._warned_owner = True
                warnings.warn(f"the learning rate of parameter group {i} was changed outside this "
                              f"ScheduleLR (it set {last!r}, the group has {cur!r}); it owns the "
                              "rates and overwrites such changes: don't run another scheduler on "
                              "this optimizer or wrap it in SequentialLR/ChainedScheduler (compose "
                              "schedules with >>; to hand over to another scheduler, torch's "
                              "SWALR, call this one's detach() first), and lower the rates with "
                              "scale_rates() (an lrkit.Guard does that when given "
                              "Guard(scheduler=this one))",
                              UserWarning, stacklevel=3)
                return

    def get_lr(self) -> list[float]:
        """The rates for the current step (no side effects)."""
        return self._rates(self._t)

    def step(self, metrics: float | None = None,  # type: ignore[override]
             epoch: Any = None) -> None:
        """Sync the rates with the step count; with ``metrics`` (a ``plateau(...)`` schedule
        only), also :meth:`report` it.

        Under ``count="optimizer"`` the count follows applied optimizer steps, so calling this
        after ``optimizer.step()`` (or ``scaler.step(optimizer)``) is correct and harmless.
        torch's deprecated ``step(epoch)`` form is refused: the scheduler keeps its own count.
        """
        if epoch is not None:
            raise LrkitError(self._no_epoch(f"epoch={epoch!r}"))
        if metrics is not None and all(p is None for p in self._plateaus):
            # not a plateau schedule: step(3) is torch's step(epoch), not a metric to report
            if one_number(metrics) is None:
                raise LrkitError(f"step() takes no argument here, got {type(metrics).__name__} "
                                 f"{metrics!r}: this scheduler counts {self._counted()} by "
                                 "itself; call step() with no argument (a validation metric "
                                 "goes to report(metric), for a schedule wrapped in "
                                 "plateau(...))")
            raise LrkitError(self._no_epoch(repr(metrics)))
        self._check_owner()
        if metrics is not None:
            self._report(metrics, "step")
        if (self.count == "calls" and self._step_count == 1
                and not getattr(self.optimizer, "_opt_called", False)):
            # torch's own warning: counting calls, this one skips the schedule's first value
            warnings.warn("Detected call of `lr_scheduler.step()` before `optimizer.step()`: "
                          "with count='calls' this skips the first value of the schedule; call "
                          "optimizer.step() first, or use count='optimizer' (the default), which "
                          "follows the optimizer steps actually applied", UserWarning, stacklevel=2)
        self._step_count += 1
        if self.count == "calls" and not self._is_initial:
            self._t += 1
        if self._applied != self._t or len(self.optimizer.param_groups) != len(self._mults):
            self._apply()

    def _counted(self) -> str:
        return "applied optimizer steps" if self.count == "optimizer" else "its step() calls"

    def _no_epoch(self, given: str) -> str:
        return (f"step() takes no epoch, got {given}: this scheduler counts {self._counted()} by "
                "itself, so torch's deprecated step(epoch) form does not apply; call step() "
                "with no argument (a validation metric goes to report(metric), for a schedule "
                "wrapped in plateau(...))")

    def report(self, metric: float) -> None:
        """Feed a validation metric to the schedule's ``plateau(...)`` and apply the new scale."""
        self._report(metric, "report")

    def _report(self, metric: Any, caller: str) -> None:
        if all(p is None for p in self._plateaus):
            raise LrkitError("this schedule has no plateau(); wrap it, e.g. "
                             "plateau(warmup(500) >> cosine(10000), factor=0.5, patience=3)")
        try:
            value = float(metric)
        except (TypeError, ValueError, RuntimeError):
            raise LrkitError(f"{caller}() needs one number (the validation metric), got "
                             f"{type(metric).__name__} {metric!r}") from None
        self._plateau = [p.update(st, value) if p is not None and st is not None else st
                         for p, st in zip(self._plateaus, self._plateau)]
        self._apply()

    def scale_rates(self, factor: float) -> None:
        """Multiply every rate from now on by ``factor`` (kept in the state, so a resumed run
        keeps it): how a guard's rate cut reaches a schedule fixed at setup."""
        require(is_real(factor) and 0 < float(factor) < float("inf"),
                f"factor must be a positive finite number, got {factor!r}")
        self._scale *= float(factor)
        self._apply()

    @property
    def current_step(self) -> int:
        """Optimizer steps counted so far: the step whose rate is now set."""
        return self._t

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        return self._schedules

    @property
    def plateau_scale(self) -> list[float]:
        """Per group, the factor the plateau rule has applied so far (1.0 without plateau)."""
        return [1.0 if st is None else st.scale for st in self._plateau]

    # state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The step, the base rates, the plateau state and the scale: enough to resume exactly."""
        if len(self.optimizer.param_groups) != len(self._mults):
            self._sync_groups()
        return {
            "step": self._t,
            "base_lrs": [float(b) for b in self.base_lrs],
            "plateau": [None if st is None else st.to_dict() for st in self._plateau],
            "schedules": [s.to_spec() for s in self._schedules],
            "count": self.count,
            "scale": self._scale,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume: set the step (and plateau state) and apply that step's rates at once."""
        try:
            step = state_dict["step"]
            base_lrs = state_dict["base_lrs"]
        except (KeyError, TypeError):
            raise LrkitError("not an lrkit ScheduleLR state_dict (it needs 'step' and "
                             "'base_lrs')") from None
        require(isinstance(step, int) and step >= 0, f"state_dict step must be an int >= 0, got {step!r}")
        require(len(base_lrs) == len(self.optimizer.param_groups),
                f"state_dict has {len(base_lrs)} base rates, the optimizer has "
                f"{len(self.optimizer.param_groups)} parameter groups")
        saved_specs = state_dict.get("schedules")
        current = [s.to_spec() for s in self._schedules]
        if saved_specs is not None and list(saved_specs) != current:
            # resuming with another schedule may be meant (a longer run), but never silently
            warnings.warn(f"this scheduler's schedule {current} differs from the one saved in the "
                          f"state_dict {list(saved_specs)}; resuming at step {step} of the new one",
                          stacklevel=2)
        saved_count = state_dict.get("count")
        if saved_count is not None and saved_count != self.count:
            # the saved step counted other things (step() calls, maybe once per epoch)
            warnings.warn(f"this scheduler counts with count={self.count!r}, the state_dict was "
                          f"saved with count={saved_count!r}: step {step} is taken as a step of "
                          "this count; pass the same count= to to_torch() to resume exactly",
                          stacklevel=2)
        for i, b in enumerate(base_lrs):
            require(is_real(b) and math.isfinite(b) and b >= 0,
                    f"state_dict base_lrs[{i}] must be a finite number >= 0, got {b!r}")
        self.base_lrs = [float(b) for b in base_lrs]
        self._t = step
        scale = state_dict.get("scale", 1.0)
        require(isinstance(scale, (int, float)) and 0 < scale < float("inf"),
                f"state_dict scale must be a positive finite number, got {scale!r}")
        self._scale = float(scale)
        self._plateau = None
        self._setup()
        saved = state_dict.get("plateau")
        if saved is not None:
            require(len(saved) == len(self._plateau), "state_dict plateau entries do not match the groups")
            self._plateau = [None if (d is None or cur is None) else PlateauState.from_dict(d)
                             for d, cur in zip(saved, self._plateau)]
        self._apply()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_hook_handle", "_evals"):
            state.pop(key, None)
        state["_detached"] = self._hook_handle is None  # detach() holds in the copy too
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        detached = state.pop("_detached", False)
        self.__dict__.update(state)
        self.__dict__.setdefault("_scale", 1.0)  # pickled before scale_rates existed
        self.__dict__.setdefault("_warned_owner", False)
        self._hook_handle = None
        self._evals = [_unwrap(s)[0]._at for s in (
            self._schedules if self._per_group else [self._schedules[0]] * len(self._mults))]
        if self.count == "optimizer" and not detached:
            self._register_hook()

    def __repr__(self) -> str:
        specs = ", ".join(s.to_spec() for s in self._schedules)
        return f"ScheduleLR({specs}, step={self._t})"


def to_torch(optimizer: Optimizer, schedule: Any, *, total_steps: int | None = None,
             steps_per_epoch: float | None = None, batches_per_epoch: int | None = None,
             grad_accum: int = 1, epochs: float | None = None,
             count: str = "optimizer") -> ScheduleLR:
    """A :class:`ScheduleLR` (a ``torch.optim.lr_scheduler.LRScheduler``) for ``optimizer``.

    ``schedule`` is a schedule, a text spec or a config (a list of ``{"type": ...}`` dicts is one
    chained schedule, as ``to_config`` writes it); any other ``list``/``tuple`` gives one schedule
    per parameter group (spec strings or schedules). Lengths in epochs or fractions of the run are resolved here with
    ``steps_per_epoch`` (or ``batches_per_epoch`` and ``grad_accum``) and ``total_steps`` (or
    ``epochs``).
    """
    # a list of {"type": ...} dicts is the config form of one chained schedule (what to_config
    # writes); any other list gives one schedule per group
    configs = isinstance(schedule, (list, tuple)) and bool(schedule) and all(
        isinstance(item, dict) for item in schedule)
    groups = len(optimizer.param_groups) if isinstance(optimizer, Optimizer) else 1
    require(not (configs and groups > 1 and len(schedule) == groups),
            f"a list of {groups} {{'type': ...}} dicts for {groups} parameter groups could be "
            "one chained schedule or one schedule per group; pass from_config(the list) for one "
            "chain, or spec strings or schedules (from_config(each)) for one per group")
    per_group = isinstance(schedule, (list, tuple)) and not configs
    items = list(schedule) if per_group else [schedule]
    require(len(items) > 0, "to_torch() needs at least one schedule")
    resolved = []
    for item in items:
        # (a spec in steps too: resolve() refuses options that contradict each other, or that
        # would be ignored)
        resolved.append(from_config(item).resolve(
            total_steps=total_steps, steps_per_epoch=steps_per_epoch,
            batches_per_epoch=batches_per_epoch, grad_accum=grad_accum, epochs=epochs))
    return ScheduleLR(optimizer, resolved, per_group=per_group, count=count)
