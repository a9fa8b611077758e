"""Watch any training loop: one ``update`` per step, a diagnosis every so often and at the end.

``update`` does no work beyond storing the value: a float is appended, a tensor is kept (detached,
on its device) and only copied to the host, all at once, when a report is due, so a training loop
that never looked at its loss does not start waiting for the accelerator every step. Reports go
to Python logging (logger ``lrkit.diagnose``) and, when ``log_file`` is given, to a JSONL file
that ``lrkit diagnose FILE`` reads back: one ``{"step", "loss", "lr"}`` line per step (written at
report time) and one ``{"event": "report", ...}`` line per diagnosis.
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import logging
import math
import os
import warnings
import weakref
from typing import Any, Callable

import numpy as np

from lrkit.diagnose.classify import Diagnosis, diagnose
from lrkit.errors import LrkitError, is_real, one_number, plain_int, require

LOGGER = logging.getLogger("lrkit.diagnose")


def _downsample(values: np.ndarray, max_points: int,
                finite: np.ndarray | None = None) -> np.ndarray:
    """At most ``max_points`` values: means of equal consecutive bins, of their finite values; a
    bin whose steps are mostly non-finite is NaN. Why: a bin made NaN by one NaN batch in it
    multiplied the share of non-finite points by the bin's size (one NaN batch in 150 over 20,000
    steps read as 13% of the run, and "diverged")."""
    n = len(values)
    if n <= max_points:
        return values
    starts = np.linspace(0, n, max_points + 1).astype(int)
    sizes = np.diff(starts)
    finite = np.isfinite(values) if finite is None else finite
    if finite.all():  # the usual case, the same means without the mask's two copies of the run
        return np.add.reduceat(values, starts[:-1]) / sizes
    counts = np.add.reduceat(finite.astype(np.int64), starts[:-1])
    sums = np.add.reduceat(np.where(finite, values, 0.0), starts[:-1])
    means = sums / np.maximum(counts, 1)
    means[2 * counts <= sizes] = np.nan
    return means


class _Series:
    """A float history that grows by one value a step: appended to ``tail``, a list (the
    cheapest thing per step), and moved into a float64 array when read. Why: a report that
    converted the whole run's Python floats again cost O(steps) (36 ms at 1e6 steps), so a
    run's reports cost O(steps²) (17 s over 1e6 steps with a report every 1000); and an array
    holds a value in 8 bytes, a list of floats in 32."""

    def __init__(self) -> None:
        self.tail: list[float] = []
        self._array = np.empty(1024)
        self._n = 0

    def __len__(self) -> int:
        return self._n + len(self.tail)

    def _room(self, extra: int) -> None:
        if self._n + extra > len(self._array):
            grown = np.empty(max(2 * len(self._array), self._n + extra))
            grown[:self._n] = self._array[:self._n]
            self._array = grown

    def extend(self, values: np.ndarray) -> None:
        self._settle()
        self._room(len(values))
        self._array[self._n:self._n + len(values)] = values
        self._n += len(values)

    def _settle(self) -> None:
        if self.tail:
            values = np.asarray(self.tail, dtype=float)
            self.tail.clear()  # the same list: update() holds it
            self.extend(values)

    def view(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The values ``start:stop`` (a view: copy it before changing it)."""
        self._settle()
        return self._array[start:self._n if stop is None else min(stop, self._n)]


#: tensor losses waiting for the host are stacked into one tensor (on their device: no sync)
#: every this many steps, so that a run with no report until its end does not hold a tensor
#: object per step (570 bytes a step: 570 MB over 1e6 steps)
PENDING_CHUNK = 1024


class Monitor:
    """Diagnose a run as it trains.

    ``report_every``: steps between diagnoses (0: only at the end). ``log_file``: a JSONL path
    (appended to). ``logger``: a :class:`logging.Logger`, a name (default ``lrkit.diagnose``),
    or ``False`` to log nothing; ``level``: its level, a number or a name (``"INFO"``).
    ``max_points``: longer histories are diagnosed from this many bin means, which keeps a report
    cheap at any length (the means of each bin's finite losses: they smooth out single batches,
    spikes and lone non-finite ones alike, so a long run's verdict can differ from
    ``lrkit.diagnose`` on every step; the evidence says ``steps_per_point`` and counts the
    ``nonfinite_steps``). ``on_report(diagnosis)``: called after each report. ``guard``: the
    :class:`lrkit.Guard` of the same loop (one ``update`` per ``guard.step``): once it has cut
    the rate, reports diagnose the steps since its last cut, not the rate that failed.
    """

    def __init__(
        self,
        *,
        report_every: int = 1000,
        log_file: str | os.PathLike | None = None,
        log_steps: bool = True,
        logger: logging.Logger | str | bool | None = None,
        level: int | str = logging.INFO,
        min_points: int = 8,
        max_points: int = 1000,
        on_report: Callable[[Diagnosis], Any] | None = None,
        name: str = "train",
        guard: Any = None,
    ) -> None:
        report_every, max_points, min_points = (plain_int(v) for v in
                                                (report_every, max_points, min_points))
        require(isinstance(report_every, int) and not isinstance(report_every, bool)
                and report_every >= 0,
                f"report_every must be an integer >= 0 (0: only at the end), got {report_every!r}")
        require(isinstance(max_points, int) and max_points >= 50,
                f"max_points must be an integer >= 50, got {max_points!r}")
        require(isinstance(min_points, int) and min_points >= 3,
                f"min_points must be an integer >= 3, got {min_points!r}")
        self.report_every = report_every
        self.log_steps = log_steps
        self.logger = _logger(logger)
        self.level = _level(level)
        self.min_points = min_points
        self.max_points = max_points
        require(on_report is None or callable(on_report),
                f"on_report must be a function called with each Diagnosis (or None), got "
                f"{on_report!r}")
        self.on_report = on_report
        self.name = name
        require(guard is None or hasattr(guard, "interventions"),
                f"guard must be an lrkit.Guard (or None), got {type(guard).__name__}")
        self.guard = guard
        self._losses = _Series()
        self._lrs = _Series()
        self._loss_tail, self._lr_tail = self._losses.tail, self._lrs.tail  # (per step)
        self._pending: list[Any] = []  # tensors not yet copied to the host
        self._chunks: list[Any] = []  # ... and earlier ones, stacked (PENDING_CHUNK)
        self._val: list[tuple[int, float]] = []
        self._step = 0
        self._since_report = 0
        self._written = 0  # steps already written to the JSONL file
        self._file = None
        self.reports: list[tuple[int, Diagnosis]] = []
        self.last: Diagnosis | None = None
        self.closed = False
        self._warned_failed = False  #: a failed automatic diagnosis was said (once)
        if log_file is not None:
            self._file = open_log(log_file)
            # the steps not yet written go to the file when the interpreter exits, also after an
            # exception ended the loop before close() (the docs' loop left an empty file)
            _OPEN_MONITORS.add(self)
            self._pid = os.getpid()

    # -- per step -----------------------------------------------------------------------------
    def update(self, loss: Any, lr: float | None = None) -> Diagnosis | None:
        """Record one step's loss (a float or a scalar tensor) and rate; returns the diagnosis
        when this step completes a report interval, else ``None``.

        ``lr`` may also be a scheduler's ``get_last_lr()`` list: the first group's rate is
        recorded (the one the diagnosis names)."""
        if self.closed:  # its file is closed and its final report made: the step would be lost
            raise LrkitError("monitor.update after monitor.close(): this Monitor has made its "
                             "final report; make a new Monitor for a new run")
        rate = _rate(lr)  # checked before anything is recorded, so losses and rates stay paired
        if hasattr(loss, "detach"):
            if loss.numel() != 1:
                raise LrkitError(f"monitor.update needs the scalar loss of the step, got a tensor "
                                 f"of shape {tuple(loss.shape)}; reduce it (e.g. loss.mean())")
            pending = self._pending
            # a tensor outside autograd may be a buffer the loop reuses (an accumulated loss,
            # zeroed after the step): kept as a copy, or every value would read the buffer at
            # report time; a graph's output is not changed in place, and detach() is cheaper
            pending.append(loss.detach() if loss.requires_grad else loss.clone())
            if len(pending) >= PENDING_CHUNK:
                self._stack_pending()
        else:
            value = loss if type(loss) is float else _number(loss, "monitor.update", "loss")
            if self._pending or self._chunks:
                self._flush_pending()
            self._loss_tail.append(value)
        self._lr_tail.append(rate)
        self._step += 1
        self._since_report += 1
        if self.report_every and self._since_report >= self.report_every:
            try:
                result = self.diagnose()
            except Exception as exc:  # noqa: BLE001  a diagnosis must not end the training loop
                # (a loss of 1e307 overflowed its arithmetic, and update() raised); said once.
                # (What the report does with a diagnosis, on_report included, is not guarded:
                # an on_report that raises to stop a run stops it)
                self._since_report = 0
                if not self._warned_failed:
                    self._warned_failed = True
                    message = (f"lrkit monitor step {self._step}: the diagnosis failed "
                               f"({type(exc).__name__}: {exc}); training goes on")
                    if self.logger is not None:
                        self.logger.warning(message)
                    else:
                        warnings.warn(message, RuntimeWarning, stacklevel=2)
                return None
            return self.report(result=result)
        return None

    def update_val(self, val_loss: Any, step: int | None = None) -> None:
        """Record a validation loss (at ``step``, default: the current step); it goes to the
        JSONL file too (``{"step", "val_loss"}``), so the file diagnoses as the monitor does."""
        value = _number(val_loss, "monitor.update_val", "validation loss")
        step = plain_int(step)
        if is_real(step) and float(step).is_integer():  # 5.0 is step 5 (2.7 is no step)
            step = int(step)
        require(step is None or (isinstance(step, int) and not isinstance(step, bool)),
                f"monitor.update_val got step={step!r}; give the step as a whole number")
        at = self._step if step is None else step
        if not 0 <= at <= self._step:  # (refused here, not by the next report, inside update)
            raise LrkitError(f"monitor.update_val got step={step!r}; a validation loss belongs to "
                             f"a step of this run so far, 0..{self._step} (default: the current "
                             "step)")
        self._val.append((at, value))
        if self.log_steps and self._file is not None:
            # the steps before it first, in order: tensor losses still on their device too (a
            # validation pass has waited for the device already); written after them, a second
            # run's first validation lines came before its losses, and the reader took the
            # step going back for a third run and lost them
            self._flush_pending()
            self._write_steps()
            self._file.write(json.dumps({"step": at, "val_loss": _finite_or_str(value)}) + "\n")

    def _stack_pending(self) -> None:
        """The pending tensor losses as one tensor, where they are (no host sync)."""
        pending, self._pending = self._pending, []
        import torch  # only reached when tensors were given, so torch is there

        try:
            stacked = torch.stack(pending)  # scalars of one dtype and device: the usual case
        except RuntimeError:
            stacked = torch.stack([p.reshape(()).float().cpu() for p in pending])
        self._chunks.append(stacked.reshape(-1))

    def _flush_pending(self) -> None:
        if self._pending:
            self._stack_pending()
        if not self._chunks:
            return
        import torch

        chunks, self._chunks = self._chunks, []
        try:
            values = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
        except RuntimeError:  # chunks of different dtypes or devices
            values = torch.cat([c.double().cpu() for c in chunks])
        self._losses.extend(values.double().cpu().numpy())  # the one host sync

    # -- reports ------------------------------------------------------------------------------
    @property
    def losses(self) -> list[float]:
        self._flush_pending()
        return self._losses.view().tolist()

    @property
    def lrs(self) -> list[float]:
        return self._lrs.view().tolist()

    @property
    def step(self) -> int:
        return self._step

    def diagnose(self) -> Diagnosis:
        """Diagnose the history so far (does not log); with a guard that has cut the rate, the
        history since its last cut (see :meth:`_guard_cut`)."""
        self._flush_pending()
        cut = self._guard_cut() if self.guard is not None else None
        first = cut.step if cut is not None else 0
        # views of the history: a report over a long run reads it, and copies only what it keeps
        # (three copies and a step array of the whole run made each report O(steps) several
        # times over, so a 1e6-step run's reports O(steps²))
        losses = self._losses.view(first)
        if len(self._losses) == 0:
            return Diagnosis(
                "not_enough_data", 1.0, {"points": 0}, None,
                "No loss has been recorded yet: call monitor.update(loss) once per step.")
        lrs = self._lrs.view(first)
        # each point named by its step in the run (a bin by its first step); steps[i] is
        # first + i, unless the guard's rolled-back batches are left out
        steps = None
        dropped = self._guard_rolled_back(first)
        if dropped:
            # the batches the guard rolled back at the same rate (a lone NaN: a bad batch, not
            # the rate's doing) are left out, as the guard left them out of training
            steps = np.arange(first, first + len(losses))
            keep = ~np.isin(steps, dropped)
            losses, lrs, steps = losses[keep], lrs[keep], steps[keep]
        lrs_arg = _held(lrs)
        if lrs_arg is not None:
            lrs_arg = _downsample(lrs_arg, self.max_points)
        val = [(at, v) for at, v in self._val if at >= first] or None
        binned = None
        if len(losses) > self.max_points:
            bins = np.linspace(0, len(losses), self.max_points + 1).astype(int)[:-1]
            finite = np.isfinite(losses)
            nonfinite = np.flatnonzero(~finite) if not finite.all() else ()
            binned = {"steps_per_point": len(losses) / self.max_points,
                      "nonfinite_steps": int(len(nonfinite))}
            if len(nonfinite):
                binned["first_nonfinite_step"] = int(nonfinite[0] + first if steps is None
                                                     else steps[nonfinite[0]])
            steps = bins + first if steps is None else steps[bins]
            losses = _downsample(losses, self.max_points, finite)
        else:  # (the diagnosis has its own copies of a short history)
            losses, lrs_arg = losses.copy(), None if lrs_arg is None else lrs_arg.copy()
            steps = np.arange(first, first + len(losses)) if steps is None else steps
        # the run's own span: its bins and the batches a guard rolled back leave steps out
        result = diagnose(losses, lrs_arg, val_losses=val, min_points=self.min_points,
                          steps=steps, span=(first, self._step))
        if dropped:
            result = dataclasses.replace(
                result, evidence={**result.evidence, "guard_rolled_back_at": dropped})
        if binned is not None:  # what the bin means leave out, in the evidence
            note = ""
            if binned["nonfinite_steps"] and result.verdict != "diverged":
                note = (f" {binned['nonfinite_steps']} step(s) had a non-finite loss (the first "
                        f"at step {binned['first_nonfinite_step']}); this report reads means of "
                        f"{binned['steps_per_point']:.0f} steps, which leave them out, while "
                        "lrkit.diagnose on every step (lrkit diagnose on the log file) counts "
                        "them: non-finite losses that the run recovers from are most often a "
                        "rate at its limit, or bad batches.")
            result = dataclasses.replace(result, evidence={**result.evidence, **binned},
                                         explanation=result.explanation + note)
        if cut is not None:
            result = self._since_cut(result, cut, lrs)
        elif self.guard is not None and getattr(self.guard, "probing", False):
            result = dataclasses.replace(result, explanation=result.explanation + (
                " The guard is measuring a new rate right now (a short range test whose steps "
                "it undoes): judge the rate after it has gone on."))
        return result

    def _guard_rolled_back(self, first: int) -> list[int]:
        """The monitor's steps (from ``first`` on) whose batch the guard rolled back at the same
        rate (``*_rolled_back``: a lone non-finite loss or gradient)."""
        if self.guard is None:
            return []
        return [r.step - 1 for r in self.guard.interventions
                if r.reason.endswith("_rolled_back") and first <= r.step - 1 < len(self._losses)]

    def _guard_cut(self) -> Any:
        """The guard's last change of rate that training went on at: not the start of a probe
        (its ramp is undone, and the probe's own record follows it), and none while a probe
        runs. One ``update`` per ``guard.step``: the guard's step k is the monitor's k - 1."""
        if getattr(self.guard, "probing", False):
            return None
        records = self.guard.interventions
        starts = {i for i in range(len(records) - 1)
                  if records[i + 1].reason in ("probe", "probe_cut_short")}
        cuts = [r for i, r in enumerate(records) if i not in starts and r.lr_after
                and r.lr_before and r.lr_after[0] != r.lr_before[0]
                and r.step < len(self._losses)]
        return cuts[-1] if cuts else None

    def _since_cut(self, result: Diagnosis, cut: Any, lrs: np.ndarray) -> Diagnosis:
        """The diagnosis of the history since the guard's cut, said so. Why: before it, the
        history holds the rate that failed and its blow-up; judged whole, a healthy run after
        the cut was told "keep" that rate (0.3 where the guard had gone on at 0.011), and an
        unstable stretch before it cut the new rate again."""
        finite = lrs[np.isfinite(lrs)]
        base = float(finite.max()) if len(finite) else float(cut.lr_after[0])
        # the diagnosis read the rates since the cut: its rate (where the trouble started, else
        # the peak) stands; x the peak overrode it, so the monitor said 0.023 where its own
        # explanation and `lrkit diagnose` on its log said 0.0203 (an end-to-end review)
        suggested = (result.suggested_lr if result.suggested_lr is not None else
                     base * result.lr_factor if result.lr_factor is not None else None)
        change = ("" if suggested is None else "keep it" if result.lr_factor == 1.0 else
                  f"{result.recommendation}: about {suggested:.3g}")
        note = (f" The guard cut the rate from {cut.lr_before[0]:.3g} to {cut.lr_after[0]:.3g} "
                f"at step {cut.step}: this diagnosis is of the steps since then, at {base:.3g}"
                + (f" ({change})" if change else "") + ", not of the rate that failed.")
        evidence = {**result.evidence, "guard_cut_at": cut.step, "lr_since_guard_cut": base}
        return dataclasses.replace(result, suggested_lr=suggested, evidence=evidence,
                                   explanation=result.explanation + note)

    def report(self, *, final: bool = False, result: Diagnosis | None = None) -> Diagnosis:
        """Diagnose now (or take ``result``, a diagnosis just made), log it and write it to the
        JSONL file; returns the diagnosis."""
        result = self.diagnose() if result is None else result
        self._since_report = 0
        self.last = result
        self.reports.append((self._step, result))
        tag = "final" if final else f"step {self._step}"
        reason = result.reasons[0] if result.reasons else ""
        if self.logger is not None:
            self.logger.log(self.level, "lrkit %s %s: %s (confidence %.0f%%), rate %s%s",
                            self.name, tag, result.verdict, 100 * result.confidence,
                            result.recommendation, f" -- {reason}" if reason else "")
        if self._file is not None:
            self._write_steps()
            record = {"event": "report", "step": self._step, "final": final,
                      **result.to_dict()}
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if self.on_report is not None:
            self.on_report(result)
        return result

    def _write_steps(self) -> None:
        if not self.log_steps or self._file is None:
            return
        lines = []
        start = self._written
        losses = self._losses.view(start).tolist()
        lrs = self._lrs.view(start, start + len(losses)).tolist()
        for i, (loss, lr) in enumerate(zip(losses, lrs), start=start):
            row: dict[str, Any] = {"step": i, "loss": _finite_or_str(loss)}
            if not math.isnan(lr):
                row["lr"] = lr
            lines.append(json.dumps(row))
        if lines:
            self._file.write("\n".join(lines) + "\n")
        self._written = start + len(losses)

    def close(self) -> Diagnosis:
        """The final report; closes the JSONL file. Safe to call twice."""
        if self.closed:
            assert self.last is not None
            return self.last
        try:
            result = self.report(final=True)
        finally:
            self.closed = True
            _OPEN_MONITORS.discard(self)
            if self._file is not None:
                self._file.close()
                self._file = None
        return result

    finish = close

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class MonitorRuns:
    """What a framework's Monitor callback (Lightning, Hugging Face) shares: a Monitor made from
    the callback's options, a fresh one for each training run (a second ``fit()`` or ``train()``
    must not report the first one's history, or write to a log the first one closed), closed at
    the run's end, and the last diagnosis.

    Under several processes (DDP) only the main one writes the log file and logs: every rank
    appended its own copy of the steps to one file, which then read as several runs. The others
    still diagnose their own losses (``diagnosis``). The file is opened when a run starts, so
    the callback can be pickled before it (``strategy="ddp_spawn"``)."""

    def __init__(self, *, val_key: str, **monitor_options: Any) -> None:
        self.val_key = val_key
        self._options = dict(monitor_options)
        log_file = self._options.get("log_file")
        if log_file is not None:
            open_log(log_file).close()  # an unwritable path is named now, not at fit()
        self._monitor = Monitor(**{**self._options, "log_file": None})  # checks the options
        self._running = False
        self._main = True

    @property
    def monitor(self) -> Monitor:
        """The current run's Monitor (before any run, one with no file that records nothing)."""
        return self._monitor

    def _current(self, main: bool = True) -> Monitor:
        """The run's Monitor for a hook; a hook before any start hook starts the run (a
        validation before fit, a loop that calls the hooks itself)."""
        if not self._running:
            self._start_run(main)
        return self._monitor

    def _start_run(self, main: bool = True) -> None:
        current = self._monitor
        if self._running and not current.closed:
            if current.step == 0 and main == self._main:
                return  # nothing trained yet (a validation before fit): the run goes on
            current.close()  # a run that did not end (no end hook): its final report
        options = self._options if main else {**self._options, "log_file": None, "logger": False}
        self._monitor = Monitor(**options)
        self._running = True
        self._main = main

    def _end_run(self) -> None:
        if self._running:  # (closing twice is safe)
            self._monitor.close()

    @property
    def diagnosis(self) -> Diagnosis | None:
        return self._monitor.last


def open_log(log_file: str | os.PathLike) -> Any:
    """The JSONL log opened for appending, or a clear error naming the path."""
    try:
        return open(log_file, "a", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise LrkitError(
            f"cannot open the monitor log {str(log_file)!r} for writing "
            f"({exc.strerror}); pass a writable path or log_file=None") from exc


#: monitors with an open log file, for the steps they hold at interpreter exit (held weakly: a
#: monitor dropped by its loop is gone, and a closed one leaves the set)
_OPEN_MONITORS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _write_at_exit() -> None:
    """At interpreter exit: the steps each live monitor holds, written to its open file -- when
    it was the last to write there (a later run's monitor on the same file, completed, stays the
    last run in it) and in the process that opened it (a forked child's exit wrote its
    parent's steps twice)."""
    for monitor in list(_OPEN_MONITORS):
        handle = monitor._file
        if handle is None or monitor.closed or monitor._pid != os.getpid():
            continue
        with contextlib.suppress(Exception):
            handle.flush()
            if os.fstat(handle.fileno()).st_size != handle.tell():
                continue  # another writer appended after this monitor's last line
            monitor._flush_pending()  # (tensor losses still on their device)
            monitor._write_steps()
            handle.flush()


def _logger(logger: Any) -> logging.Logger | None:
    if logger is None:
        return LOGGER
    if logger is False:
        return None
    if isinstance(logger, str):
        return logging.getLogger(logger)
    require(isinstance(logger, (logging.Logger, logging.LoggerAdapter)),
            f"logger must be a logging.Logger, a logger's name or False (no logging), got "
            f"{logger!r}")
    return logger


def _level(level: Any) -> int:
    """A logging level from a number or a name, as ``Logger.setLevel`` takes it."""
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        require(isinstance(number, int),
                f"level must be a logging level (a number, or a name such as 'INFO' or "
                f"'WARNING'), got {level!r}")
        return number
    require(isinstance(level, int) and not isinstance(level, bool) and level >= 0,
            f"level must be a logging level (a number, or a name such as 'INFO'), got {level!r}")
    return level


def _finite_or_str(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _number(value: Any, where: str, what: str) -> float:
    """One number from a float, a numpy scalar or a one-element tensor; a clear error else."""
    number = one_number(value)
    if number is not None:
        return number
    if hasattr(value, "detach"):
        raise LrkitError(f"{where} needs the scalar {what}, got a tensor of shape "
                         f"{tuple(value.shape)}; reduce it (e.g. .mean())")
    raise LrkitError(f"{where} needs the {what} as one number, got {value!r}")


def _held(lrs: np.ndarray) -> np.ndarray | None:
    """The rates with the steps given none (``lr=None``) holding the latest rate before them
    (the first known, before it), as the log reader reads the JSONL file; None when no step
    gave one. Before, one step without a rate dropped the rates of the whole history, and the
    diagnosis named no rate where the file's did."""
    known = ~np.isnan(lrs)
    if known.all():
        return lrs
    if not known.any():
        return None
    latest = np.maximum.accumulate(np.where(known, np.arange(len(lrs)), -1))
    latest[latest < 0] = int(np.argmax(known))
    return lrs[latest]


def _rate(lr: Any) -> float:
    """One step's rate as a float (NaN when not given): a number, a scalar tensor, or a list of
    per-group rates (``scheduler.get_last_lr()``), of which the first group's."""
    if type(lr) is float and 0.0 <= lr < math.inf:  # the common case, once per step
        return lr
    if lr is None:
        return math.nan
    if isinstance(lr, (list, tuple)):
        if not lr:
            raise LrkitError("monitor.update got an empty list as lr; pass the step's rate")
        lr = lr[0]
    try:
        if isinstance(lr, (str, bytes)):
            raise TypeError
        # (detach only where it must: it doubled the cost of a tensor rate's update)
        rate = float(lr.detach()) if getattr(lr, "requires_grad", False) else float(lr)
    except (TypeError, ValueError, RuntimeError):
        raise LrkitError(f"monitor.update needs the step's rate as a number, got {lr!r}") from None
    # refused here, not at the next report (where the diagnosis refuses the whole history, and
    # an inf would make the JSONL file invalid); NaN stays "not known", as None
    if not (math.isnan(rate) or (math.isfinite(rate) and rate >= 0)):
        raise LrkitError(f"monitor.update got lr={rate!r}; a rate is a finite number >= 0 "
                         "(pass lr=None when it is not known)")
    return rate
