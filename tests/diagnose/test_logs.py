"""Loss log readers: CSV, JSONL, TensorBoard's missing-package error, malformed files."""
import json
import sys

import numpy as np
import pytest

from lrkit.diagnose.logs import read_log
from lrkit.errors import LrkitError


def _values(n=120):
    return 2.3 * np.exp(-np.linspace(0, 4, n)) + 0.05


def test_csv_with_all_columns_and_lightning_style_val_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    lines = ["epoch,step,train_loss,lr,val_loss"]
    for i, v in enumerate(_values()):
        lines.append(f"0,{i},{v},0.01,")
        if (i + 1) % 30 == 0:
            lines.append(f"0,{i},,,{v * 1.1}")
    path.write_text("\n".join(lines) + "\n")
    log = read_log(path)
    assert len(log.losses) == 120 and log.lrs == [0.01] * 120
    assert len(log.val_losses) == 4 and log.val_losses[0][0] == 29
    assert log.diagnose().verdict == "healthy"


def test_csv_minimal_and_unsorted_steps(tmp_path):
    path = tmp_path / "loss.csv"
    rows = [f"{i},{v}" for i, v in enumerate(_values(40))]
    path.write_text("step,loss\n" + "\n".join(rows[20:] + rows[:20]) + "\n")
    log = read_log(path)
    assert log.losses == pytest.approx(list(_values(40))) and log.lrs is None


def test_jsonl_skips_reports_and_keeps_nan(tmp_path):
    path = tmp_path / "run.jsonl"
    lines = [json.dumps({"step": i, "loss": float(v), "lr": 0.1}) for i, v in enumerate(_values())]
    lines.insert(50, json.dumps({"event": "report", "verdict": "healthy"}))
    lines.append(json.dumps({"step": 120, "loss": "NaN"}))
    lines.append(json.dumps({"step": 121, "val_loss": 0.3}))
    path.write_text("\n".join(lines) + "\n\n")
    log = read_log(path)
    assert len(log.losses) == 121 and np.isnan(log.losses[-1]) and log.lrs == [0.1] * 121
    assert log.val_losses == [(121.0, 0.3)]
    assert log.diagnose().verdict == "diverged"


@pytest.mark.parametrize("name,text,match", [
    ("bad.csv", "step,loss\n0,1.0\n1,abc\n2,0.5\n", r"bad.csv line 3: loss value 'abc'"),
    ("short.csv", "step,loss\n0,1.0\n1\n", r"short.csv line 3: 1 fields"),
    ("noloss.csv", "step,acc\n0,0.5\n", r"noloss.csv line 1: no loss column"),
    ("empty.csv", "", r"empty.csv is empty"),
    ("bad.jsonl", '{"step": 0, "loss": 1.0}\n{"step": 1, "loss": \n',
     r"bad.jsonl line 2: not valid JSON"),
    ("list.jsonl", '{"step": 0, "loss": 1.0}\n[1, 2]\n',
     r"list.jsonl line 2: expected a JSON object"),
    ("nokey.jsonl", '{"step": 0, "acc": 1.0}\n', r"nokey.jsonl line 1: no 'loss'"),
    ("text.jsonl", '{"step": 0, "loss": "low"}\n', r"text.jsonl line 1: loss value 'low'"),
    ("vals.jsonl", '{"step": 0, "val_loss": 1.0}\n', r"no training loss values"),
])
def test_malformed_logs_name_the_line(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(LrkitError, match=match):
        read_log(path)


def test_missing_file():
    with pytest.raises(LrkitError, match="does not exist"):
        read_log("/nonexistent/loss.csv")


def test_content_sniffing(tmp_path):
    path = tmp_path / "loss.log"
    path.write_text("\n".join(json.dumps({"loss": float(v)}) for v in _values(20)))
    assert len(read_log(path).losses) == 20
    path.write_text("loss\n" + "\n".join(str(v) for v in _values(20)))
    assert len(read_log(path).losses) == 20


def test_tensorboard_without_the_package_gives_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "events.out.tfevents.123.host"
    path.write_bytes(b"\x00\x01binary")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    with pytest.raises(LrkitError, match=r"pip install lrkit\[tensorboard\]"):
        read_log(path)


def test_csv_and_jsonl_with_a_byte_order_mark(tmp_path):
    """Excel saves "CSV UTF-8" with a BOM; the header must still read 'loss'."""
    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfloss,step\n" + b"".join(
        f"{v},{i}\n".encode() for i, v in enumerate(_values(20))))
    log = read_log(csv_path)
    assert len(log.losses) == 20 and log.steps[:2] == [0.0, 1.0]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + b"".join(
        json.dumps({"step": i, "loss": v}).encode() + b"\n" for i, v in enumerate(_values(20))))
    assert len(read_log(jsonl).losses) == 20


@pytest.mark.parametrize("name", ["latin1.csv", "latin1.jsonl"])
def test_a_file_that_is_not_utf8_is_refused_clearly(tmp_path, name):
    path = tmp_path / name
    path.write_bytes("step,loss\n0,1\n".encode() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(LrkitError, match=rf"{name} is not UTF-8 text \(byte 0xe9"):
        read_log(path)


def test_a_directory_without_event_files_is_not_called_an_event_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LrkitError, match="is a directory without TensorBoard event files") as info:
        read_log(tmp_path)
    assert "looks like a TensorBoard event file" not in str(info.value)


def test_a_run_directory_with_event_files_goes_to_tensorboard(tmp_path, monkeypatch):
    (tmp_path / "events.out.tfevents.1.host").write_bytes(b"\x00")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    with pytest.raises(LrkitError, match="holds TensorBoard event files.*pip install"):
        read_log(tmp_path)


def test_a_tag_that_is_not_a_column_of_a_csv_or_jsonl_log_is_refused(tmp_path):
    from lrkit.diagnose.logs import read_log

    path = tmp_path / "run.csv"
    path.write_text("step,loss\n0,1.0\n1,0.9\n")
    with pytest.raises(LrkitError, match="no column 'train/loss'.*columns: 'step', 'loss'"):
        read_log(path, tag="train/loss")
    jsonl = tmp_path / "run.jsonl"
    jsonl.write_text('{"step": 0, "loss": 1.0}\n{"step": 1, "loss": 0.9}\n')
    with pytest.raises(LrkitError, match="no record has the key 'train/loss'"):
        read_log(jsonl, tag="train/loss")


def test_a_tag_picks_the_loss_column_of_a_csv_jsonl_or_json_log(tmp_path, capsys):
    """Two loss-like columns: the error said to rename one in the file; --tag picks it."""
    from lrkit.cli import main
    from lrkit.diagnose.logs import read_log

    rows = [(i, 2.0 - 0.01 * i, 5.0 - 0.02 * i) for i in range(40)]
    csv_path = tmp_path / "run.csv"
    csv_path.write_text("step,ce_loss,aux_loss\n" + "".join(f"{s},{a},{b}\n" for s, a, b in rows))
    with pytest.raises(LrkitError, match="several columns could be the training loss.*--tag"):
        read_log(csv_path)
    log = read_log(csv_path, tag="aux_loss")
    assert log.losses[:2] == [5.0, 4.98] and log.steps[:2] == [0, 1]
    assert "'aux_loss'" in log.source
    jsonl = tmp_path / "run.jsonl"
    jsonl.write_text("".join(f'{{"step": {s}, "ce_loss": {a}, "aux_loss": {b}}}\n'
                             for s, a, b in rows)
                     + '{"step": 40, "val_loss": 1.5}\n')  # a record of another metric
    log = read_log(jsonl, tag="ce_loss")
    assert log.losses[:2] == [2.0, 1.99] and len(log.losses) == 40
    as_json = tmp_path / "records.json"
    as_json.write_text("[" + ", ".join(f'{{"step": {s}, "ce_loss": {a}}}' for s, a, _ in rows)
                       + "]")
    assert read_log(as_json, tag="ce_loss").losses[-1] == pytest.approx(1.61)
    assert main(["diagnose", str(csv_path), "--tag", "ce_loss", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"]


def test_a_json_list_with_a_validation_only_record_reads_it_as_validation(tmp_path):
    """The JSON-list reader looked up 'loss' in a record that had only val_loss (KeyError);
    it now reads records as the JSONL reader does."""
    from lrkit.diagnose.logs import read_log

    records = [{"step": s, "loss": 2.0 - 0.01 * s} for s in range(20)]
    records.append({"step": 19, "val_loss": 1.9})
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records))
    log = read_log(path)
    assert len(log.losses) == 20 and log.val_losses == [(19.0, 1.9)]


# -- what the fifth review found (each failed before its fix) -------------------------------------
def test_settings_named_after_the_rate_are_not_the_rate(tmp_path):
    values = _values()
    numbers = tmp_path / "numbers.csv"  # a sweep's config column: read as rate 500 before
    numbers.write_text("step,loss,lr_warmup_steps\n"
                       + "".join(f"{i},{v},500\n" for i, v in enumerate(values)))
    words = tmp_path / "words.csv"  # a text column: 'not a number' on line 2 before
    words.write_text("step,loss,lr_scheduler\n"
                     + "".join(f"{i},{v},cosine\n" for i, v in enumerate(values)))
    for path in (numbers, words):
        log = read_log(path)
        assert log.lrs is None and log.losses == pytest.approx(list(values))
    monitor = tmp_path / "monitor.csv"  # a LearningRateMonitor's names are still rates
    monitor.write_text("step,loss,lr-AdamW-momentum,lr-AdamW/pg1\n"
                       + "".join(f"{i},{v},0.9,0.003\n" for i, v in enumerate(values)))
    assert read_log(monitor).lrs == [0.003] * len(values)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_a_rate_logged_on_some_loss_rows_is_carried_forward(tmp_path, suffix):
    values = _values()
    path = tmp_path / f"sparse.{suffix}"
    rate = [0.1 if i < 60 else 0.01 for i in range(len(values))]
    if suffix == "csv":  # the rate only where it is logged, every 10th row
        path.write_text("step,loss,lr\n" + "".join(
            f"{i},{v},{rate[i] if i % 10 == 0 else ''}\n" for i, v in enumerate(values)))
    else:
        path.write_text("".join(json.dumps({"step": i, "loss": float(v),
                                            **({"lr": rate[i]} if i % 10 == 0 else {})}) + "\n"
                                for i, v in enumerate(values)))
    log = read_log(path)  # (before: no rate at all, and no suggested rate)
    assert log.lrs == rate
    assert log.diagnose().suggested_lr is not None


def test_a_monitor_run_that_crashed_is_not_mixed_with_the_next_run(tmp_path):
    import math

    import lrkit

    path = tmp_path / "runs.jsonl"
    crashed = lrkit.Monitor(report_every=50, log_file=path)
    for step in range(100):  # blows up, reported at 50 and 100, then dies without close()
        crashed.update(1.0 if step < 60 else 1.0 + 0.5 * (step - 60))
    crashed._file.close()
    healthy = lrkit.Monitor(report_every=50, log_file=path)
    for step in range(100):
        healthy.update(2.3 * math.exp(-step / 30) + 0.05)
    verdict = healthy.close().verdict
    log = read_log(path)  # (before: both runs' steps 0-99 interleaved, "unstable x0.1")
    assert len(log.losses) == 100 and "the last of 2 runs" in log.source
    assert log.losses == pytest.approx([float(v) for v in healthy.losses])
    assert log.diagnose().verdict == verdict == "healthy"


def test_tensorboards_own_csv_export_of_a_tag_is_read(tmp_path):
    # "Wall time,Step,Value": what TensorBoard's download button writes for one scalar tag
    path = tmp_path / "run-.-tag-train_loss.csv"
    values = _values()
    path.write_text("Wall time,Step,Value\n" + "".join(
        f"{1.7e9 + i},{10 * i},{v}\n" for i, v in enumerate(values)))
    log = read_log(path)  # (before: "no loss column in the header")
    assert log.losses == pytest.approx(list(values)) and log.steps[:3] == [0, 10, 20]
    assert "column 'Value'" in log.source


def test_a_validation_loss_of_an_earlier_step_does_not_start_another_run(tmp_path):
    # the step count going back starts another run only on lines with a training loss: a
    # checkpoint's validation loss, logged for its own (earlier) step, cut the run in two
    import math

    import lrkit

    path = tmp_path / "run.jsonl"
    monitor = lrkit.Monitor(log_file=path, report_every=100)
    for step in range(300):
        monitor.update(2.0 * math.exp(-step / 80) + 0.1, lr=0.01)
        if step == 149:
            monitor.update_val(0.9, step=100)
    verdict = monitor.close().verdict
    log = read_log(path)
    assert len(log.losses) == 300 and log.source == "jsonl" and (100, 0.9) in log.val_losses
    assert log.diagnose().verdict == verdict


def test_lightnings_per_step_rate_column_is_the_rate(tmp_path):
    # self.log("lr", ..., on_step=True, on_epoch=True) writes lr_step and lr_epoch
    path = tmp_path / "metrics.csv"
    values = _values()
    path.write_text("step,loss,lr_epoch,lr_step\n" + "".join(
        f"{i},{v},0.5,0.01\n" for i, v in enumerate(values)))
    assert read_log(path).lrs == [0.01] * len(values)
