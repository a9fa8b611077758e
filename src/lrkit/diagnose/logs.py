"""Read a loss log: CSV, JSONL, a Hugging Face Trainer's trainer_state.json, or TensorBoard event
files (with the optional tensorboard package); or a directory holding one of those.

Columns (CSV header names or JSONL keys, case-insensitive): ``loss`` (or ``train_loss``,
``train/loss``, ``training_loss``, and Lightning's ``*_step`` of each: ``loss_step``,
``train_loss_step``; the per-epoch ``*_epoch`` only without it) is required; ``step`` (or
``global_step``, ``iteration``, ``iter``, ``epoch``), ``lr`` (or ``learning_rate``, ``lr-*``)
and ``val_loss`` (or ``valid_loss``, ``validation_loss``, ``val/loss``, ``eval_loss``, each also
as ``*_epoch``) are optional. Rows that carry only a validation loss, or only the rate (as
Lightning's CSVLogger writes them), add to the validation curve or give the rate in force until
the next. JSONL lines with ``"event": "report"`` (the Monitor's reports) are skipped; the
training loss's key is the first record's, and records with another one are other metrics.

A directory is read as the log in it: ``trainer_state.json``, TensorBoard event files,
``metrics.csv`` (Lightning's CSVLogger), else the latest ``checkpoint-N/trainer_state.json``
(also over the directory's own when it is further);
or as the one run below it (several: an error that lists them).
"""
from __future__ import annotations

import csv
import dataclasses
import bisect
import itertools
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable

from lrkit.errors import LrkitError, require

LOSS_KEYS = ("loss", "train_loss", "train/loss", "training_loss", "loss/train", "train_loss_step")
STEP_KEYS = ("step", "global_step", "iteration", "iter", "epoch")
LR_KEYS = ("lr", "learning_rate", "lr/pg1", "lr-sgd", "lr-adam", "lr-adamw")
VAL_KEYS = ("val_loss", "valid_loss", "validation_loss", "val/loss", "loss/val", "eval_loss")


@dataclasses.dataclass
class LossLog:
    """A loss history read from a file."""

    steps: list[float]
    losses: list[float]
    lrs: list[float] | None
    val_losses: list[tuple[float, float]]
    source: str

    def only(self, keep: Callable[[float], bool], note: str, *, val_too: bool = False) -> LossLog:
        """The log of the steps ``keep`` accepts (and of the validation losses too, with
        ``val_too``), its source followed by ``note``; itself when it keeps all or none."""
        kept = [i for i, step in enumerate(self.steps) if keep(step)]
        if not kept or len(kept) == len(self.steps):
            return self
        return LossLog([self.steps[i] for i in kept], [self.losses[i] for i in kept],
                       [self.lrs[i] for i in kept] if self.lrs else None,
                       [(at, v) for at, v in self.val_losses if keep(at)] if val_too
                       else self.val_losses, f"{self.source}, {note}")

    def diagnose(self, **options: Any):
        from lrkit.diagnose.classify import diagnose

        # the file's steps: a log written every 50 steps names step 600, not row 12
        options.setdefault("steps", self.steps)
        return diagnose(self.losses, self.lrs, val_losses=self.val_losses or None, **options)


def _find(keys: list[str], wanted: tuple[str, ...], prefix: str | None = None) -> str | None:
    lowered = {k.strip().lower(): k for k in keys}
    for name in wanted:
        if name in lowered:
            return lowered[name]
    if prefix:
        for k in keys:
            if k.strip().lower().startswith(prefix):
                return k
    return None


# what a Lightning LearningRateMonitor logs beside the rate (log_momentum, log_weight_decay)
_NOT_RATE = ("-momentum", "-weight_decay", "-beta1", "-beta2")


#: a rate's name beyond LR_KEYS: a LearningRateMonitor's ``lr-<optimizer>`` (and ``/pg<i>``),
#: ``lr/<group>``, ``lr_pg1``, ``lr_0``, ``lr_group_1``, Lightning's ``lr_step`` (``self.log("lr",
#: on_step=True, on_epoch=True)``) -- not ``lr_warmup_steps``, ``lr_scheduler`` or other settings
#: named after the rate
_RATE_NAME = re.compile(r"lr(?:[-/].+|_?(?:pg|group|param_group)?_?\d+|_step|_epoch)")


def _step_column(keys: list[str]) -> str | None:
    """The steps' column or key: a known name, else one whose last part is one (W&B's and
    Lightning's ``train/global_step``, ``trainer/global_step``: the rows' positions were
    taken, and a spike at step 2000 was named at step 200)."""
    for name in STEP_KEYS:  # by priority: a global step before an epoch, named either way
        found = next((k for k in keys if k.strip().lower() == name), None) or next(
            (k for k in keys if re.split(r"[/.]", k.strip().lower())[-1] == name), None)
        if found is not None:
            return found
    return None


def _rate_column(keys: list[str]) -> str | None:
    """The rate's column or tag: a known name, else the first one named as a rate
    (``_RATE_NAME``) that is not the momentum or weight decay a LearningRateMonitor logs beside
    it (``lr-AdamW-momentum``)."""
    found = _find(keys, LR_KEYS)
    if found is None:
        named = [k for k in keys if _RATE_NAME.fullmatch(k.strip().lower())
                 and not k.strip().lower().endswith(_NOT_RATE)]
        # the per-step one before Lightning's per-epoch twin, as for the loss
        found = next((k for k in named if not k.strip().lower().endswith("_epoch")),
                     named[0] if named else None)
    return found


def _loss_column(keys: list[str]) -> str | None:
    """The training loss among ``keys`` by name. Lightning's ``self.log("loss", on_step=True,
    on_epoch=True)`` writes ``loss_step`` and ``loss_epoch`` and no ``loss``: the per-step one
    is the curve; the per-epoch mean is taken only where no per-step one was logged."""
    lowered = {k.strip().lower(): k for k in keys}
    for name in LOSS_KEYS:
        for candidate in (name, name + "_step"):
            if candidate in lowered:
                return lowered[candidate]
    for name in LOSS_KEYS:
        if name + "_epoch" in lowered:
            return lowered[name + "_epoch"]
    return None


def _val_column(keys: list[str], wanted: tuple[str, ...] | None = None) -> str | None:
    """The validation loss by name: ``val_loss``, else Lightning's per-epoch ``val_loss_epoch``;
    never ``val_loss_step``, whose steps count validation batches, not training steps."""
    lowered = {k.strip().lower(): k for k in keys}
    for name in wanted or VAL_KEYS:
        for candidate in (name, name + "_epoch"):
            if candidate in lowered:
                return lowered[candidate]
    return None


def _is_train_loss_name(name: str) -> bool:
    """Says "loss" and is not a validation, evaluation or test loss."""
    return "loss" in name.lower() and not (set(re.split(r"[^a-z]+", name.lower()))
                                           & set(_NOT_TRAIN))


def _loss_like(keys: list[str]) -> list[str]:
    """The keys that could be the training loss (for a log whose loss has another name): those
    that say "loss" and are not a validation loss, a ``*_epoch`` twin of a ``*_step`` one left
    out (Lightning's per-epoch mean of the same loss)."""
    lossy = [k for k in keys if _is_train_loss_name(k)]
    lowered = {k.lower() for k in lossy}
    return [k for k in lossy if not (k.lower().endswith("_epoch")
                                     and k.lower()[:-len("_epoch")] + "_step" in lowered)]


def _train_loss_key(keys: list[str], where: str, noun: str, hint: str) -> str | None:
    """The training loss among ``keys`` (a CSV's columns, a record's keys, TensorBoard's tags):
    a known name, else the one that says "loss" and is not a validation loss; None when none
    does; several such: an error that names them (as ``noun``) and ``hint``, how to pick one."""
    known = _loss_column(keys)
    if known is not None:
        return known
    lossy = _loss_like(keys)
    if len(lossy) > 1:
        raise LrkitError(f"{where}: several {noun} could be the training loss "
                         f"({', '.join(repr(k) for k in lossy)}); " + hint)
    return lossy[0] if lossy else None


def _number(text: Any, path: str, where: str, column: str) -> float | None:
    """A float from a cell; ``None`` for an empty cell; NaN/inf kept; an error names ``where``
    in the file ("line 3", "log_history[3]")."""
    if text is None:
        return None
    if isinstance(text, bool):
        raise LrkitError(f"{path} {where}: {column} is {text!r}, not a number")
    if isinstance(text, (int, float)):
        try:
            return float(text)
        except OverflowError:  # a JSON integer of 400 digits
            raise LrkitError(f"{path} {where}: {column} {str(text)[:20]}... is beyond the range "
                             "of a float (1.8e308); fix or remove that entry") from None
    if not isinstance(text, str):
        raise LrkitError(f"{path} {where}: {column} is {json.dumps(text)[:60]}, not a number; "
                         "fix or remove that entry")
    text = text.strip()
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise LrkitError(f"{path} {where}: {column} value {text!r} is not a number; fix or "
                         "remove that line") from None


class _Collector:
    def __init__(self, path: str) -> None:
        self.path = path
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.lrs: list[float | None] = []
        self.val: list[tuple[float, float]] = []
        self.rates: list[tuple[float, float]] = []  # (step, rate) wherever a rate was logged
        self.null: list[str | None] = []  # per loss: where, when a JSON record's was null
        # the record each loss, validation loss and rate came from (counted from 0)
        self._record = 0
        self._loss_records: list[int] = []
        self._val_records: list[int] = []
        self._rate_records: list[int] = []
        self._seen: set[float] = set()  # the steps with a training loss
        self._stepped = False  # a row with a step was read
        #: (record, step) where the steps went back to a step seen before (see _restart)
        self.restarts: list[tuple[int, float]] = []
        #: what a log without a loss value had, for its error: the loss column its header
        #: named (a CSV), and whether it held no record at all (JSONL; None: not told)
        self.loss_column: str | None = None
        self.empty: bool | None = None

    def add(self, where: str, step: Any, loss: Any, lr: Any, val: Any, columns: dict,
            *, null: bool = False) -> None:
        loss_v = _number(loss, self.path, where, columns["loss"]) if loss is not None else None
        step_v = _number(step, self.path, where, columns.get("step") or "step") \
            if step is not None else None
        val_v = _number(val, self.path, where, columns.get("val") or "val_loss") \
            if val is not None else None
        lr_v = _number(lr, self.path, where, columns.get("lr") or "lr") if lr is not None else None
        # said here, where the line is known: the diagnosis's own check named a position after
        # sorting ("steps[99] = inf" for line 12) and no file
        if step_v is not None and not math.isfinite(step_v):
            raise LrkitError(f"{self.path} {where}: the step {step!r} is not a finite number; "
                             "fix or remove that line")
        if lr_v is not None and math.isnan(lr_v):
            lr_v = None  # a rate not logged at this step (pandas writes NaN for a missing cell)
        if lr_v is not None and not (math.isfinite(lr_v) and lr_v >= 0):
            raise LrkitError(f"{self.path} {where}: the rate {lr!r} is not a valid learning rate "
                             "(finite, >= 0); fix or remove that line")
        if step_v is not None:
            self._stepped = True
        elif self._stepped:
            # a row without a step in a log whose rows before it had one: its position mixed
            # with the steps (steps 0, 20, 100, 200; a validation point "at step 250" for 2490)
            if loss_v is not None:
                raise LrkitError(f"{self.path} {where}: a loss without a step, while the rows "
                                 "before it have one; give every loss row its step, or leave "
                                 "the step column out (each row is then one step, in order)")
            step_v = self.steps[-1] if self.steps else 0.0  # after the last loss logged
        at = step_v if step_v is not None else float(len(self.losses))
        record = self._record
        self._record += 1
        if loss_v is not None and step_v is not None and self.steps and at < self.steps[-1] \
                and at in self._seen:
            # the steps went back to a step that had a loss already: the run was resumed from
            # a checkpoint, or run again into the same file; what it logs from here replaces
            # what the file had from ``at`` on (as TensorBoard purges orphaned data), cut once
            # at the end (_apply_restarts: a cut at each restart made a log resumed a thousand
            # times read in minutes). Read interleaved by step, two runs made one curve that
            # jumped between them
            self.restarts.append((record, at))
        if loss_v is not None:
            self._seen.add(at)
            self.steps.append(at)
            self.losses.append(loss_v)
            self.lrs.append(lr_v)
            self.null.append(where if null else None)
            self._loss_records.append(record)
        if val_v is not None:
            self.val.append((at, val_v))
            self._val_records.append(record)
        if lr_v is not None:
            self.rates.append((at, lr_v))
            self._rate_records.append(record)

    def _keep_losses(self, keep: list[int]) -> None:
        """Keep the losses at the indices ``keep`` (with their steps, rates, marks, records)."""
        for name in ("steps", "losses", "lrs", "null", "_loss_records"):
            values = getattr(self, name)
            setattr(self, name, [values[i] for i in keep])

    def _apply_restarts(self) -> None:
        """Drop what a later restart logged again: an entry of record ``q`` at step ``s`` goes
        when a restart at a later record is at step ``s`` or below. One pass over each list,
        with the restarts' suffix minimum."""
        if not self.restarts:
            return
        records = [r for r, _ in self.restarts]
        lowest = [at for _, at in self.restarts]
        for k in range(len(lowest) - 2, -1, -1):
            lowest[k] = min(lowest[k], lowest[k + 1])

        def kept(entries_records: list[int], steps: list[float]) -> list[int]:
            out, k = [], 0
            for i, (q, step) in enumerate(zip(entries_records, steps)):
                while k < len(records) and records[k] <= q:
                    k += 1
                if k == len(records) or step < lowest[k]:
                    out.append(i)
            return out

        self._keep_losses(kept(self._loss_records, self.steps))
        self.val = [self.val[i] for i in kept(self._val_records, [v[0] for v in self.val])]
        self.rates = [self.rates[i] for i in kept(self._rate_records, [r[0] for r in self.rates])]

    def _drop_inner_nulls(self) -> str:
        """Null losses (JSON's NaN, see :func:`_add_record`) that run to the end of the log are
        a divergence, kept as NaN; one with real losses after it is a step that logged none
        (pandas writes a missing value as null too), left out. Returns a note for the source."""
        nulls = [i for i, where in enumerate(self.null) if where is not None]
        if not nulls:
            return ""
        if not any(self.lrs[i] is not None for i, where in enumerate(self.null) if where is None):
            # the loss rows carry no rate and these null-loss rows do: pandas' every-column
            # rows of a rate logged apart (a last one read as a NaN loss: "diverged, x0.1");
            # their rates are kept as rates
            rate_rows = {i for i in nulls if self.lrs[i] is not None}
            if rate_rows:
                self._keep_losses([i for i in range(len(self.losses)) if i not in rate_rows])
                nulls = [i for i, where in enumerate(self.null) if where is not None]
                if not nulls:
                    return ""
        real = [self.steps[i] for i, where in enumerate(self.null) if where is None]
        last = max(real) if real else -math.inf
        inner = [i for i in nulls if self.steps[i] < last]
        note = ""
        if len(inner) < len(nulls):
            first = next(self.null[i] for i in nulls if self.steps[i] >= last)
            note += (f", {len(nulls) - len(inner)} null loss(es) at the end read as NaN (JSON "
                     f"has no NaN), from {first}")
        if inner:
            note += (f", {len(inner)} null loss(es) with losses after them left out "
                     f"({self.null[inner[0]]}" + (" ..." if len(inner) > 1 else "") + ")")
            drop = set(inner)
            self._keep_losses([i for i in range(len(self.losses)) if i not in drop])
        return note

    def _batch_index_steps(self) -> None:
        """Refuse steps that count the batches of each epoch from 0 again (the batch index
        logged as the step): read as restarts, all but the last epoch were dropped, and the
        last one's slow fall read "too slow, x10". Told apart from a run started again into the
        same file by where each restart's loss is: near the loss just before it (training went
        on), not near the file's first loss (a fresh start)."""
        if len(self.restarts) < 2 or not self.steps:
            return
        first_step = self.steps[0]
        if any(at != first_step for _, at in self.restarts):
            return
        index = {record: i for i, record in enumerate(self._loss_records)}
        start = self.losses[0]
        finite = [v for v in self.losses if math.isfinite(v)]
        changes = sorted(abs(b - a) for a, b in zip(finite, finite[1:]))
        noise = changes[len(changes) // 2] if changes else 0.0  # a step-to-step change
        went_on = 0
        for record, _ in self.restarts:
            i = index.get(record)
            if i is None or i == 0:
                return
            here, before = self.losses[i], self.losses[i - 1]
            # the loss had fallen clearly by then, and goes on from there (a flat run started
            # again looks alike: it is read as restarts, as before)
            if math.isfinite(here) and math.isfinite(before) and (
                    abs(here - before) < abs(here - start)) and start - before > 5 * noise:
                went_on += 1
        if went_on >= 0.75 * len(self.restarts):
            raise LrkitError(
                f"{self.path}: the steps go back to {first_step:g} {len(self.restarts)} times, "
                "and the loss goes on from where it was each time: the step column looks like "
                "the batch index within each epoch (or a step counter that restarts on resume), "
                "not the run's step; log the global step "
                "(epoch * batches_per_epoch + batch), or leave the step column out (each row "
                "is then one step, in order)")

    def result(self, source: str) -> LossLog:
        self._batch_index_steps()
        self._apply_restarts()
        source += self._drop_inner_nulls()
        if not self.losses:
            if self.loss_column is not None:  # a header and no row: nothing logged yet
                raise LrkitError(f"{self.path} has a {self.loss_column!r} column but no row "
                                 "with a loss: the run has logged nothing yet; diagnose it "
                                 "once it has (a few dozen steps at least)")
            if self.empty:
                raise LrkitError(f"{self.path} is empty: it holds no record; give a log with "
                                 'one object a line, such as {"step": 1, "loss": 0.5}')
            raise LrkitError(f"{self.path}: no training loss values found; the log needs a "
                             f"'loss' column/key (or one of {', '.join(LOSS_KEYS[1:])})")
        lrs = None
        if all(v is not None for v in self.lrs):
            lrs = [float(v) for v in self.lrs]  # type: ignore[arg-type]
        elif self.rates:
            # the rate on some rows only (logged when it changes, or in rows of its own, as
            # Lightning's LearningRateMonitor writes them, the loss in others): each loss takes
            # the latest rate logged at or before its step (the first before the first); it was
            # None, no rates at all, and the rate of a loss row without one was dropped for all
            lrs = _held_rates(self.steps, sorted(self.rates, key=lambda item: item[0]))
        # keep the order of the steps (logs are sometimes appended out of order)
        order = sorted(range(len(self.losses)), key=lambda i: self.steps[i])
        if self.restarts:
            where = ", ".join(f"{step:g}" for _, step in self.restarts[:3]) + (
                f" ({len(self.restarts)} restarts)" if len(self.restarts) > 3 else "")
            source += (f", the rows from step {where} on logged again (a restart): the later "
                       "ones kept")
        return LossLog([self.steps[i] for i in order], [self.losses[i] for i in order],
                       [lrs[i] for i in order] if lrs else None, sorted(self.val), source)


def _not_utf8(name: str, exc: UnicodeDecodeError) -> LrkitError:
    return LrkitError(f"{name} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                      f"{exc.start}); save the log as UTF-8 CSV or JSONL (a TensorBoard event "
                      "file needs 'tfevents' in its name)")


def read_csv(path: str | os.PathLike, *, column: str | None = None) -> LossLog:
    """Read a CSV log (UTF-8; a byte-order mark, as Excel writes one, is skipped). ``column``:
    the training loss's column, when its name does not say so (default: found by name)."""
    try:
        return _read_csv(path, column)
    except UnicodeDecodeError as exc:
        raise _not_utf8(str(path), exc) from None


def _delimiter(header: str, path: str | os.PathLike) -> str:
    """Comma, unless the file is a .tsv or its header has tabs or semicolons and no comma (as
    Excel writes CSV where the decimal mark is a comma): read with commas such a header is one
    column named "step;loss", and the error said the log had no loss column."""
    if Path(path).suffix.lower() == ".tsv":
        return "\t"
    if "," not in header:
        for candidate in ("\t", ";"):
            if candidate in header:
                return candidate
    return ","


def _column_hint(keys: list[str]) -> str:
    return ("pick the training loss with --tag COLUMN (in Python: read_log(path, tag=COLUMN)); "
            f"columns: {', '.join(repr(k) for k in keys)}")


def _read_csv(path: str | os.PathLike, column: str | None = None) -> LossLog:
    name = str(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        first = handle.readline()
        if not first:
            raise LrkitError(f"{name} is empty; give a CSV with a header row such as "
                             "step,loss,lr,val_loss")
        delimiter = _delimiter(first, path)
        reader = csv.reader(itertools.chain([first], handle), delimiter=delimiter)
        header = [h.strip() for h in next(reader)]
        if header and header[0].startswith("#"):  # np.savetxt(header="step,loss") writes "# step"
            header[0] = header[0].lstrip("#").strip()
        if column is not None:
            require(column.strip() in header,
                    f"{name} line 1: no column {column!r}; " + _column_hint(header))
        loss_col = column.strip() if column is not None else _train_loss_key(
            header, f"{name} line 1", "columns", _column_hint(header))
        if loss_col is None and [h.lower() for h in header] == ["wall time", "step", "value"]:
            # TensorBoard's own CSV export of one scalar tag (the download under a chart): its
            # values are the tag's, the curve the user chose to export -- unless its file name
            # (run-<run>-tag-<tag>.csv) says the tag is a rate, an accuracy or a validation loss
            # (an exported accuracy read "diverged, the loss blew up to 9.25x its start")
            exported = re.search(r"-tag-(.+)\.csv$", Path(name).name, re.IGNORECASE)
            # the tag's words (TensorBoard writes its '/' as '_' in the file name)
            words = [w for w in re.split(r"[^a-z0-9]+", exported.group(1).lower()) if w] \
                if exported else []
            if words and (set(words) & set(_NOT_TRAIN) or any(w.startswith("acc") for w in words)
                          or words[-1] == "lr" or words[-2:] == ["learning", "rate"]):
                raise LrkitError(
                    f"{name}: a TensorBoard export of the tag {exported.group(1)!r}, which is "
                    "not the training loss; export the training loss's tag (train/loss, loss)")
            loss_col = header[2]
        if loss_col is None:
            raise LrkitError(f"{name} line 1: no loss column in the header {header}; name "
                             "it 'loss' (optional: step, lr, val_loss)")
        columns = {"loss": loss_col, "step": _step_column(header),
                   "lr": _lr_tag(header), "val": _val_column(header, TB_VAL_KEYS)}
        _not_step_or_rate(columns, f"{name} line 1", "column")
        for used in {v for v in columns.values() if v is not None}:
            places = [i + 1 for i, h in enumerate(header) if h == used]
            if len(places) > 1:  # the first was read, silently: which one is the user's?
                raise LrkitError(f"{name} line 1: the column {used!r} appears "
                                 f"{len(places)} times (columns {', '.join(map(str, places))}); "
                                 "rename all but one, or pick another column with --tag")
        index = {k: header.index(v) for k, v in columns.items() if v is not None}
        collector = _Collector(name)
        collector.loss_column = loss_col
        # where the fields are split by ';', a comma is the decimal mark (as Excel writes CSV
        # in such locales): '2,08' is 2.08 (it was "not a number"); not in a tab-separated
        # file, where '1,000' is a thousand, nor in the step column
        comma = delimiter == ";"
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise LrkitError(f"{name} line {line}: {len(row)} fields, but the header has "
                                 f"{len(header)}; fix or remove that line")
            get = lambda key: (None if key not in index  # noqa: E731
                               else _decimal_point(row[index[key]]) if comma and key != "step"
                               else row[index[key]])
            collector.add(f"line {line}", get("step"), get("loss"), get("lr"), get("val"),
                          columns)
    return collector.result(_csv_source(columns))


def _decimal_point(cell: str) -> str:
    """A cell written with a decimal comma ('2,08', '-1,5e-3') as Python reads numbers."""
    return cell.replace(",", ".", 1) if re.fullmatch(r"\s*[-+]?\d+,\d*([eE][-+]?\d+)?\s*",
                                                       cell) else cell


def _csv_source(columns: dict) -> str:
    """What the reader took: "csv" for the plain step/loss/lr/val_loss names, else the
    columns it chose (a Lightning metrics.csv: train_loss_step, lr-SGD, val_loss)."""
    plain = {"loss": "loss", "step": "step", "lr": "lr", "val": "val_loss"}
    if all(columns[k] is None or columns[k].strip().lower() == v for k, v in plain.items()):
        return "csv"
    return (f"csv, column {columns['loss']!r}"
            + (f", rate {columns['lr']!r}" if columns["lr"] else "")
            + (f", validation {columns['val']!r}" if columns["val"] else "")
            + (f", steps {columns['step']!r}" if columns["step"] else ""))


def _not_step_or_rate(columns: dict, where: str, noun: str) -> None:
    """A loss column named (--tag) that is also the steps' or the rate's: read as the loss, the
    step numbers "diverged" and a constant rate "had not moved"."""
    for role in ("step", "lr"):
        if columns["loss"] is not None and columns["loss"] == columns[role]:
            what = {"step": "the step numbers", "lr": "the learning rate"}[role]
            raise LrkitError(f"{where}: the {noun} {columns['loss']!r} holds {what}, not the "
                             f"training loss; give the training loss's {noun} with --tag")


def _record_columns(record: dict, column: str | None, where: str) -> dict | None:
    """The keys to read of one JSON record: the loss (``column`` when given, else found by
    name), step, rate and validation loss; None for a record without the given column nor a
    validation loss (another metric's record)."""
    keys = list(record)
    loss_key = (_train_loss_key(keys, where, "keys", "pick the training loss with --tag KEY (in "
                                "Python: read_log(path, tag=KEY))") if column is None
                else column if column in record else None)
    columns = {"loss": loss_key, "step": _step_column(keys), "lr": _lr_tag(keys),
               "val": _val_column(keys, TB_VAL_KEYS)}
    _not_step_or_rate(columns, where, "key")
    if columns["loss"] is None and columns["val"] is None:
        if column is not None:
            # another metric's record, passed by; a rate in a record of its own is the rate
            # (Lightning's LearningRateMonitor writes it so): it was lost
            return columns if columns["lr"] else None
        raise LrkitError(f"{where}: no 'loss' (or 'val_loss') key in {sorted(keys)}; name the "
                         "training loss's key with --tag KEY (in Python: read_log(path, tag=KEY))")
    return columns


#: at most this many key sets' columns are kept by :func:`_columns_of` (a log whose records'
#: keys all differ reads each afresh, as before, and holds no more)
COLUMNS_CACHED = 256


def _columns_of(cache: dict, record: dict, column: str | None, where: str) -> dict | None:
    """:func:`_record_columns` of ``record``, worked out once per set of keys (in their order,
    with ``column``): it reads the keys alone, and a log's records share a few key sets. Why:
    matching every record's keys against the known names again took over half of reading a
    JSONL log (1e6 lines of step, loss: 9.2 s, 4.1 s so). A fresh dict each time: the caller
    changes it."""
    key = (tuple(record), column)
    if key in cache:
        found = cache[key]
    else:
        found = _record_columns(record, column, where)  # (an error is raised, not kept)
        if len(cache) < COLUMNS_CACHED:
            cache[key] = found
    return None if found is None else dict(found)


#: keys that say when a record was written, not what was measured (see _add_record)
_NOT_METRICS = frozenset({"epoch", "step", "global_step", "time", "timestamp", "wall_time",
                          "walltime", "created_at", "_runtime", "_timestamp", "_step"})


def _is_metric(key: str) -> bool:
    """Whether a record's key is a measurement (not when or at what rate the record was
    written): by its last part, so that a logger's prefixes (W&B's ``train/epoch``,
    ``train/global_step``) are read as the plain names are."""
    name = key.strip().lower()
    last = re.split(r"[/.]", name)[-1]
    return not (last in _NOT_METRICS or name in _NOT_METRICS or last in ("lr", "learning_rate")
                or _RATE_NAME.fullmatch(name) or _RATE_NAME.fullmatch(last))


def _add_record(collector: _Collector, record: dict, columns: dict | None, where: str) -> bool:
    """Add one JSON record (``where``: "line 3", "item 3") whose keys to read are ``columns``
    (:func:`_record_columns`); whether it held the loss. A record without the given column nor
    a validation loss (``columns`` None) is another metric's, and is passed by."""
    if columns is None:
        return False
    pick = lambda key: record[columns[key]] if columns[key] else None  # noqa: E731
    loss = pick("loss")
    held = columns["loss"] is not None
    # a null loss in a record of its own: JSON has no NaN, and strict writers (pandas'
    # to_json, JavaScript) write a NaN as null; dropped, a run's divergence vanished from its
    # log (see _Collector._drop_inner_nulls). A record holding another metric (a validation
    # loss, Lightning's epoch row with train_loss_epoch) is that metric's: pandas writes every
    # column on every row, null where the row logged none
    null = (held and loss is None and pick("val") is None
            and not any(value is not None and _is_metric(key) for key, value in record.items()
                        if key not in (columns["loss"], columns["step"], columns["lr"])))
    columns["loss"] = columns["loss"] or "loss"  # (names the column in an error)
    collector.add(where, pick("step"), math.nan if null else loss, pick("lr"), pick("val"),
                  columns, null=null)
    return held


def _require_seen(seen: bool, name: str, column: str | None) -> None:
    require(seen, f"{name}: no record has the key {column!r}; give the key the training loss is "
                  "logged under (--tag KEY)")


def read_jsonl(path: str | os.PathLike, *, column: str | None = None) -> LossLog:
    """Read a JSONL log (UTF-8; a byte-order mark is skipped). ``column``: the training loss's
    key, when its name does not say so (default: found by name)."""
    try:
        return _read_jsonl(path, column)
    except UnicodeDecodeError as exc:
        raise _not_utf8(str(path), exc) from None


def _read_jsonl(path: str | os.PathLike, column: str | None = None) -> LossLog:
    name = str(path)
    seen_column = column is None
    collector = _Collector(name)
    ended = False  # a Monitor's final report was read: more steps after it are another run
    monitor = False  # a Monitor's report was read: the file is a Monitor's, counting from 0
    last_step = None  # the latest step of the run being read
    runs = 1
    cut_at = None  # the step of a guard's last cut, from the run's latest Monitor report
    rolled_back: list = []  # the steps whose batch the guard rolled back (ditto)
    # the training loss's key and the steps' key: the file's, the commonest among its first
    # records (a per-epoch summary's train_loss beside the steps' loss is another metric, not
    # a second curve interleaved with the first; a first record's loss_scale is not the loss)
    file_key, file_step, events_are_data = (_jsonl_keys(path, column) if column is None
                                            else (None, None, False))
    collector.empty = True
    known: dict = {}  # the columns of each key set read so far (_columns_of)
    with open(path, encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            text = text.strip()
            if not text:
                continue
            collector.empty = False
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise LrkitError(f"{name} line {line}: not valid JSON ({exc.msg}); each line must "
                                 'be one object such as {"step": 1, "loss": 0.5}') from None
            if not isinstance(record, dict):
                raise LrkitError(f"{name} line {line}: expected a JSON object, got "
                                 f"{type(record).__name__}")
            if "event" in record and record.get("event") != "report" and not events_are_data:
                # a user's own event record: read for a validation loss it holds alone (an
                # evaluation's record; it was lost), passed by otherwise (a run's start, an
                # epoch's summary, which beside the steps' own losses is another metric)
                keys = list(record)
                if _val_column(keys, TB_VAL_KEYS) is None or (file_key or "loss") in record:
                    continue
            if record.get("event") == "report":  # a Monitor's report
                monitor = True
                ended = ended or (record.get("event") == "report" and record.get("final") is True)
                evidence = record.get("evidence")
                if record.get("event") == "report" and isinstance(evidence, dict):
                    cut_at = evidence.get("guard_cut_at")
                    rolled_back = evidence.get("guard_rolled_back_at") or []
                continue
            columns = _columns_of(known, record, column or file_key, f"{name} line {line}")
            if file_step is not None and columns is not None:
                # the steps' key is the file's too: a validation record holding only its
                # epoch is at the step of the loss before it, not at step "3"
                columns["step"] = file_step if file_step in record else None
            # the step of a line with a training loss (a validation loss's own line may name an
            # earlier step: a checkpoint's)
            step = record.get("step") if columns is not None and columns["loss"] else None
            step = step if isinstance(step, (int, float)) and not isinstance(step, bool) else None
            # a Monitor's steps going back: a run that ended without its final report (it
            # crashed, or was stopped) and the next one, which counts from 0 again
            restarted = monitor and None not in (step, last_step) and step < last_step
            if ended or restarted:
                # a Monitor appends each run to its file and counts steps from 0 again: the
                # runs must not be interleaved by step, so the latest one is the log
                collector = _Collector(name)
                ended = False
                runs += 1
                cut_at, rolled_back = None, []
            last_step = step if step is not None else last_step
            seen_column |= _add_record(collector, record, columns, f"line {line}")
    _require_seen(seen_column, name, column)
    kind = "jsonl" if runs == 1 else f"jsonl (the last of {runs} runs in the file)"
    log = collector.result(kind + (f", key {column!r}" if column is not None else ""))
    if isinstance(rolled_back, list) and rolled_back:
        # a Monitor told of a guard left out the batches it rolled back at the same rate (a
        # lone NaN: a bad batch): so does the file, else "unstable x0.3" for that one batch
        skip = set(rolled_back)
        log = log.only(lambda step: step not in skip,
                       f"without the {len(skip)} batch(es) the guard rolled back")
    if isinstance(cut_at, (int, float)) and not isinstance(cut_at, bool):
        # a Monitor told of a guard diagnosed the steps since the guard's last cut (before it:
        # the rate that failed, and the probe's undone steps): so does the file, else it gave
        # "unstable x0.1" where the monitor said "healthy, keep"
        log = log.only(lambda step: step >= cut_at, f"from step {cut_at:g}: the guard's last cut",
                       val_too=True)
    return log


#: records read to choose a JSONL file's loss and step keys
KEY_SCAN_RECORDS = 200


def _jsonl_keys(path: str | os.PathLike,
                column: str | None) -> tuple[str | None, str | None, bool]:
    """The commonest training-loss key and step key among the first loss records of a JSONL
    file (ties: the names' own priority), from its records without an ``"event"`` key, else
    (a structured log whose every line is an event) from its events other than the Monitor's
    reports, which are then its data (the third value); ``None`` where none is found."""
    found = _scan_keys(path, column, events=False)
    if found[0] is None:
        events = _scan_keys(path, column, events=True)
        if events[0] is not None:
            return events[0], events[1], True
    return found[0], found[1], False


def _scan_keys(path: str | os.PathLike, column: str | None,
               events: bool) -> tuple[str | None, str | None]:
    import collections

    losses: collections.Counter = collections.Counter()
    steps: collections.Counter = collections.Counter()
    with open(path, encoding="utf-8-sig") as handle:
        for text in itertools.islice((t for t in handle if t.strip()), KEY_SCAN_RECORDS):
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                continue
            # (the Monitor's reports never; a user's events in the second pass only)
            if (not isinstance(record, dict) or record.get("event") == "report"
                    or ("event" in record) != events):
                continue
            try:
                columns = _record_columns(record, column, "scan")
            except LrkitError:
                continue
            if columns is not None and columns["loss"]:
                losses[columns["loss"]] += 1
                if columns["step"]:
                    steps[columns["step"]] += 1

    def top(counts: collections.Counter, order: tuple[str, ...]) -> str | None:
        if not counts:
            return None
        rank = {name: i for i, name in enumerate(order)}
        return max(counts, key=lambda k: (counts[k], -rank.get(k.strip().lower(), len(order))))

    return top(losses, LOSS_KEYS), top(steps, STEP_KEYS)


def read_json(path: str | os.PathLike, *, column: str | None = None) -> LossLog:
    """Read a ``.json`` log: a Hugging Face Trainer's ``trainer_state.json`` (an object with a
    ``log_history`` list), a JSON list of records, or JSONL under a .json name. ``column``: the
    training loss's key in the records (not for a trainer_state.json, whose loss is 'loss')."""
    name = str(path)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise _not_utf8(name, exc) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        first = next((line for line in text.splitlines() if line.strip()), "")
        try:
            json.loads(first)
        except json.JSONDecodeError:
            raise LrkitError(f"{name} line {exc.lineno}: not valid JSON ({exc.msg}); a "
                             "trainer_state.json may be cut short (still being written?); a "
                             'JSONL log has one object a line, such as {"step": 1, '
                             '"loss": 0.5}') from None
        # one object a line: a line that is wrong is named there
        return read_jsonl(path, column=column)
    if isinstance(document, dict) and "log_history" in document:
        require(column is None, f"{name} is a Trainer's trainer_state.json, whose training loss "
                                f"is its 'loss' entries: drop --tag/tag= {column!r}")
        return _read_trainer_state(document, name)
    if isinstance(document, list):
        return _read_records(document, name, column)
    if isinstance(document, dict):
        return _read_object(document, name, column)
    raise LrkitError(f"{name}: a JSON {type(document).__name__}, not a loss log; give JSONL (one "
                     'object a line, such as {"step": 1, "loss": 0.5}) or a trainer_state.json')


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _read_object(document: dict, name: str, column: str | None) -> LossLog:
    """One JSON object (on one line or several): a single record, or columns of equal length
    (``{"step": [...], "loss": [...]}``). It went to the JSONL reader, which read its first
    line, ``{``, as "not valid JSON"."""
    kind = document.get("kind")
    if isinstance(kind, str) and kind.startswith("lrkit."):
        raise LrkitError(
            f"{name} is lrkit's own {kind} result, not a training run's loss log (a range "
            "test ramps the rate: its curve is not a run to diagnose); give the training log "
            "(CSV, JSONL, TensorBoard), or show this result with lrkit report")
    lists = {key: value for key, value in document.items() if isinstance(value, list)}
    if not lists:  # one record (its nested values, a dict of metrics, left aside as in JSONL)
        return _read_records([document], name, column)
    # columns: the lists of plain values, of one length (a list of dicts beside them is
    # left aside)
    columns = {key: value for key, value in lists.items() if all(_scalar(v) for v in value)}
    for key, value in lists.items():
        # a loss column of lists ({"loss": [[2.6], [2.5]]}) was left aside, and the message
        # said there was no 'loss' key
        if key not in columns and (key == column or "loss" in str(key).lower()) and value \
                and all(isinstance(v, list) for v in value):
            raise LrkitError(f"{name}: the column {key!r} holds lists, not numbers (e.g. "
                             f"{json.dumps(value[0])[:40]}); give one number per step")
    lengths = {len(value) for value in columns.values()}
    if len(lengths) == 1 and lengths != {0}:
        (length,) = lengths
        records = [{key: value[i] for key, value in columns.items()} for i in range(length)]
        return _read_records(records, name, column)
    keys = ", ".join(sorted(map(str, document))[:8])
    raise LrkitError(
        f"{name}: a JSON object with keys {keys}, which is neither one record nor columns of "
        'equal length; give JSONL (one object a line, such as {"step": 1, "loss": 0.5}), a JSON '
        'list of such objects, columns ({"step": [...], "loss": [...]}) or a trainer_state.json')


def _read_records(records: list, name: str, column: str | None = None) -> LossLog:
    collector = _Collector(name)
    collector.empty = not records
    seen_column = column is None
    known: dict = {}  # the columns of each key set read so far (_columns_of)
    for i, record in enumerate(records):
        where = f"item {i}"
        if not isinstance(record, dict):
            raise LrkitError(f"{name} {where}: expected a JSON object, got "
                             f"{type(record).__name__}")
        seen_column |= _add_record(collector, record,
                                   _columns_of(known, record, column, f"{name} {where}"), where)
    _require_seen(seen_column, name, column)
    return collector.result("json" + (f", key {column!r}" if column is not None else ""))


#: a Trainer's evaluation loss: eval_loss, or eval_<name>_loss for a dict of eval datasets
_EVAL_SET_LOSS = re.compile(r"eval(_.+)?_loss")


def _read_trainer_state(state: dict, name: str) -> LossLog:
    """The Trainer's ``log_history``: an entry with ``loss`` (the mean training loss since the
    last log) and ``learning_rate`` every ``logging_steps``, one with ``eval_loss`` per
    evaluation, and a summary at the end whose ``train_loss`` is the mean over the whole run (not
    a point of the curve). Steps are the entries' ``step``, the Trainer's global step."""
    history = state["log_history"]
    if not isinstance(history, list):
        raise LrkitError(f"{name}: log_history is a {type(history).__name__}, not a list; is "
                         "this a Hugging Face trainer_state.json?")
    collector = _Collector(name)
    # the validation loss: eval_loss, or with a dict of eval datasets eval_<name>_loss (the
    # first by name when there are several; the format line names it)
    eval_keys = sorted({key for entry in history if isinstance(entry, dict) for key in entry
                        if _EVAL_SET_LOSS.fullmatch(key)})
    val_key = "eval_loss" if "eval_loss" in eval_keys or not eval_keys else eval_keys[0]
    columns = {"loss": "loss", "step": "step", "lr": "learning_rate", "val": val_key}
    hidden = 0
    for i, entry in enumerate(history):
        where = f"log_history[{i}]"
        if not isinstance(entry, dict):
            raise LrkitError(f"{name} {where}: expected a JSON object, got "
                             f"{type(entry).__name__}")
        if "loss" not in entry and val_key not in entry:
            continue  # the summary (train_loss, train_runtime ...), other evaluations' metrics
        loss = entry.get("loss")
        if _hidden_nan(loss, entry.get("grad_norm")):
            loss, hidden = math.nan, hidden + 1
        collector.add(where, entry.get("step"), loss, entry.get("learning_rate"),
                      entry.get(val_key), columns)
    if not collector.losses:
        every = state.get("logging_steps")
        at = state.get("global_step")
        raise LrkitError(
            f"{name}: its log_history holds no training loss (no entry with 'loss'"
            + (f"; the run got to step {at}" if isinstance(at, int) else "")
            + "); the Trainer logs the loss every logging_steps steps"
            + (f" ({every} in this run)" if isinstance(every, (int, float)) else "")
            + ": train with a smaller TrainingArguments(logging_steps=...), e.g. 10")
    source = "trainer_state.json, 'loss'"
    if any(v is not None for v in collector.lrs):
        source += ", rate 'learning_rate'"
    if collector.val:
        source += f", validation {val_key!r}"
        others = [k for k in eval_keys if k != val_key]
        if others:
            source += f" (also logged: {', '.join(repr(k) for k in others)})"
    if hidden:
        source += f"; {_hidden_note(hidden)}"
    return collector.result(source)


def _hidden_nan(loss: Any, grad_norm: Any) -> bool:
    """A Trainer's window of NaN losses, as it logs one: with logging_nan_inf_filter (its
    default) a NaN/inf step adds the window's mean so far, so a window of nothing but NaN logs
    0.0; its grad_norm (logged whenever clipping is on, also by default) is NaN/inf. (A loss
    above 0 beside a non-finite grad_norm can be fp16's loss scaler skipping a step, and is
    kept; lrkit's MonitorCallback, which knows whether a scaler ran, reads it the same way.)"""
    return (loss == 0 and not isinstance(loss, bool) and isinstance(grad_norm, (int, float))
            and not isinstance(grad_norm, bool) and not math.isfinite(grad_norm))


def _hidden_note(count: int) -> str:
    return (f"{count} loss{'es' if count > 1 else ''} logged as 0.0 beside a non-finite "
            "grad_norm read as NaN (the Trainer's logging_nan_inf_filter logs a window of NaN "
            "losses as 0.0)")


def event_files(directory: str | os.PathLike) -> list[Path]:
    """The TensorBoard event files directly in ``directory`` (what TensorBoard reads for a run)."""
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and "tfevents" in p.name)


def event_runs(directory: str | os.PathLike) -> list[Path]:
    """The run directories at or below ``directory``: those that hold event files themselves,
    not inside another one (``SummaryWriter.add_scalars`` writes its curves in folders of the
    run's own, ``run/Loss_train``)."""
    found = sorted({p.parent for p in Path(directory).rglob("*tfevents*") if p.is_file()})
    return [run for run in found if not any(other in run.parents for other in found)]


def _add_scalars_curves(run: Path) -> dict[str, list[list[tuple[float, float]]]]:
    """The curves ``SummaryWriter.add_scalars(main_tag, {key: value})`` wrote below ``run``:
    each key's folder ``<main_tag>_<key>`` (a ``/`` in the tag as ``_``) holds ``main_tag``'s
    values; named by the folder (``Loss_train``, ``Loss_val``)."""
    curves: dict[str, list[list[tuple[float, float]]]] = {}
    for folder in sorted(d for d in run.iterdir() if d.is_dir()):
        for file in event_files(folder):
            if file.stat().st_size == 0:
                continue
            scalars, _, _ = _read_event_file(file)
            for tag, values in scalars.items():
                if folder.name.startswith(tag.replace("/", "_") + "_"):
                    curves.setdefault(folder.name, []).append(values)
    return curves


# TensorBoard tags beyond the CSV/JSONL names: Hugging Face's Trainer logs train/loss,
# train/learning_rate and eval/loss; Lightning's LearningRateMonitor lr-Adam (and lr-Adam/pg1)
TB_LR_NAMES = ("learning_rate", "lr")
TB_VAL_KEYS = VAL_KEYS + ("eval/loss", "validation/loss", "valid/loss", "val_loss_epoch",
                          "loss/validation", "loss/valid", "loss_val", "loss_valid",
                          "loss_validation", "loss_eval")
_NOT_TRAIN = ("val", "valid", "validation", "eval", "test")


def _tag_hint(tags: list[str]) -> str:
    return ("pick the training loss with --tag TAG (in Python: read_log(path, tag=TAG)); "
            f"scalar tags there: {', '.join(repr(t) for t in tags)}")


def _loss_tag(tags: list[str], where: str) -> str:
    """The training loss's tag: a known name, else the one tag that says "loss" and is not a
    validation loss; several such tags, or none: an error that lists the tags."""
    found = _train_loss_key(tags, where, "scalar tags", _tag_hint(tags))
    if found is not None:
        return found
    raise LrkitError(f"{where}: no training loss among the scalar tags (looked for "
                     f"{', '.join(LOSS_KEYS[:3])}, or one tag with 'loss' in its name); "
                     + _tag_hint(tags))


def _lr_tag(tags: list[str]) -> str | None:
    found = _rate_column(tags)
    if found is None:  # train/learning_rate, optimizer/lr: the last part of the tag
        found = next((t for t in tags if t.lower().rsplit("/", 1)[-1] in TB_LR_NAMES), None)
    return found


def _tb_error(path: Any) -> LrkitError:
    what = ("holds TensorBoard event files" if Path(path).is_dir()
            else "looks like a TensorBoard event file")
    return LrkitError(f"{path} {what}, and reading those needs the optional tensorboard "
                      "package: pip install lrkit[tensorboard] (or export the scalars to CSV)")


def _read_event_file(file: Path) -> tuple[dict[str, list[tuple[float, float]]], list[str], bool]:
    """One event file's scalars by tag, as (step, value) in the order written; its other tags;
    and whether it held any event at all. Streamed event by event: ``add_scalar``'s
    simple_value and the "scalars" plugin's tensors (``add_scalar(new_style=True)``,
    ``tf.summary``) are read, other summaries are other tags. TensorBoard's EventAccumulator
    kept every event's proto until the end: 3.2 GB for a run of 1e6 steps with two tags."""
    try:
        from tensorboard.backend.event_processing import event_file_loader
        from tensorboard.util import tensor_util
    except ImportError:
        raise _tb_error(file) from None
    import numpy as np

    scalars: dict[str, list[tuple[float, float]]] = {}
    plugin: dict[str, str] = {}  # each tag's plugin, from its first value's metadata
    seen_event = False
    try:
        # the raw events: TensorBoard's read-time migration of each one (add_scalar's
        # simple_value to a tensor) took half the time; both forms are read here
        for event in event_file_loader.LegacyEventFileLoader(str(file)).Load():
            seen_event = True
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                tag = value.tag
                kind = value.WhichOneof("value")
                if tag not in plugin:
                    plugin[tag] = ("scalars" if kind == "simple_value"
                                   else value.metadata.plugin_data.plugin_name or kind or "")
                if plugin[tag] != "scalars":
                    continue
                if kind == "simple_value":  # a float32 as written: str gives its shortest form
                    number = float(str(np.float32(value.simple_value)))
                elif kind == "tensor":
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.size != 1:
                        continue
                    item = array.reshape(-1)[0]
                    number = float(str(item)) if array.dtype == "float32" else float(item)
                else:
                    continue
                scalars.setdefault(tag, []).append((float(event.step), number))
    except Exception as exc:  # noqa: BLE001 - a damaged file: a message, not the reader's trace
        raise LrkitError(f"{file}: cannot read this TensorBoard event file ({type(exc).__name__}: "
                         f"{exc}); it may be damaged or still being written") from None
    for tag, name in plugin.items():
        if name == "scalars":
            scalars.setdefault(tag, [])
    others = [tag for tag, name in plugin.items() if name != "scalars"]
    return scalars, others, seen_event


def _merge_runs(parts: list[list[tuple[float, float]]],
                restarts: list[tuple[float, int]] | None = None) -> list[tuple[float, float]]:
    """One tag's values across a run's event files, in file order. A file whose steps start
    below the steps already read is a restart (a run resumed from a checkpoint): what it logs
    again replaces what the earlier files had from that step on, as TensorBoard's own purge of
    orphaned data does. ``restarts`` gets (the step, how many values it replaced) of each."""
    merged: list[tuple[float, float]] = []
    for part in parts:
        if part and merged:
            first = part[0][0]
            if first < merged[-1][0]:
                kept = [item for item in merged if item[0] < first]
                if restarts is not None:
                    restarts.append((first, len(merged) - len(kept)))
                merged = kept
        merged.extend(part)
    merged.sort(key=lambda item: item[0])  # stable: equal steps keep their order
    return merged


def _held_rates(steps: list[float], lr: list[tuple[float, float]]) -> list[float] | None:
    """The rate at each loss step: the latest one logged at or before it (an LR monitor logs
    less often than the loss, or once an epoch); before the first, the first."""
    if not lr:
        return None
    at = [s for s, _ in lr]
    return [lr[max(0, bisect.bisect_right(at, step) - 1)][1] for step in steps]


def read_tensorboard(path: str | os.PathLike, tag: str | None = None) -> LossLog:
    """Read a TensorBoard run: an event file, a run directory (all its event files, a resumed
    run's later files replacing the steps they log again), or a directory with one run below
    it. The loss tag is found by name unless ``tag`` names it; the rate (``lr``,
    ``learning_rate``, ``lr-*`` ...) and a validation loss are used when logged. Steps are the
    event files' own step numbers."""
    p = Path(path)
    if p.is_dir():
        files = event_files(p)
        if not files:
            runs = event_runs(p)
            if len(runs) > 1:
                raise _several_runs(path, [str(r.relative_to(p)) for r in runs],
                                    "TensorBoard runs", runs[0])
            if not runs:
                raise LrkitError(f"{str(path)!r} holds no TensorBoard event files "
                                 "(events.out.tfevents.*)")
            p = runs[0]
            files = event_files(p)
    else:
        files = [p]
    try:  # lazy: the package is optional; one clear message when it is missing
        import tensorboard.backend.event_processing.plugin_event_accumulator  # noqa: F401
    except ImportError:
        raise _tb_error(path) from None

    by_tag: dict[str, list[list[tuple[float, float]]]] = {}
    others: set[str] = set()
    unreadable: list[str] = []
    for file in files:
        if file.stat().st_size == 0:
            unreadable.append(f"{file.name} (empty)")
            continue
        scalars, other, read_any = _read_event_file(file)
        if not read_any:
            unreadable.append(f"{file.name} (no readable events)")
        others.update(other)
        for name, values in scalars.items():
            by_tag.setdefault(name, []).append(values)
    if p.is_dir():
        for name, parts in _add_scalars_curves(p).items():
            by_tag.setdefault(name, []).extend(parts)
    where = str(p) if p.is_dir() else str(path)
    tags = sorted(by_tag)
    if not tags:
        if unreadable and len(unreadable) == len(files):
            raise LrkitError(f"{where}: no TensorBoard events could be read: "
                             f"{', '.join(unreadable)}; the file is empty or damaged, or not a "
                             "TensorBoard event file (a run still starting has written nothing "
                             "yet)")
        raise LrkitError(f"{where}: no scalar values in the TensorBoard events"
                         + (f" (other tags: {', '.join(sorted(others))})" if others else "")
                         + "; log the training loss with writer.add_scalar('train/loss', loss, "
                           "step)")
    if tag is not None:
        if tag not in by_tag:
            raise LrkitError(f"{where}: no scalar tag {tag!r}; " + _tag_hint(tags))
        leaf = tag.rsplit("/", 1)[-1]  # (its own name: 'lr-finder/loss' is a loss)
        if _lr_tag([leaf]) == leaf:  # refused as a CSV's rate column is (it read "the loss is
            # exactly 0.1 at all 200 steps")
            raise LrkitError(f"{where}: the tag {tag!r} holds the learning rate, not the "
                             "training loss; give the training loss's tag with --tag")
        loss_tag = tag
    else:
        loss_tag = _loss_tag(tags, where)
    restarts: list[tuple[float, int]] = []
    loss = _merge_runs(by_tag[loss_tag], restarts)
    if not loss:
        raise LrkitError(f"{where}: the tag {loss_tag!r} holds no values")
    hidden = 0
    norm_tag = loss_tag.rsplit("/", 1)[0] + "/grad_norm" if "/" in loss_tag else "grad_norm"
    if norm_tag in by_tag:  # a Trainer's window of NaN losses logged as 0.0 (_hidden_nan)
        norms = dict(_merge_runs(by_tag[norm_tag]))
        marked = [(s, math.nan if _hidden_nan(v, norms.get(s)) else v) for s, v in loss]
        hidden = sum(1 for (_, v), (_, m) in zip(loss, marked) if math.isnan(m) and v == v)
        loss = marked
    steps = [s for s, _ in loss]
    lr_tag = _lr_tag([t for t in tags if t != loss_tag])
    val_tag = _val_column([t for t in tags if t != loss_tag], TB_VAL_KEYS)
    lrs = _held_rates(steps, _merge_runs(by_tag[lr_tag])) if lr_tag else None
    if lrs is not None and not all(math.isfinite(v) and v >= 0 for v in lrs):
        lrs = None  # a rate the diagnosis would refuse: the loss is still worth reading
    val = _merge_runs(by_tag[val_tag]) if val_tag else []
    source = f"tensorboard, tag {loss_tag!r}"
    if lr_tag and lrs is not None:
        source += f", rate {lr_tag!r}"
    if val_tag:
        source += f", validation {val_tag!r}"
    if len(files) > 1:
        source += f", {len(files)} event files"
    for step, replaced in restarts:
        # said, as for CSV and JSONL: a second run written into the same folder from step 0
        # replaces the first whole, and the output should not pass it over
        source += (f"; a later event file logs from step {step:g} again: its values replace "
                   f"{replaced} earlier one{'s' if replaced != 1 else ''}")
    if unreadable:
        source += f"; skipped {', '.join(unreadable)}"
    if hidden:
        source += f"; {_hidden_note(hidden)}"
    return LossLog(steps, [v for _, v in loss], lrs, val, source)


def read_log(path: str | os.PathLike, *, tag: str | None = None) -> LossLog:
    """Read a CSV, JSONL or TensorBoard loss log (chosen by the name, else by the content)."""
    try:
        return _read_log(Path(path), path, tag)
    except OSError as exc:  # no permission, a broken disk: a message, not a traceback
        raise LrkitError(f"cannot read the loss log {str(path)!r} "
                         f"({exc.strerror or type(exc).__name__})") from None


def _read_log(p: Path, path: str | os.PathLike, tag: str | None) -> LossLog:
    if not p.exists():
        raise LrkitError(f"loss log {str(path)!r} does not exist")
    if p.is_dir():
        if tag is not None and (event_files(p) or event_runs(p)):
            return read_tensorboard(p, tag)  # a tag picks a TensorBoard scalar first
        return _read_dir(p, path, tag)
    with open(p, "rb") as handle:
        magic = handle.read(6)
    for start, kind, tool in ((b"\x1f\x8b", "gzip", "gunzip"), (b"PK\x03\x04", "zip", "unzip"),
                              (b"\xfd7zXZ", "xz", "unxz"), (b"BZh", "bzip2", "bunzip2")):
        if magic.startswith(start):  # (read as text, it said "not a TensorBoard event file")
            raise LrkitError(f"{str(path)!r} is {kind}-compressed; the log is read as it was "
                             f"written: decompress it first ({tool} {p.name})")
    if "tfevents" in p.name:
        return read_tensorboard(p, tag)
    # a tag names the training loss's column (CSV) or key (JSON, JSONL) there
    suffix = p.suffix.lower()
    if suffix == ".json":
        return read_json(p, column=tag)
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl(p, column=tag)
    if suffix in (".csv", ".tsv", ".txt"):
        return read_csv(p, column=tag)
    with open(p, "rb") as handle:
        head = handle.read(64).lstrip()
    if head.startswith((b"{", b"[", b"\xef\xbb\xbf{")):
        # JSONL, or one JSON document (a trainer_state.json renamed)
        return read_json(p, column=tag)
    if b"\x00" in head:
        return read_tensorboard(p, tag)
    return read_csv(p, column=tag)


_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


def _checkpoint_states(directory: Path) -> list[Path]:
    """The ``checkpoint-N/trainer_state.json`` files of a Trainer's output directory, by N."""
    found = [(int(m.group(1)), d / "trainer_state.json") for d in directory.iterdir()
             if d.is_dir() and (m := _CHECKPOINT.match(d.name))
             and (d / "trainer_state.json").is_file()]
    return [state for _, state in sorted(found)]


def _runs_below(directory: Path) -> dict[Path, str]:
    """The runs below ``directory``, each with what it holds: a folder with TensorBoard event
    files, a Lightning ``metrics.csv``, or a Trainer's ``trainer_state.json`` (in it or in its
    ``checkpoint-N`` folders). A run inside another (a Trainer's ``runs/...`` TensorBoard folder
    in its output directory) belongs to the outer one."""
    runs: dict[Path, str] = {}
    for root, _, files in os.walk(directory):
        here = Path(root)
        if "trainer_state.json" in files:
            run = here.parent if _CHECKPOINT.match(here.name) else here
            runs[run] = "trainer_state.json"
        elif "metrics.csv" in files:
            runs.setdefault(here, "metrics.csv")
        elif any("tfevents" in name for name in files):
            runs.setdefault(here, "TensorBoard")
    outer = sorted(runs, key=lambda run: len(run.parts))
    kept: dict[Path, str] = {}
    for run in outer:
        if not any(run != other and other in run.parents for other in kept):
            kept[run] = runs[run]
    return dict(sorted(kept.items()))


def _several_runs(path: Any, names: list[str], what: str, example: Path) -> LrkitError:
    """The error for a directory with several runs below it: the first ten, and one to give."""
    shown = ", ".join(names[:10]) + (f" ... ({len(names)} in all)" if len(names) > 10 else "")
    return LrkitError(f"{path} holds {len(names)} {what} ({shown}); give one run directory, "
                      f"e.g. {str(example)!r}")


def _global_step(state: Path) -> float:
    """A trainer_state.json's ``global_step`` (-1 when it cannot be read)."""
    try:
        value = json.loads(state.read_text(encoding="utf-8")).get("global_step", -1)
    except (OSError, ValueError, AttributeError):
        return -1.0
    return float(value) if isinstance(value, (int, float)) else -1.0


def _read_dir(p: Path, path: str | os.PathLike, column: str | None = None) -> LossLog:
    """A directory: the log in it (a Trainer's trainer_state.json, or a checkpoint's when that
    one is further; TensorBoard event files; a Lightning metrics.csv, in that order; else the
    latest checkpoint-N/trainer_state.json), or the one run below it. ``column``: the loss's
    column of a metrics.csv."""
    own = p / "trainer_state.json"
    if own.is_file():
        states = _checkpoint_states(p)
        # a resumed run that saved checkpoints but not yet its final state (it crashed, or runs
        # still): the output directory's own file is the older, shorter history. Written later
        # too: a checkpoint an earlier, longer run left in a reused output directory is not
        # this run's
        if states and states[-1].stat().st_mtime > own.stat().st_mtime:
            latest, own_step = _global_step(states[-1]), _global_step(own)
            if latest > own_step:
                newer = read_json(states[-1], column=column)
                newer.source = (f"{states[-1].parent.name}/trainer_state.json, further than the "
                                f"output directory's own (step {latest:g} against "
                                f"{own_step:g}): "
                                + newer.source.removeprefix("trainer_state.json, "))
                return newer
        return read_json(own, column=column)
    if event_files(p):
        return read_tensorboard(p, column)
    if (p / "metrics.csv").is_file():
        log = read_csv(p / "metrics.csv", column=column)
        log.source = "metrics.csv" + log.source.removeprefix("csv")  # the file the folder held
        return log
    states = _checkpoint_states(p)
    if states:
        # each checkpoint's state holds the history up to it: the latest holds the most
        log = read_json(states[-1], column=column)
        log.source = (f"{states[-1].parent.name}/trainer_state.json, the latest of "
                      f"{len(states)} checkpoint{'s' if len(states) > 1 else ''}: "
                      + log.source.removeprefix("trainer_state.json, "))
        return log
    runs = _runs_below(p)
    if not runs:
        raise LrkitError(f"{str(path)!r} is a directory without TensorBoard event files "
                         "(events.out.tfevents.*), a Hugging Face trainer_state.json or a "
                         "Lightning metrics.csv in it or below it; give a CSV or JSONL log file, "
                         "or the directory that holds one of those")
    if len(runs) > 1:
        kinds = set(runs.values())
        names = [str(r.relative_to(p)) + ("" if len(kinds) == 1 else f" ({kind})")
                 for r, kind in runs.items()]
        raise _several_runs(path, names, "TensorBoard runs" if kinds == {"TensorBoard"}
                            else "runs", next(iter(runs)))
    run = next(iter(runs))
    log = _read_dir(run, run, column)
    log.source = f"{run.relative_to(p)}: {log.source}"
    return log


def _finite(value: float) -> bool:
    return math.isfinite(value)
