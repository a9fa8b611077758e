"""Guard a training loop's optimizer step against spikes and non-finite losses or gradients.

::

    guard = lrkit.Guard(model, optimizer)
    for inputs, targets in loader:
        def closure():
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            return loss
        loss = guard.step(closure)      # instead of loss = closure(); optimizer.step()

With mixed precision, pass the ``torch.amp.GradScaler`` (``Guard(model, optimizer,
scaler=scaler)``) and scale the loss in the closure (``scaler.scale(loss).backward()``; return
the unscaled loss): the guard then steps through ``scaler.step`` and ``scaler.update``.

Each step it checks the loss (one host sync; with ``check_grads=True`` the gradient norm too, in
the same sync). A lone spike only skips its batch: the next batches test the same parameters, and
a bad batch passes where bad parameters spike again. A lone non-finite loss or gradient (one bad
batch, most often) rolls back to the last snapshot at the same rate. A spike within
``confirm_spikes`` steps of another spike, and a non-finite value within that many steps of a
spike or another non-finite value (see :class:`Guard`), is an incident:
the guard restores the last good snapshot of the model and optimizer (an exact
:class:`lrkit.state.Snapshot`, RNG included), skips the batch and returns. On the first incident
it then measures the rate to go on with: the next ``probe_steps`` steps are a short range test up
to the rate that failed (:mod:`lrkit.diagnose.probe`), after which it rolls back again and goes on
at the probe's suggestion. Later incidents multiply every group's rate by ``lr_factor``. After
``max_retries`` incidents with no new snapshot in between it raises :class:`GuardError`. Every
intervention is recorded in ``guard.interventions`` and logged.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import logging
import math
import os
from typing import Any, Callable

import torch

from lrkit.adapters.distributed import group_of, mean_over_ranks, min_over_ranks, should_sync
from lrkit.diagnose.probe import RateProbe
from lrkit.diagnose.snapshots import SnapshotKeeper
from lrkit.errors import LrkitError, is_real, plain_int, require
from lrkit.state import Snapshot, group_values, put_group_values

LOGGER = logging.getLogger("lrkit.diagnose")
_isfinite = math.isfinite
#: a snapshot's level (which one is the best) is the median of this many of its last losses
LEVEL_WINDOW = 10
#: "progress lost": the run's median (over a full window) had fallen by at least PROGRESS_MADE
#: of its (positive) starting level and by PROGRESS_NOISE standard errors of a window median, and
#: is back within PROGRESS_KEPT of that fall from the start, at two checks in a row
PROGRESS_MADE = 0.2
PROGRESS_NOISE = 5.0
PROGRESS_KEPT = 0.1
#: a GradScaler's scale below this share of 1 (or of its scale at the first snapshot, when that
#: was lower) has been halved by overflows at nearly every step since: the gradients are
#: non-finite in themselves, and every step is skipped while the guard saw finite losses
SCALE_COLLAPSED = 2.0 ** -10
#: a spike confirms an earlier one (two make an incident) unless at least this many good steps
#: came between them with ordinary losses (their median no higher than the window's upper
#: quartile): the parameters the first spike was skipped with passed that many batches, and the
#: second is another outlier batch (a small last batch of an epoch, confidently wrong near
#: convergence), not the rate's
SPIKE_CLEARED_STEPS = 5
#: the course check's cheap look: a recent median 30% above the lowest median is "off course"
#: only when it is also this many noise widths (interquartile range / sqrt(losses)) above it
LEVEL_NOISE = 2.0


class GuardError(LrkitError):
    """The guard ran out of retries: lowering the rate and rolling back did not help."""


@dataclasses.dataclass
class Intervention:
    step: int  #: the guard's step count when it happened
    #: "nonfinite_loss", "nonfinite_grad" (also: a GradScaler whose scale collapsed, every step
    #: skipped), "spike", "spike_skipped" (a lone spike: its batch left out; the forward pass ran,
    #: so BatchNorm statistics keep it), "nonfinite_loss_rolled_back", "nonfinite_grad_rolled_back"
    #: (a lone one: back to the last snapshot at the same rate), "progress_lost" (the recent
    #: median back at the start
    #: level), "diagnosed_unstable", "diagnosed_diverged", "probe" (the probe's verdict) or
    #: "probe_cut_short" (a probe ended by ``close()``)
    reason: str
    loss: float
    reference: float | None  #: the median of the recent good losses
    grad_norm: float | None
    lr_before: list[float]
    lr_after: list[float]
    restored_to: int  #: the step the restored snapshot was taken at; -1: nothing restored

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in data.items()}


class Guard:
    """Wrap the optimizer step (see the module docstring).

    ``spike_factor``: a loss this many times the first good loss (where training started) is a
    spike; so is one this many times the median of the last ``window`` good losses that is also
    twice the worst of them and undoes a quarter of the progress since the start (after
    ``warmup`` good steps; for a loss at or below zero, one more than this many times the
    window's spread above its worst); ``None``: only non-finite values are incidents. ``lr_factor``: rate
    multiplier per incident. ``snapshot_every``: good steps between snapshots (the latest is kept,
    and the best one; each is one copy of the parameters, buffers, gradients and optimizer state).
    ``snapshot``: ``"cpu"`` (host memory), ``"disk"`` (a private temporary file in
    ``snapshot_dir``) or ``"device"`` (the model's own device: on a GPU no transfer over the bus
    per snapshot, for two more copies of the state in GPU memory); bookkeeping runs every
    ``gcd(10, snapshot_every)`` good steps (the larger of that and ``gcd(25, snapshot_every)``
    after the first ``snapshot_every``), so a course check can come up to that many steps after
    ``diagnose_every``. ``max_retries``: incidents
    allowed since the last snapshot. ``confirm_spikes``: a spike is skipped (its batch's update
    left out, nothing else changed) unless another came within this many steps without
    ``SPIKE_CLEARED_STEPS`` (5) good steps of ordinary losses between them; a non-finite loss
    or gradient only rolls back to the last snapshot, at the same rate, unless a spike or another
    non-finite value came within this many steps; 0: every spike and non-finite value is an
    incident.
    ``check_grads``: also check the gradient norm before each step (one norm per step, 3-10% of a
    step on the smallest built-in examples; without it a non-finite gradient is caught one step
    later through the non-finite loss it causes, and the rollback undoes it).
    ``diagnose_every``: every that many good steps, when a cheap look at the recent losses (median
    30% above the lowest seen and by more than 2 of its noise widths, or a batch 5x the median)
    says the course may be off (a positive loss only), the losses
    since the last change of rate are diagnosed (:func:`lrkit.diagnose`, on at most 500 bin
    means); a run that is ``unstable`` or ``diverged`` (only ``diverged`` when outlier batches
    alone prompted the look) with at least ``min_confidence`` gets the diagnosis's cut (x0.3 or
    x0.1) even though no single step was an incident -- a diverged one after going back to the
    best snapshot (``keep_best``: of the verified snapshots keep the one whose last 10 losses
    were lowest; ``False``: the newest verified one). A diagnosis that finds nothing doubles the
    wait for the next one (up to 8x ``diagnose_every``; back to 1x after each of the guard's own
    changes of rate). ``None`` turns this off. ``min_lr_scale``: the guard raises
    :class:`GuardError` rather than let its own cuts (all of them together) take the rate below
    this share of where it started (a scheduler's decay does not count).
    ``scheduler``: an LR scheduler that keeps the guard's cuts: lrkit's through ``scale_rates``,
    torch's through its ``base_lrs`` (and CyclicLR's ``max_lrs``, a cosine's ``eta_min``,
    OneCycleLR's rates in the parameter groups, the schedulers a SequentialLR or
    ChainedScheduler runs); while the probe
    runs, the groups show this scheduler's rate between steps, so that a decay it makes then is
    kept. ``probe_steps``: length of the probe (a range test from
    ``10**-probe_decades`` x the failed rate up to it) that the first incident, or the first
    failing course check, starts instead of a fixed cut; 0 turns it off. ``sync_ranks``: under
    torch.distributed (DDP), judge the loss averaged over the ranks (one all-reduce of a scalar,
    with the read-back), so that every rank skips, rolls back and cuts at the same step and the
    replicas stay identical; default: with more than one rank, for a DDP/FSDP-wrapped model.
    ``watch_progress``: treat a run whose recent median is back at its starting level, after a
    clear fall, as an incident (``progress_lost``); turn it off for a loss that rises by design
    (a KL term annealed in, a curriculum that hardens the data).
    ``scaler``: the ``torch.amp.GradScaler`` of a mixed-precision loop whose closure backpropagates
    ``scaler.scale(loss)``: steps go through ``scaler.step(optimizer)`` and ``scaler.update()``,
    gradients are unscaled before ``check_grads`` reads them, and a non-finite gradient is the
    scaler's overflow to handle (it skips that update and lowers its scale), not an incident --
    unless the scale has collapsed (below 2**-10, or that share of its first value when lower)
    by the next snapshot: then the steps were all skipped, and it is a ``nonfinite_grad``
    incident. Snapshots keep the scaler's scale, and a rollback restores it.

    A rollback restores the model, the optimizer's state and torch's RNG states as they were at
    the snapshot, but keeps the parameter groups' hyperparameters (the rate, and what a
    scheduler keeps there) and the modules' train/eval modes as they are: it undoes steps, not
    the schedule's position or the loop's settings. It leaves no gradients behind.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        spike_factor: float | None = 5.0,
        window: int = 50,
        warmup: int = 10,
        lr_factor: float = 0.3,
        snapshot_every: int = 100,
        snapshot: str = "cpu",
        snapshot_dir: str | os.PathLike | None = None,
        max_retries: int = 5,
        confirm_spikes: int = 20,
        check_grads: bool = False,
        diagnose_every: int | None = 100,
        keep_best: bool = True,
        min_confidence: float = 0.8,
        min_lr_scale: float = 1e-4,
        probe_steps: int = 50,
        probe_decades: float = 3.0,
        scheduler: Any = None,
        sync_ranks: bool | None = None,
        watch_progress: bool = True,
        scaler: Any = None,
        logger: logging.Logger | str | None = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise LrkitError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise LrkitError(f"optimizer must be a torch.optim.Optimizer, got "
                             f"{type(optimizer).__name__}")
        from lrkit.adapters.torch import closure_required

        # numpy integers (from a config array) are the integers they stand for
        snapshot_every, max_retries, confirm_spikes, window, probe_steps, warmup = (
            plain_int(v) for v in (snapshot_every, max_retries, confirm_spikes, window,
                                   probe_steps, warmup))
        diagnose_every = plain_int(diagnose_every)
        reason = closure_required(type(optimizer))
        require(reason is None, f"the guard takes the optimizer's step itself: {reason}")
        require(spike_factor is None or (is_real(spike_factor) and spike_factor > 1),
                f"spike_factor must be a number > 1 (or None to ignore spikes), got "
                f"{spike_factor!r}")
        require(is_real(lr_factor) and 0 < lr_factor < 1,
                f"lr_factor must be a number in (0, 1), got {lr_factor!r}")
        require(snapshot_dir is None or isinstance(snapshot_dir, (str, os.PathLike)),
                f"snapshot_dir must be a directory path (a str or a Path), got {snapshot_dir!r}")
        require(logger is None or isinstance(logger, (str, logging.Logger, logging.LoggerAdapter)),
                f"logger must be a logging.Logger or a logger's name, got {logger!r}")
        require(isinstance(snapshot_every, int) and snapshot_every >= 1,
                f"snapshot_every must be an integer >= 1, got {snapshot_every!r}")
        require(isinstance(max_retries, int) and max_retries >= 0,
                f"max_retries must be an integer >= 0, got {max_retries!r}")
        require(isinstance(confirm_spikes, int) and confirm_spikes >= 0,
                f"confirm_spikes must be an integer >= 0 (0: act on every spike), got "
                f"{confirm_spikes!r}")
        require(isinstance(window, int) and window >= 3, f"window must be >= 3, got {window!r}")
        require(sync_ranks is None or isinstance(sync_ranks, bool),  # ("false" read as True)
                f"sync_ranks must be True, False or None (automatic), got {sync_ranks!r}")
        # (0 made the first step read the median of no losses: an IndexError; more than window
        # turned the spike, progress and course checks off for good, silently)
        require(isinstance(warmup, int) and 1 <= warmup <= window,
                f"warmup must be an integer from 1 to window ({window}), got {warmup!r}")
        require(snapshot in ("cpu", "disk", "device"),
                f"snapshot must be 'cpu', 'disk' or 'device', got {snapshot!r}")
        require(isinstance(probe_steps, int) and (probe_steps == 0 or probe_steps >= 10),
                f"probe_steps must be 0 (no probe) or an integer >= 10, got {probe_steps!r}")
        require(is_real(probe_decades) and 0.5 <= probe_decades <= 8,
                f"probe_decades must be between 0.5 and 8, got {probe_decades!r}")
        require(is_real(min_confidence) and 0 <= min_confidence <= 1,
                f"min_confidence must be between 0 and 1 (the diagnosis's confidence needed "
                f"for a cut), got {min_confidence!r}")
        require(is_real(min_lr_scale) and 0 < min_lr_scale <= 1,
                f"min_lr_scale must be in (0, 1] (the lowest share of the starting rate the "
                f"guard's cuts may reach), got {min_lr_scale!r}")
        require(scheduler is None or (callable(getattr(scheduler, "step", None))
                                      and getattr(scheduler, "optimizer", None) is optimizer),
                f"scheduler must be the torch scheduler that sets this optimizer's rates (a "
                f"torch.optim.lr_scheduler object, or lrkit.schedules.to_torch(optimizer, "
                f"...)), built on the same optimizer, or None (a wrapper such as accelerate's "
                f"AcceleratedScheduler: pass its .scheduler); got {scheduler!r}")
        require(scaler is None or all(hasattr(scaler, name) for name in
                                      ("scale", "step", "update", "unscale_")),
                f"scaler must be a torch.amp.GradScaler (or None), got {type(scaler).__name__}")
        self.model = model
        self.optimizer = optimizer
        # GradScaler(enabled=use_amp) with use_amp off scales and skips nothing: no scaler at all
        # (else an inf gradient would pass for the scaler's overflow and reach the parameters)
        enabled = getattr(scaler, "is_enabled", None)
        self.scaler = scaler if scaler is not None and (enabled is None or enabled()) else None
        self._unscaled = False  #: unscale_ ran this step (the guard's own, for check_grads)
        #: a scale below this has collapsed (see SCALE_COLLAPSED); set at the first snapshot
        self._scale_floor: float | None = None
        self.spike_factor = spike_factor
        self.warmup = warmup
        self.lr_factor = float(lr_factor)
        self.snapshot_every = snapshot_every
        self.max_retries = max_retries
        self.confirm_spikes = confirm_spikes
        self._last_spike = -math.inf  #: the step of the last spike (skipped or acted on)
        self._good_at_spike = 0  #: the good steps before it
        self._last_nonfinite = -math.inf  #: ... of the last non-finite loss or gradient
        self.check_grads = check_grads
        require(diagnose_every is None
                or (isinstance(diagnose_every, int) and diagnose_every >= 20),
                f"diagnose_every must be an integer >= 20 or None, got {diagnose_every!r}")
        self.diagnose_every = diagnose_every
        self.min_confidence = min_confidence
        self.min_lr_scale = min_lr_scale
        #: good steps between bookkeeping rounds: a divisor of snapshot_every, so that snapshots
        #: come exactly every snapshot_every steps; 10 at most while the early snapshots come
        #: sooner (every half of the steps so far), 25 at most after (on a 0.15 ms step each
        #: round costs ~1 us a step at 10 steps apart)
        self._period = math.gcd(10, snapshot_every)
        # never sooner than the early rounds (gcd(25, 30) alone is 5: twice the rounds)
        self._late_period = max(self._period, math.gcd(25, snapshot_every))
        self.probe_steps = probe_steps
        self.probe_decades = float(probe_decades)
        self._probe: RateProbe | None = None
        self._fast = False  #: whether step() may take its short path (see _fast_path_holds)
        self._grads_checked = False  #: whether a first good step found gradients
        self._probe_base: list[float] = []  #: the rates that failed, which the probe scales
        self._unpause: contextlib.ExitStack | None = None  #: lrkit schedulers paused by a probe
        self._probed = False
        self._history: list[float] = []  # good losses since the last change of rate (binned)
        self._reset_history()
        self.scheduler = scheduler
        self._sync = should_sync(sync_ranks, model)
        self._group = group_of(model)  #: the ranks the model syncs with (None: all)
        first = next(model.parameters(), None)
        self._device = first.device if first is not None else torch.device("cpu")
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger or LOGGER
        self.interventions: list[Intervention] = []
        self.steps = 0  #: steps attempted
        self.good_steps = 0
        self.skipped = False  #: whether the last step was skipped
        self._recent: collections.deque[float] = collections.deque(maxlen=window)
        self._snapshots = SnapshotKeeper(model, optimizer, where=snapshot,
                                         directory=snapshot_dir, keep_best=keep_best,
                                         agree=self._on_every_rank if self._sync else None)
        self._n_groups = len(optimizer.param_groups)  #: at the last snapshot
        self._since_snapshot = 0
        self._retries = 0
        self._start: float | None = None  #: the first good loss: the level training started at
        self._reference: float | None = None
        self._recent_max = math.inf
        self._spike_threshold = math.inf
        self._start_level: float | None = None  #: median of the first ``warmup`` good losses
        #: the lowest median of the recent losses since the last rollback, and its noise
        self._lowest_median, self._lowest_noise, self._lowest_spread_n = math.inf, 0.0, (0.0, 1)
        #: the progress check (``watch_progress``): the median of the first full window, the
        #: lowest full-window median since the last rollback and its spread (interquartile range)
        self.watch_progress = watch_progress
        self._progress_start: float | None = None
        self._lowest_full, self._lowest_spread, self._undone_checks = math.inf, 0.0, 0
        #: the product of the guard's own cuts so far (what min_lr_scale bounds: a scheduler's
        #: decay, a warmup from 0 or a plateau rule's cuts are not the guard's)
        self._cut_scale = 1.0
        self._guard_lrs: list[float] | None = None  #: the rates as the guard's last cut set them
        #: while probing, a torch scheduler's rate is the "live" one the probe scales each step:
        #: the groups show it between steps, so that the scheduler's step() works on it (a decay
        #: made during the probe is kept); without one they show the next probe rate
        self._probe_follows = scheduler is not None and not hasattr(scheduler, "scale_rates")

    # settings the short path through step() depends on: changing one closes it until the full
    # checks have looked again (a gradient check switched on mid-run applies at the next step)
    @property
    def check_grads(self) -> bool:
        return self._check_grads

    @check_grads.setter
    def check_grads(self, value: bool) -> None:
        self._check_grads = bool(value)
        self._fast = False

    @property
    def scaler(self) -> Any:
        return self._scaler

    @scaler.setter
    def scaler(self, value: Any) -> None:
        self._scaler = value
        self._fast = False

    # -- snapshots ----------------------------------------------------------------------------
    def take_snapshot(self) -> None:
        """Snapshot the current state now (also done automatically every ``snapshot_every``;
        this one checks the parameters first and keeps the older snapshot if one is not finite).

        The guard keeps two copies: the latest snapshot, and a verified one -- a snapshot that
        good steps followed -- which with ``keep_best`` is the verified snapshot whose last 10
        losses had the lowest median, without it the newest verified one."""
        if self._parameters_finite():
            self._store_snapshot()

    def _store_snapshot(self, scaler_state: dict | None = None,
                        level: float | None = None) -> None:
        """Snapshot the current state, unchecked (see :mod:`lrkit.diagnose.snapshots`), with
        the scaler's scale (``scaler_state``: already read) and its level (default: the median
        of the last few good losses)."""
        if level is None:
            # the state's own level: the median of its last few losses (a longer window lags,
            # and would rank a state that is already sliding by the better ones before it)
            last = sorted(itertools.islice(reversed(self._recent), LEVEL_WINDOW))
            level = last[len(last) // 2] if last else math.inf
        self._snapshots.take(self.steps, level, extra=scaler_state or self._scaler_state())
        self._n_groups = len(self.optimizer.param_groups)
        self._since_snapshot = 0
        self._retries = 0

    def _scaler_state(self) -> dict | None:
        """The scaler's scale and growth count (one read-back, once per snapshot): a rollback
        puts them back with the model (a scale that collapsed to 0 while every step overflowed
        turned every later step into NaNs, rollbacks or not)."""
        if self.scaler is None:
            return None
        state = self.scaler.state_dict()
        if not state:
            return None
        state = {key: state[key] for key in ("scale", "_growth_tracker") if key in state}
        if self._scale_floor is None and "scale" in state:
            self._scale_floor = min(1.0, state["scale"]) * SCALE_COLLAPSED
        return state

    def _parameters_finite(self) -> bool:
        params = [p.detach() for g in self.optimizer.param_groups for p in g["params"]
                  if p.is_floating_point()]
        if not params:
            return True
        norms = torch._foreach_norm(params)
        try:
            stacked = torch.stack(norms)  # one device (dtypes are promoted): four ops in all
        except RuntimeError:
            stacked = torch.stack([n.float().cpu() for n in norms])
        return bool(stacked.isfinite().all())

    def _set_lrs(self, values: list[float]) -> None:
        for group, value in zip(self.optimizer.param_groups, values):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    def _restore(self, snapshot: Snapshot) -> None:
        """Restore ``snapshot`` but keep the parameter groups' hyperparameters as they are now:
        a rollback undoes the steps, not the schedule's position or the guard's own cuts (the
        rate, and what a scheduler keeps in the groups: OneCycleLR's peak and momentum); nor the
        modules' train/eval modes, which the loop sets and steps never change (a BatchNorm
        frozen with ``.eval()`` after the snapshot went back to updating its statistics)."""
        kept = group_values(self.optimizer)
        modes = [(module, module.training) for module in self.model.modules()]
        snapshot.restore()
        for module, training in modes:
            if module.training != training:
                module.training = training
        self._since_snapshot = 0  # the steps since the snapshot are undone
        scaler_state = getattr(snapshot, "extra", None)
        if self.scaler is not None and scaler_state:
            # the scale with the state it was taken with (all the rest as it is now)
            self.scaler.load_state_dict({**self.scaler.state_dict(), **scaler_state})
        put_group_values(self.optimizer, kept)  # the same objects (a tensor rate), as they were

    def _cut(self, factor: float, restore: Snapshot | None, *, reason: str, loss: float,
             reference: float | None = None, grad_norm: float | None = None) -> list[float]:
        """Restore ``restore`` (if given), then set every rate to ``factor`` x its value before
        (the incident that asks for it: ``reason`` ... ``grad_norm``, recorded if it raises)."""
        lr_before = self.lrs
        if restore is not None:
            # first back to a good state, so that the model is sound even when this raises
            self._restore(restore)
            # the recent losses came from later, better states than the one restored: against
            # them the restored model's ordinary losses would look like spikes
            self._forget_recent()
        if self._cut_scale * factor < self.min_lr_scale:
            self.interventions.append(Intervention(
                self.steps, reason, loss, reference, grad_norm, lr_before, lr_before,
                self._snapshots.latest_step if restore is not None else -1))
            raise GuardError(
                f"the guard would cut the rate to {lr_before[0] * factor:.3g}, below "
                f"{self.min_lr_scale:g} x the rate it started with (its cuts would multiply the "
                f"rate by {self._cut_scale * factor:.3g} in all), and the loss still misbehaves: "
                "the problem is probably not the rate (check the data, the loss and the model), "
                "or lower min_lr_scale" + self._cuts_undone(lr_before) + ". Interventions: "
                + ", ".join(f"step {i.step} {i.reason}" for i in self.interventions[-6:]))
        self._cut_scale *= factor
        self._set_lrs([lr * factor for lr in lr_before])
        self._guard_lrs = self.lrs
        if self.scheduler is not None:
            _scale_schedule(self.scheduler, factor, self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        self._reset_history()
        return lr_before

    def _on_every_rank(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank of the model's group (one all-reduce, at a
        rollback only)."""
        return min_over_ranks(int(flag), self._device, self._group) == 1

    def _cuts_undone(self, lr_before: list[float]) -> str:
        """For a GuardError: a hint when the rate is not the one the guard's last cut set and no
        scheduler was given (a scheduler's step undid every cut, and the error blamed the data)."""
        if (self.scheduler is None and self._guard_lrs is not None
                and any(not math.isclose(a, b, rel_tol=1e-9)
                        for a, b in zip(lr_before, self._guard_lrs))):
            return ("; the rate was not the guard's own: if a scheduler sets the rate each step, "
                    "pass it as Guard(scheduler=...), or it undoes the guard's cuts")
        return ""

    @property
    def lrs(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def _grad_norms(self) -> list[torch.Tensor]:
        if self.scaler is not None:
            if not self._scaler_unscaled():  # the closure may have unscaled, to clip
                self.scaler.unscale_(self.optimizer)
            self._unscaled = True
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"]
                 if p.grad is not None]
        dense = [g for g in grads if not g.is_sparse]
        # a sparse gradient (an Embedding(sparse=True)): the norm of its values
        sparse = [torch.linalg.vector_norm(g.coalesce().values()) for g in grads if g.is_sparse]
        return (list(torch._foreach_norm(dense)) if dense else []) + sparse

    # -- the step -----------------------------------------------------------------------------
    def _check_gradients(self) -> None:
        """At the first good step: refuse a closure after which no parameter the optimizer
        trains has a gradient (it forgot ``loss.backward()``): the guard took 300 steps that
        changed nothing, with no incident, and a Monitor then called the run too slow."""
        if not any(param.grad is not None for group in self.optimizer.param_groups
                   for param in group["params"]):
            raise LrkitError(
                "after the guarded closure, none of the optimizer's parameters has a gradient, "
                "so the step would change nothing: call loss.backward() (or "
                "scaler.scale(loss).backward()) in the closure before returning the loss, and "
                "build the optimizer from the model's parameters")
        self._grads_checked = True

    def _optimizer_step(self) -> None:
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._unscaled = False

    def _scaler_unscaled(self) -> bool:
        """Whether ``unscale_`` ran on this optimizer since the scaler's last ``update()``: by
        the guard (``check_grads``) or by the closure (to clip the gradients)."""
        if self.scaler is None:
            return False
        states = getattr(self.scaler, "_per_optimizer_states", None)
        try:
            return states[id(self.optimizer)]["stage"].name != "READY"
        except (TypeError, KeyError, AttributeError):  # another scaler: the guard's own record
            return self._unscaled

    def _release_scaler(self) -> None:
        """A step left out after ``unscale_`` (the guard's or the closure's): the scaler must
        forget it before the next one."""
        if self._scaler_unscaled():
            self.scaler.update()
        self._unscaled = False

    def step(self, closure: Callable[[], Any]) -> float:
        """Run ``closure`` (zero_grad, forward, backward, return the loss), check the loss and the
        gradients, and take the optimizer step or roll back. Returns the loss as a float (the
        offending value when the step was skipped; see ``skipped``)."""
        if self._fast and len(self.optimizer.param_groups) == self._n_groups:
            # the common case in few lines (on a 0.07 ms step every line of Python shows): a
            # scalar tensor loss, finite and under the spike threshold; anything else goes on
            # through the full checks, from the same point
            self.steps += 1
            loss = closure()
            if type(loss) is torch.Tensor and loss.dim() == 0:
                value = loss.item()
                if value <= self._spike_threshold and _isfinite(value):
                    self.optimizer.step()
                    self.skipped = False
                    self.good_steps += 1
                    self._recent.append(value)
                    pending = self._pending
                    pending.append(value)
                    if len(pending) >= self._period:
                        self._periodic()
                    return value
            return self._judge(loss)
        if not callable(closure):
            raise LrkitError(f"guard.step needs the closure that runs one step (zero_grad, "
                             f"forward, backward, return the loss), got {closure!r}")
        if self._snapshots.latest is None or len(self.optimizer.param_groups) != self._n_groups:
            # (a group added since the last snapshot, as gradual unfreezing does: a snapshot
            # without it could not be restored into this optimizer)
            self.take_snapshot()
            if self._snapshots.latest is None:
                raise LrkitError(
                    "the model has a parameter that is not finite (NaN or inf) before the guard's "
                    "first step, so there is no sound state to roll back to; check the model's "
                    "initialisation or the checkpoint it was loaded from")
        self.steps += 1
        if self._probe is not None:
            if self._probe_follows:  # the scheduler's rate now: the probe scales it
                self._probe_base = self.lrs
            self._set_lrs([lr * self._probe.current_scale for lr in self._probe_base])
        self._unscaled = False
        try:
            loss = closure()
        except BaseException:
            if self._probe is not None and self._probe_follows:
                # the groups hold the probe's scaled rate: the next step would read it as the
                # scheduler's and scale it again (a loop that skips a failing batch ran on
                # ~300x too slow)
                self._set_lrs(self._probe_base)
            raise
        return self._judge(loss)

    def _judge(self, loss: Any) -> float:
        """Check what the closure returned (and the gradients), then step, skip or roll back."""
        if not isinstance(loss, torch.Tensor):
            loss = _as_loss(loss)  # a dict or model output holding the loss, or a number
        if isinstance(loss, torch.Tensor) and loss.dim() != 0 and loss.numel() != 1:
            raise LrkitError(f"the guarded closure returned a tensor of shape "
                             f"{tuple(loss.shape)}; return the scalar loss (e.g. loss.mean())")
        grad_norm = None
        if isinstance(loss, torch.Tensor):
            if self.check_grads:
                norms = self._grad_norms()  # unscaled first when there is a scaler
                # the global L2 norm (what clip_grad_norm_ reports), not a sum of norms
                total = (torch.linalg.vector_norm(torch.stack(
                    [n.float().to(loss.device) for n in norms])) if norms
                    else torch.zeros((), device=loss.device))
                stacked = torch.stack([loss.detach().reshape(()).float(), total])
                host = (mean_over_ranks(stacked, group=self._group) if self._sync
                        else stacked).cpu().tolist()
                loss_value, grad_norm = host  # one sync for both
            else:
                # the one sync (item: no detached copy, half the cost)
                loss_value = (mean_over_ranks(loss, group=self._group).item() if self._sync
                              else loss.item())
        else:
            loss_value = float(loss)
            if self._sync:
                loss_value = mean_over_ranks(torch.tensor([loss_value]), self._device,
                                             self._group).item()
            if self.check_grads:
                norms = self._grad_norms()
                grad_norm = (math.hypot(*torch.stack([n.float().cpu() for n in norms]).tolist())
                             if norms else 0.0)

        if self._probe is not None:
            return self._probe_step(loss_value, grad_norm)

        reason = None
        reference = None
        if not math.isfinite(loss_value):
            reason = "nonfinite_loss"
        elif grad_norm is not None and not math.isfinite(grad_norm) and self.scaler is None:
            reason = "nonfinite_grad"  # (with a scaler: its overflow, skipped by scaler.step)
        elif self.spike_factor is not None:
            if len(self._recent) < self.warmup:
                # the first steps: a blow-up far above the first loss is never a healthy step
                if self._start is None:
                    self._start = abs(loss_value) if loss_value != 0 else None
                elif loss_value > self.spike_factor * self._start:
                    reason, reference = "spike", self._start
            else:
                if self._reference is None:
                    self._update_reference()
                reference = self._reference
                if loss_value > self._spike_threshold:
                    reason = "spike"
        if reason is not None:
            window = self.confirm_spikes
            last_spike = -math.inf if self._spike_cleared() else self._last_spike
            if reason == "spike":
                lone = window and self.steps - last_spike > window
                self._last_spike, self._good_at_spike = self.steps, self.good_steps
            else:  # lone: no spike and no other non-finite value just before it
                lone = window and self.steps - max(last_spike, self._last_nonfinite) > window
                self._last_nonfinite = self.steps
            if lone and reason == "spike":
                # a lone spike: skip the batch and test the same parameters on the next ones; a
                # bad batch passes, bad parameters spike again and are rolled back then
                self._skip(loss_value, reference, grad_norm)
            elif lone and self._retries < self.max_retries:
                # a lone non-finite loss or gradient: most often one bad batch (a corrupt sample,
                # a log of 0), which says nothing about the rate; its forward pass may have put
                # NaNs in running statistics, so back to the last snapshot, at the same rate; a
                # second incident within confirm_spikes steps is the rate's, and is probed
                self._roll_back(reason, loss_value, reference, grad_norm)
            else:
                self._intervene(reason, loss_value, reference, grad_norm)
            return loss_value

        if not self._grads_checked:
            self._check_gradients()
        self._optimizer_step()
        self.skipped = False
        self.good_steps += 1
        self._recent.append(loss_value)
        self._pending.append(loss_value)
        if len(self._pending) >= self._period:  # the rest of the bookkeeping, every few steps
            self._periodic()
        self._fast = self._fast_path_holds()
        return loss_value

    def _spike_cleared(self) -> bool:
        """Whether the good steps since the last spike cleared the parameters it was skipped
        with (see ``SPIKE_CLEARED_STEPS``): read only at the next incident, never per step."""
        count = self.good_steps - self._good_at_spike
        if count < SPIKE_CLEARED_STEPS or len(self._recent) < self.warmup:
            return False
        since = sorted(itertools.islice(reversed(self._recent), count))
        if len(since) < SPIKE_CLEARED_STEPS:  # a rollback came between: not a test of them
            return False
        window = sorted(self._recent)
        return since[len(since) // 2] <= window[(3 * len(window)) // 4]

    def _fast_path_holds(self) -> bool:
        """Whether the next good step can take ``step``'s short path: no scaler, gradient check
        or cross-rank mean to do, no probe running, a snapshot to fall back on, and a spike
        threshold in force (past the warmup, a reference level read)."""
        return (self.scaler is None and not self.check_grads and not self._sync
                and self._probe is None and self._snapshots.latest is not None
                and len(self._recent) >= self.warmup and self._reference is not None)

    def _periodic(self) -> None:
        """Every ``_period`` good steps: refresh the spike threshold, record the losses for the
        course check (and run it when due), take a snapshot when due. Batched so that a healthy
        step costs a read-back, a comparison and two appends."""
        pending, self._pending = self._pending, []
        if len(self._recent) >= self.warmup:
            self._update_reference()
            if self.watch_progress and self._progress_undone():
                # no single batch spikes when a run slides back to where it started (dead units,
                # a collapse to predicting the mean): caught here, not a course check 100s of
                # steps later, and sent back to its best state
                self._intervene("progress_lost", self._reference, None, None, to_best=True)
                return
        self._since_snapshot += len(pending)
        if self.diagnose_every:
            self._record(pending)
            self._since_check += len(pending)
            if self._since_check >= self._check_interval:
                self._since_check = 0
                # the full diagnosis only when a cheap look says the course may be off: the
                # recent median well above the lowest one seen, or batches far above the median
                ref, lowest = self._reference, self._lowest_median
                # (30% above the lowest median, and by more than that median's noise: the lowest
                # of many medians of noisy batches is a dip of the noise, and a flat run with
                # heavy-tailed batches sat 30% above it and was diagnosed, and cut, again and
                # again)
                level_off = (ref is not None and ref > 1.3 * lowest
                             and ref - lowest > LEVEL_NOISE * self._lowest_noise)
                if level_off or (ref is not None and self._recent_max > 5.0 * abs(ref)):
                    # a diagnosis costs ~1 ms: one that finds nothing doubles the wait for the
                    # next (up to 8x diagnose_every), so noisy healthy runs do not pay it often
                    before = len(self.interventions)
                    # outlier batches alone, with the level at its lowest, only count when the
                    # run diverged: an "unstable" call on a falling, heavy-tailed batch curve is
                    # the diagnosis's commonest miss, and lone spikes are handled per step
                    self._check_course(act_on=("unstable", "diverged") if level_off
                                       else ("diverged",))
                    if self._probe is not None:
                        return  # the course check rolled back and started a probe
                    if len(self.interventions) == before:
                        self._check_interval = min(2 * self._check_interval,
                                                   8 * self.diagnose_every)
        # early in a run, where blow-ups are likeliest and progress fastest, snapshots come
        # sooner (every half of the steps so far, at least 10 apart), so a rollback loses less
        if self._since_snapshot >= min(self.snapshot_every, max(10, self.good_steps // 2)):
            state = self._scaler_state()
            if (state is not None and self._scale_floor is not None
                    and state.get("scale", 1.0) < self._scale_floor):
                # every recent step overflowed, and the scaler skipped it: the gradients are not
                # finite even unscaled (a NaN, not an fp16 overflow), the model has not moved,
                # and the "good" steps were none: an incident, before it is snapshotted
                self._intervene("nonfinite_grad", self._recent[-1] if self._recent else math.nan,
                                self._reference, math.inf)
                return
            self._store_snapshot(state)
        if self.good_steps >= self.snapshot_every:
            self._period = self._late_period
        self._fast = self._fast_path_holds()

    def _progress_undone(self) -> bool:
        """Whether the recent median is back at the level training started from after the run
        had made real progress, at two checks in a row (see ``PROGRESS_*``). Medians of full
        windows only: the start is the median of the first ``window`` good losses, and a fall
        must stand out of the noise of such a median (its spread at the lowest point), so that a
        flat noisy run never counts as having fallen and risen."""
        start, lowest, reference = self._progress_start, self._lowest_full, self._reference
        undone = False
        if (start is not None and reference is not None and start > 0
                and math.isfinite(lowest)):
            fall = start - lowest
            noise = self._lowest_spread / math.sqrt(self._recent.maxlen or 1)
            undone = (fall >= PROGRESS_MADE * start and fall >= PROGRESS_NOISE * noise
                      and reference >= start - PROGRESS_KEPT * fall)
        self._undone_checks = self._undone_checks + 1 if undone else 0
        return self._undone_checks >= 2

    def _forget_recent(self) -> None:
        """After a rollback: the recent losses (and the lowest level) were of undone states."""
        self._lowest_median, self._lowest_noise, self._lowest_spread_n = math.inf, 0.0, (0.0, 1)
        self._lowest_full, self._lowest_spread, self._undone_checks = math.inf, 0.0, 0
        self._recent.clear()
        self._reference = None
        self._spike_threshold = math.inf
        self._fast = False

    def _update_reference(self) -> None:
        """Median and worst of the recent good losses (refreshed at each bookkeeping round)."""
        ordered = sorted(self._recent)
        self._reference = reference = ordered[len(ordered) // 2]
        self._recent_max = ordered[-1]
        if self._start_level is None:
            self._start_level = self._reference
        n = len(ordered)
        spread = ordered[(3 * n) // 4] - ordered[n // 4]  # the interquartile range
        if reference < self._lowest_median:
            self._lowest_median, self._lowest_spread_n = reference, (spread, n)
        # the noise of that lowest median: the larger of its own window's spread and the
        # current one's (a window of a few losses can look calm by chance), over sqrt(its size)
        lowest_spread, lowest_n = self._lowest_spread_n
        self._lowest_noise = max(spread, lowest_spread) / math.sqrt(lowest_n)
        if len(ordered) == self._recent.maxlen:  # a full window: for the progress check
            if self._progress_start is None:
                self._progress_start = reference
            if reference < self._lowest_full:
                self._lowest_full, self._lowest_spread = reference, spread
        # a spike stands out of the recent worst batch (heavy-tailed batch losses near
        # convergence are not spikes), and either blows past the level training started at or is
        # far above the recent median and undoes a quarter of the progress: one threshold, so
        # that the check per step is one comparison
        if self.spike_factor is None:
            self._spike_threshold = math.inf
            return
        start = max(self._start_level or 0.0, reference)
        if start <= 0:
            # a loss that started and stays at or below zero (a log-likelihood of a density, a
            # loss with a constant offset): multiples of it mean nothing (5x a negative level is
            # far below it, and every ordinary batch was a spike); a spike is then a loss more
            # than spike_factor times the recent spread above the worst recent batch
            span = self._recent_max - ordered[0]
            self._spike_threshold = (self._recent_max + self.spike_factor * span
                                     if span > 0 else math.inf)
            return
        past_start = self.spike_factor * start
        off_course = (max(self.spike_factor * reference, reference + 0.25 * (start - reference))
                      if reference > 0 else math.inf)
        self._spike_threshold = max(2.0 * self._recent_max, min(past_start, off_course))

    def _reset_history(self) -> None:
        """After a change of rate: the course check starts afresh, at its shortest interval."""
        self._history = []
        self._pending = []
        self._stride, self._bucket_sum, self._bucket_n, self._since_check = 1, 0.0, 0, 0
        self._check_interval = self.diagnose_every or 0

    def _record(self, values: list[float]) -> None:
        """Keep the losses since the last change of rate in at most 500 bins: each bin holds the
        mean of ``_stride`` steps, and the stride doubles (pairs merged) when the list is full."""
        total, count = self._bucket_sum, self._bucket_n
        stride, history = self._stride, self._history
        if stride == 1 and len(history) + len(values) < 500:
            history.extend(values)  # one bin per step: the loop below, in one call
            return
        for value in values:
            total += value
            count += 1
            if count < stride:
                continue
            history.append(total / count)
            total, count = 0.0, 0
            if len(history) >= 500:
                history = [(history[i] + history[i + 1]) / 2
                           for i in range(0, len(history) - 1, 2)]
                stride *= 2
        self._bucket_sum, self._bucket_n = total, count
        self._stride, self._history = stride, history

    def _check_course(self, act_on: tuple[str, ...] = ("unstable", "diverged")) -> None:
        """Diagnose the losses since the last change of rate; a run whose verdict is in
        ``act_on`` gets the diagnosis's cut, even if no single step was an incident."""
        from lrkit.diagnose.classify import diagnose

        history = self._history
        if len(history) < 20 or min(history) <= 0:
            # the diagnosis reads ratios of a positive loss (5x its start, a bounce by a share
            # of the progress): on a loss at or below zero it calls flat noise "diverged"
            return
        result = diagnose(history)
        if (result.verdict not in act_on or result.lr_factor is None
                or result.confidence < self.min_confidence):
            return
        reason = f"diagnosed_{result.verdict}"
        if self.probe_steps and not self._probed:
            # measure the rate to go on with, from the best state seen (see _start_probe)
            self._snapshots.fall_back()
            self._start_probe(reason, history[-1], None, None)
            return
        # a run that diverged goes back to its best snapshot, which is the rollback target from
        # then on (the latest is of the diverging stretch); an unstable one just slows down
        restore = None
        if result.verdict == "diverged" and self._snapshots.best is not None:
            self._snapshots.fall_back()
            restore = self._snapshots.latest
        lr_before = self._cut(result.lr_factor, restore, reason=reason, loss=history[-1])
        restored_to = self._snapshots.latest_step if restore is not None else -1
        self.interventions.append(Intervention(self.steps, reason, history[-1], None, None,
                                               lr_before, self.lrs, restored_to))
        self.logger.warning("lrkit guard step %d: the last %d losses look %s (%s); %srate %s -> %s",
                            self.steps, len(history), result.verdict,
                            result.reasons[0] if result.reasons else "",
                            f"restored the best snapshot (step {restored_to}), "
                            if restore is not None else "", _fmt(lr_before), _fmt(self.lrs))

    def _skip(self, loss: float, reference: float | None, grad_norm: float | None) -> None:
        """Leave out one batch's update (a lone spike): no rollback, no change of rate."""
        self.skipped = True
        self.optimizer.zero_grad(set_to_none=True)
        self._release_scaler()
        lrs = self.lrs
        self.interventions.append(Intervention(self.steps, "spike_skipped", loss, reference,
                                               grad_norm, lrs, lrs, -1))
        self.logger.info("lrkit guard step %d: a lone spike (loss %.4g%s); batch skipped, the "
                         "next batches test the same parameters", self.steps, loss,
                         _versus(loss, reference))

    def _roll_back(self, reason: str, loss: float, reference: float | None,
                   grad_norm: float | None) -> None:
        """Back to the last sound snapshot with the rate unchanged (a lone non-finite value)."""
        self.skipped = True
        lrs = self.lrs
        self._release_scaler()
        self._retries += 1
        self._restore(self._snapshots.rollback_target())
        # after the restore, which puts back the snapshot's gradients (of a step already
        # applied): a loop that accumulates micro-batches before the next step added them in
        self.optimizer.zero_grad(set_to_none=True)
        self._forget_recent()
        # the course check starts afresh too: the restored state's losses, above those of the
        # undone steps, would read as a rebound
        self._reset_history()
        self.interventions.append(Intervention(self.steps, f"{reason}_rolled_back", loss,
                                               reference, grad_norm, lrs, lrs,
                                               self._snapshots.latest_step))
        self.logger.warning(
            "lrkit guard step %d: a lone %s (loss %.4g); restored the snapshot of step %d, rate "
            "unchanged, batch skipped; another incident within %d steps is taken as the rate's",
            self.steps, reason.replace("_", " "), loss, self._snapshots.latest_step,
            self.confirm_spikes)

    def _intervene(self, reason: str, loss: float, reference: float | None,
                   grad_norm: float | None, *, to_best: bool = False) -> None:
        """Roll back (``to_best``: to the best verified snapshot, for a run that slid back over
        many steps) and probe the rate, or on later incidents cut it."""
        self.skipped = True
        lr_before = self.lrs
        self.optimizer.zero_grad(set_to_none=True)
        self._release_scaler()
        if self._retries >= self.max_retries:
            # back to a sound state first, as before any GuardError: the parameters that gave
            # this loss may be broken (an update from a non-finite gradient), and the caller may
            # save or evaluate the model after catching the error
            self._restore(self._snapshots.rollback_target())
            self._forget_recent()
            self.optimizer.zero_grad(set_to_none=True)
            record = Intervention(self.steps, reason, loss, reference, grad_norm, lr_before,
                                  lr_before, self._snapshots.latest_step)
            self.interventions.append(record)
            raise GuardError(
                f"training is still failing ({reason.replace('_', ' ')}, loss {loss:.4g}) after "
                f"{self.max_retries} rollbacks (with any rate cuts, to {lr_before[0]:.3g}) since "
                f"step {self._snapshots.latest_step}; the problem is probably not the rate alone "
                "(check the data, the loss and the model) -- or raise max_retries"
                + self._cuts_undone(lr_before) + ". Interventions: "
                + ", ".join(f"step {i.step} {i.reason}" for i in self.interventions[-6:]))
        self._retries += 1
        if to_best:
            self._snapshots.lowest()
        if self.probe_steps and not self._probed:
            self._start_probe(reason, loss, reference, grad_norm)
            return
        self._cut(self.lr_factor, self._snapshots.rollback_target(), reason=reason, loss=loss,
                  reference=reference, grad_norm=grad_norm)
        record = Intervention(self.steps, reason, loss, reference, grad_norm, lr_before, self.lrs,
                              self._snapshots.latest_step)
        self.interventions.append(record)
        self.logger.warning(
            "lrkit guard step %d: %s (loss %.4g%s); restored the snapshot of step %d, rate %s -> "
            "%s, batch skipped (retry %d of %d)", self.steps, reason.replace("_", " "), loss,
            _versus(loss, reference),
            self._snapshots.latest_step, _fmt(lr_before), _fmt(self.lrs), self._retries,
            self.max_retries)

    # -- the probe: a short range test that measures the rate to go on with ------------------
    @property
    def probing(self) -> bool:
        """Whether the guard is measuring a rescue rate (its steps are undone at the end)."""
        return self._probe is not None

    def _start_probe(self, reason: str, loss: float, reference: float | None,
                     grad_norm: float | None) -> None:
        """Roll back, then spend the next ``probe_steps`` steps ramping the rate up to the one
        that failed (see :mod:`lrkit.diagnose.probe`)."""
        from lrkit.schedules.torch_scheduler import paused

        self._probe_base = self.lrs
        self._restore(self._snapshots.rollback_target())
        # the probe's steps are undone: an lrkit scheduler must not count them
        self._unpause = contextlib.ExitStack()
        self._unpause.enter_context(paused(self.optimizer))
        self.optimizer.zero_grad(set_to_none=True)
        self._probed = True
        self._probe = RateProbe(self.probe_steps, self.probe_decades)
        self._fast = False
        first = [lr * self._probe.current_scale for lr in self._probe_base]
        if not self._probe_follows:
            self._set_lrs(first)
        self.interventions.append(Intervention(self.steps, reason, loss, reference, grad_norm,
                                               self._probe_base, first,
                                               self._snapshots.latest_step))
        self.logger.warning(
            "lrkit guard step %d: %s (loss %.4g%s); restored the snapshot of step %d and probing "
            "the rate for up to %d steps (%s up to %s); these steps are undone afterwards",
            self.steps, reason.replace("_", " "), loss,
            _versus(loss, reference),
            self._snapshots.latest_step, self.probe_steps, _fmt(first), _fmt(self._probe_base))

    def _probe_step(self, loss_value: float, grad_norm: float | None) -> float:
        assert self._probe is not None
        probe = self._probe
        if grad_norm is not None and not math.isfinite(grad_norm) and self.scaler is None:
            loss_value = math.inf
        if math.isfinite(loss_value):
            self._optimizer_step()
        else:
            self._release_scaler()
        self.skipped = True  # not a normal step: the probe's steps are rolled back when it ends
        probe.record(loss_value)
        if probe.done:
            self._finish_probe()
        elif self._probe_follows:  # back to the scheduler's rate, for its step() to work on
            self._set_lrs(self._probe_base)
        else:  # show the next probe rate already (step sets it again)
            self._set_lrs([lr * probe.current_scale for lr in self._probe_base])
        return loss_value

    def _finish_probe(self) -> None:
        """Roll back again and go on at the probe's suggestion (never above a plain cut)."""
        assert self._probe is not None and self._snapshots.latest is not None
        probe, self._probe = self._probe, None
        self._resume_schedules()
        scale, how = probe.verdict()
        factor = min(scale, self.lr_factor)
        keep = probe.still_falling  # the probe's last state is its best: go on from it
        self._set_lrs(self._probe_base)
        lr_before = self._cut(factor, None if keep else self._snapshots.latest, reason="probe",
                              loss=probe.losses[-1])
        self._forget_recent()  # losses from before the probe, at the rate that failed
        self.interventions.append(Intervention(self.steps, "probe", probe.losses[-1], None, None,
                                               lr_before, self.lrs,
                                               -1 if keep else self._snapshots.latest_step))
        if keep:
            # its level: the probe's last losses (the recent good losses were just forgotten,
            # and an unknown level could never become the best snapshot)
            last = sorted(probe.losses[-LEVEL_WINDOW:])
            if self._parameters_finite():
                self._store_snapshot(level=last[len(last) // 2])
        self.logger.warning(
            "lrkit guard step %d: the probe's range test (%d steps) %s; rate %s -> %s, %s",
            self.steps, len(probe.losses),
            f"suggests {scale:.3g} x the rate that failed" if how == "measured"
            else f"could not see the turning point ({how}): {scale:.3g} x the rate that failed",
            _fmt(lr_before), _fmt(self.lrs),
            "going on from the probe's last state (its loss was still falling)" if keep
            else f"restored the snapshot of step {self._snapshots.latest_step}")

    def _resume_schedules(self) -> None:
        if self._unpause is not None:
            self._unpause.close()
            self._unpause = None

    def summary(self) -> dict:
        return {"steps": self.steps, "good_steps": self.good_steps,
                "interventions": [i.to_dict() for i in self.interventions], "lrs": self.lrs}

    def close(self) -> None:
        """Free the snapshots (and their files when on disk). A probe still running is ended
        first: its steps are undone (the snapshot restored) and the rate is cut by
        ``lr_factor``, as if the probe had found nothing."""
        try:
            if self._probe is not None and self._snapshots.latest is not None:
                self._probe = None
                self._resume_schedules()
                if not self._probe_follows:  # (else the groups hold the scheduler's rate now)
                    self._set_lrs(self._probe_base)
                lr_before = self._cut(self.lr_factor, self._snapshots.latest,
                                      reason="probe_cut_short", loss=math.nan)
                self.interventions.append(Intervention(
                    self.steps, "probe_cut_short", math.nan, None, None, lr_before, self.lrs,
                    self._snapshots.latest_step))
        finally:
            self._fast = False
            self._resume_schedules()
            self._snapshots.close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _scale_schedule(scheduler: Any, factor: float, optimizer: torch.optim.Optimizer) -> None:
    """Make ``scheduler`` keep a cut of every rate by ``factor``: wherever it keeps the rates it
    sets from (``base_lrs``; CyclicLR's ``max_lrs``; a cosine's floor ``eta_min``; OneCycleLR's
    peak, start and end rates in the parameter groups), in the schedulers a SequentialLR or
    ChainedScheduler runs too (else the cut is undone at a milestone, or at once)."""
    if hasattr(scheduler, "scale_rates"):
        scheduler.scale_rates(factor)  # lrkit's own: its rates are fixed at setup
        return
    seen: set[int] = set()
    keys: set[str] = set()
    todo = [scheduler]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        todo.extend(getattr(item, "_schedulers", None) or ())
        for name in ("base_lrs", "max_lrs"):
            values = getattr(item, name, None)
            if isinstance(values, list):
                setattr(item, name, [value * factor for value in values])
        # CosineAnnealingLR's and ...WarmRestarts' floor: a cut of the whole curve (else the
        # rate drifts back from the cut up to the unguarded schedule as it nears the floor)
        eta_min = getattr(item, "eta_min", None)
        if isinstance(eta_min, (int, float)) and not isinstance(eta_min, bool):
            item.eta_min = eta_min * factor
        for phase in getattr(item, "_schedule_phases", None) or ():
            keys.update(phase[k] for k in ("start_lr", "end_lr")
                        if isinstance(phase, dict) and isinstance(phase.get(k), str))
    for group in optimizer.param_groups:
        for key in keys:
            if key in group:
                group[key] = group[key] * factor


def _versus(loss: float, reference: float | None) -> str:
    """How a loss compares with the recent median, for the log (a ratio only when positive)."""
    if not reference:
        return ""
    if reference > 0:
        return f", {loss / reference:.1f}x the recent median"
    return f", the recent median {reference:.4g}"


def _fmt(lrs: list[float]) -> str:
    return ", ".join(f"{lr:.3g}" for lr in lrs)


def _as_loss(value: Any) -> torch.Tensor | float:
    """What a closure returned, as the loss: a tensor as it is, a number as a float; ``{"loss": ...}`` and
    outputs with a ``.loss`` (Hugging Face models) unwrapped, as ``find_lr`` accepts them."""
    if value is None:
        raise LrkitError("the guarded closure returned None; return the loss tensor "
                         "(after calling loss.backward())")
    if isinstance(value, collections.abc.Mapping) and "loss" in value:
        return _as_loss(value["loss"])
    inner = getattr(value, "loss", None)
    if inner is not None and not isinstance(value, (int, float)):
        return _as_loss(inner)
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (str, bytes, bool)):  # float("1.0") and True passed for a loss
        raise LrkitError(f"the guarded closure returned {type(value).__name__} {value!r}; return "
                         "the loss (a scalar tensor or a number)")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise LrkitError(f"the guarded closure returned {type(value).__name__}; return the loss "
                         "(a scalar tensor or a number)") from None
