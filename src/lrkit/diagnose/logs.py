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
import re
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


def event_runs(directory: str | os.PathLike) -> list[Path]:
    """The run directories at or below ``directory``: those that hold event files themselves."""
    return sorted({p.parent for p in Path(directory).rglob("*tfevents*") if p.is_file()})


# TensorBoard tags beyond the CSV/JSONL names: Hugging Face's Trainer logs train/loss,
# train/learning_rate and eval/loss; Lightning's LearningRateMonitor lr-Adam (and lr-Adam/pg1)
TB_LR_NAMES = ("learning_rate", "lr")
TB_VAL_KEYS = VAL_KEYS + ("eval/loss", "validation/loss", "valid/loss", "val_loss_epoch",
                          "loss/validation", "loss/valid")
_NOT_TRAIN = ("val", "valid", "validation", "eval", "test")


def _tag_hint(tags: list[str]) -> str:
    return ("pick the training loss with --tag TAG (in Python: read_log(path, tag=TAG)); "
            f"scalar tags there: {', '.join(repr(t) for t in tags)}")


def _loss_tag(tags: list[str], where: str) -> str:
    """The training loss's tag: a known name, else the one tag that says "loss" and is not a
    validation loss; several such tags, or none: an error that lists the tags."""
    known = _find(tags, LOSS_KEYS)
    if known is not None:
        return known
    lossy = [t for t in tags if "loss" in t.lower()
             and not set(re.split(r"[^a-z]+", t.lower())) & set(_NOT_TRAIN)]
    if len(lossy) == 1:
        return lossy[0]
    if lossy:
        raise LrkitError(f"{where}: several scalar tags could be the training loss "
                         f"({', '.join(repr(t) for t in lossy)}); " + _tag_hint(tags))
    raise LrkitError(f"{where}: no training loss among the scalar tags (looked for "
                     f"{', '.join(LOSS_KEYS[:3])}, or one tag with 'loss' in its name); "
                     + _tag_hint(tags))


def _lr_tag(tags: list[str]) -> str | None:
    found = _find(tags, LR_KEYS, prefix="lr")
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
    and whether it held any event at all."""
    try:
        from tensorboard.backend.event_processing import plugin_event_accumulator
        from tensorboard.util import tensor_util
    except ImportError:
        raise _tb_error(file) from None
    # size 0: keep every value (the default samples 10 per tag); no purge: restarts are
    # handled across the run's files below
    acc = plugin_event_accumulator.EventAccumulator(
        str(file), size_guidance={"tensors": 0}, purge_orphaned_data=False)
    try:
        acc.Reload()
    except Exception as exc:  # noqa: BLE001 - a damaged file: a message, not the reader's trace
        raise LrkitError(f"{file}: cannot read this TensorBoard event file ({type(exc).__name__}: "
                         f"{exc}); it may be damaged or still being written") from None
    scalars: dict[str, list[tuple[float, float]]] = {}
    others: list[str] = []
    for tag in acc.Tags().get("tensors", []):
        # add_scalar writes simple_value, add_scalar(new_style=True) and tf.summary a tensor:
        # the plugin accumulator gives both as tensors of the "scalars" plugin
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            others.append(tag)
            continue
        values = []
        for event in acc.Tensors(tag):
            array = tensor_util.make_ndarray(event.tensor_proto)
            if array.size == 1:
                value = array.reshape(-1)[0]
                # a float32 as written (0.01, not 0.009999999776): str gives its shortest form
                values.append((float(event.step), float(str(value)) if array.dtype == "float32"
                               else float(value)))
        scalars[tag] = values
    return scalars, others, acc.file_version is not None or bool(scalars or others)


def _merge_runs(parts: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """One tag's values across a run's event files, in file order. A file whose steps start
    below the steps already read is a restart (a run resumed from a checkpoint): what it logs
    again replaces what the earlier files had from that step on, as TensorBoard's own purge of
    orphaned data does."""
    merged: list[tuple[float, float]] = []
    for part in parts:
        if part and merged:
            first = part[0][0]
            if first < merged[-1][0]:
                merged = [item for item in merged if item[0] < first]
        merged.extend(part)
    merged.sort(key=lambda item: item[0])  # stable: equal steps keep their order
    return merged


def _held_rates(steps: list[float], lr: list[tuple[float, float]]) -> list[float] | None:
    """The rate at each loss step: the latest one logged at or before it (an LR monitor logs
    less often than the loss, or once an epoch); before the first, the first."""
    if not lr:
        return None
    import bisect

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
                names = [str(r.relative_to(p)) for r in runs]
                shown = ", ".join(names[:10]) + (f" ... ({len(names)} in all)"
                                                 if len(names) > 10 else "")
                raise LrkitError(f"{path} holds {len(runs)} TensorBoard runs ({shown}); give one "
                                 f"run directory, e.g. {str(runs[0])!r}")
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
        loss_tag = tag
    else:
        loss_tag = _loss_tag(tags, where)
    loss = _merge_runs(by_tag[loss_tag])
    if not loss:
        raise LrkitError(f"{where}: the tag {loss_tag!r} holds no values")
    steps = [s for s, _ in loss]
    lr_tag = _lr_tag([t for t in tags if t != loss_tag])
    val_tag = _find([t for t in tags if t != loss_tag], TB_VAL_KEYS)
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
    if unreadable:
        source += f"; skipped {', '.join(unreadable)}"
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
        if not event_files(p) and not event_runs(p):
            raise LrkitError(f"{str(path)!r} is a directory without TensorBoard event files "
                             "(events.out.tfevents.*) in it; give a CSV or JSONL log file, or a "
                             "TensorBoard run directory (the one holding the event files)")
        return read_tensorboard(p, tag)  # a run, or a directory with one run below it
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
