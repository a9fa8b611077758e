"""Read a loss log: CSV, JSONL, or TensorBoard event files (with the optional tensorboard package).

Columns (CSV header names or JSONL keys, case-insensitive): ``loss`` (or ``train_loss``,
``train/loss``, ``training_loss``) is required; ``step`` (or ``global_step``, ``iteration``,
``iter``, ``epoch``), ``lr`` (or ``learning_rate``, ``lr-*``) and ``val_loss`` (or ``valid_loss``,
``validation_loss``, ``val/loss``) are optional. Rows that carry only a validation loss (as
Lightning's CSVLogger writes them) add to the validation curve. JSONL lines with an ``"event"``
key (the Monitor's reports) are skipped.
"""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

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


def _number(text: Any, path: str, line: int, column: str) -> float | None:
    """A float from a cell; ``None`` for an empty cell; NaN/inf kept; an error names the line."""
    if text is None:
        return None
    if isinstance(text, bool):
        raise LrkitError(f"{path} line {line}: {column} is {text!r}, not a number")
    if isinstance(text, (int, float)):
        return float(text)
    text = str(text).strip()
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise LrkitError(f"{path} line {line}: {column} value {text!r} is not a number; fix or "
                         "remove that line") from None


class _Collector:
    def __init__(self, path: str) -> None:
        self.path = path
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.lrs: list[float | None] = []
        self.val: list[tuple[float, float]] = []

    def add(self, line: int, step: Any, loss: Any, lr: Any, val: Any, columns: dict) -> None:
        loss_v = _number(loss, self.path, line, columns["loss"]) if loss is not None else None
        step_v = _number(step, self.path, line, columns.get("step") or "step") \
            if step is not None else None
        val_v = _number(val, self.path, line, columns.get("val") or "val_loss") \
            if val is not None else None
        lr_v = _number(lr, self.path, line, columns.get("lr") or "lr") if lr is not None else None
        if loss_v is not None:
            self.steps.append(step_v if step_v is not None else float(len(self.losses)))
            self.losses.append(loss_v)
            self.lrs.append(lr_v)
        if val_v is not None:
            self.val.append((step_v if step_v is not None else float(len(self.losses)), val_v))

    def result(self, source: str) -> LossLog:
        if not self.losses:
            raise LrkitError(f"{self.path}: no training loss values found; the log needs a "
                             f"'loss' column/key (or one of {', '.join(LOSS_KEYS[1:])})")
        lrs = None
        if any(v is not None for v in self.lrs):
            missing = [i for i, v in enumerate(self.lrs) if v is None]
            lrs = None if missing else [float(v) for v in self.lrs]  # type: ignore[arg-type]
        # keep the order of the steps (logs are sometimes appended out of order)
        order = sorted(range(len(self.losses)), key=lambda i: self.steps[i])
        return LossLog([self.steps[i] for i in order], [self.losses[i] for i in order],
                       [lrs[i] for i in order] if lrs else None, sorted(self.val), source)


def _not_utf8(name: str, exc: UnicodeDecodeError) -> LrkitError:
    return LrkitError(f"{name} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                      f"{exc.start}); save the log as UTF-8 CSV or JSONL (a TensorBoard event "
                      "file needs 'tfevents' in its name)")


def read_csv(path: str | os.PathLike) -> LossLog:
    """Read a CSV log (UTF-8; a byte-order mark, as Excel writes one, is skipped)."""
    try:
        return _read_csv(path)
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


def _read_csv(path: str | os.PathLike) -> LossLog:
    name = str(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        first = handle.readline()
        if not first:
            raise LrkitError(f"{name} is empty; give a CSV with a header row such as "
                             "step,loss,lr,val_loss")
        reader = csv.reader(itertools.chain([first], handle), delimiter=_delimiter(first, path))
        header = [h.strip() for h in next(reader)]
        loss_col = _find(header, LOSS_KEYS)
        if loss_col is None:
            raise LrkitError(f"{name} line 1: no loss column in the header {header}; name it "
                             "'loss' (optional: step, lr, val_loss)")
        columns = {"loss": loss_col, "step": _find(header, STEP_KEYS),
                   "lr": _find(header, LR_KEYS, prefix="lr"), "val": _find(header, VAL_KEYS)}
        index = {k: header.index(v) for k, v in columns.items() if v is not None}
        collector = _Collector(name)
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise LrkitError(f"{name} line {line}: {len(row)} fields, but the header has "
                                 f"{len(header)}; fix or remove that line")
            get = lambda key: row[index[key]] if key in index else None  # noqa: E731
            collector.add(line, get("step"), get("loss"), get("lr"), get("val"), columns)
    return collector.result("csv")


def read_jsonl(path: str | os.PathLike) -> LossLog:
    """Read a JSONL log (UTF-8; a byte-order mark is skipped)."""
    try:
        return _read_jsonl(path)
    except UnicodeDecodeError as exc:
        raise _not_utf8(str(path), exc) from None


def _read_jsonl(path: str | os.PathLike) -> LossLog:
    name = str(path)
    collector = _Collector(name)
    ended = False  # a Monitor's final report was read: more steps after it are another run
    runs = 1
    cut_at = None  # the step of a guard's last cut, from the run's latest Monitor report
    with open(path, encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            text = text.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise LrkitError(f"{name} line {line}: not valid JSON ({exc.msg}); each line must "
                                 'be one object such as {"step": 1, "loss": 0.5}') from None
            if not isinstance(record, dict):
                raise LrkitError(f"{name} line {line}: expected a JSON object, got "
                                 f"{type(record).__name__}")
            if "event" in record:
                ended = ended or (record.get("event") == "report" and record.get("final") is True)
                evidence = record.get("evidence")
                if record.get("event") == "report" and isinstance(evidence, dict):
                    cut_at = evidence.get("guard_cut_at")
                continue
            if ended:
                # a Monitor appends each run to its file and counts steps from 0 again: the
                # runs must not be interleaved by step, so the latest one is the log
                collector = _Collector(name)
                ended = False
                runs += 1
                cut_at = None
            keys = list(record)
            columns = {"loss": _find(keys, LOSS_KEYS), "step": _find(keys, STEP_KEYS),
                       "lr": _find(keys, LR_KEYS, prefix="lr"), "val": _find(keys, VAL_KEYS)}
            if columns["loss"] is None and columns["val"] is None:
                raise LrkitError(f"{name} line {line}: no 'loss' (or 'val_loss') key in "
                                 f"{sorted(keys)}")
            pick = lambda key: record[columns[key]] if columns[key] else None  # noqa: E731
            loss = pick("loss")
            if isinstance(loss, str) and loss.lower() in ("nan", "inf", "-inf", "infinity"):
                loss = float(loss)
            columns["loss"] = columns["loss"] or "loss"
            collector.add(line, pick("step"), loss, pick("lr"), pick("val"), columns)
    log = collector.result("jsonl" if runs == 1 else f"jsonl (the last of {runs} runs in the file)")
    if isinstance(cut_at, (int, float)) and not isinstance(cut_at, bool):
        # a Monitor told of a guard diagnosed the steps since the guard's last cut (before it:
        # the rate that failed, and the probe's undone steps): so does the file, else it gave
        # "unstable x0.1" where the monitor said "healthy, keep"
        keep = [i for i, step in enumerate(log.steps) if step >= cut_at]
        if len(keep) < len(log.steps) and keep:
            log = LossLog([log.steps[i] for i in keep], [log.losses[i] for i in keep],
                          [log.lrs[i] for i in keep] if log.lrs else None,
                          [(at, v) for at, v in log.val_losses if at >= cut_at],
                          f"{log.source}, from step {cut_at:g}: the guard's last cut")
    return log


def event_files(directory: str | os.PathLike) -> list[Path]:
    """The TensorBoard event files directly in ``directory`` (what TensorBoard reads for a run)."""
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and "tfevents" in p.name)


def read_tensorboard(path: str | os.PathLike, tag: str | None = None) -> LossLog:
    what = ("holds TensorBoard event files" if Path(path).is_dir()
            else "looks like a TensorBoard event file")
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        raise LrkitError(
            f"{path} {what}, and reading those needs the optional "
            "tensorboard package: pip install lrkit[tensorboard] (or export the scalars to CSV)"
        ) from None
    acc = event_accumulator.EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    loss_tag = tag or _find(tags, LOSS_KEYS)
    if loss_tag is None or loss_tag not in tags:
        raise LrkitError(f"{path}: no scalar tag {tag or 'loss'!r}; scalar tags there: {tags}; "
                         "pick one with --tag")
    events = acc.Scalars(loss_tag)
    lr_tag = _find(tags, LR_KEYS, prefix="lr")
    val_tag = _find(tags, VAL_KEYS)
    lr_by_step = {e.step: e.value for e in acc.Scalars(lr_tag)} if lr_tag else {}
    lrs = [lr_by_step.get(e.step) for e in events]
    return LossLog([float(e.step) for e in events], [float(e.value) for e in events],
                   [float(v) for v in lrs] if lr_by_step and all(v is not None for v in lrs)
                   else None,
                   [(float(e.step), float(e.value)) for e in acc.Scalars(val_tag)] if val_tag
                   else [], "tensorboard")


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
        if not event_files(p):
            raise LrkitError(f"{str(path)!r} is a directory without TensorBoard event files "
                             "(events.out.tfevents.*) in it; give a CSV or JSONL log file, or a "
                             "TensorBoard run directory (the one holding the event files)")
        return read_tensorboard(p, tag)
    if "tfevents" in p.name:
        return read_tensorboard(p, tag)
    require(tag is None, f"tag={tag!r} picks a TensorBoard scalar, but {str(path)!r} is not a "
                         "TensorBoard event file: a CSV or JSONL log's loss is its 'loss' column")
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return read_jsonl(p)
    if suffix in (".csv", ".tsv", ".txt"):
        return read_csv(p)
    with open(p, "rb") as handle:
        head = handle.read(64).lstrip()
    if head.startswith(b"{"):
        return read_jsonl(p)
    if b"\x00" in head:
        return read_tensorboard(p, tag)
    return read_csv(p)


def _finite(value: float) -> bool:
    return math.isfinite(value)
