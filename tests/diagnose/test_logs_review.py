"""A review of the log readers: records and files each read wrongly without an error."""
import json

import numpy as np
import pytest

from lrkit.diagnose.logs import read_log
from lrkit.errors import LrkitError


def _losses(n=400):
    rng = np.random.default_rng(0)
    return 0.2 + 2.0 * np.exp(-np.arange(n) / 60) * np.exp(rng.normal(0, 0.05, n))


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_per_epoch_summary_records_are_another_metric_not_the_curve(tmp_path):
    losses = _losses()
    records = []
    for step, loss in enumerate(losses):
        records.append({"step": step, "loss": float(loss)})
        if step % 50 == 49:  # an epoch summary: its own loss key and a validation loss
            records.append({"epoch": step // 50, "train_loss": float(loss), "val_loss": 0.5})
    log = read_log(_jsonl(tmp_path / "run.jsonl", records))
    assert len(log.losses) == 400  # it kept the 8 epoch means alone ("8 restarts")
    assert len(log.val_losses) == 8


def test_a_users_own_event_records_are_data(tmp_path):
    losses = _losses(100)
    records = [{"event": "train", "step": i, "loss": float(v)} for i, v in enumerate(losses)]
    records += [{"event": "eval", "step": 99, "val_loss": 0.4}]
    log = read_log(_jsonl(tmp_path / "structlog.jsonl", records))
    assert len(log.losses) == 100 and len(log.val_losses) == 1  # "needs a 'loss' column"


@pytest.mark.parametrize("tag", ["epoch_accuracy", "learning_rate", "val_loss",
                                 # judged by the tag's words ('/' is '_' in the file name)
                                 "train_learning_rate", "Loss_val", "optimizer_lr"])
def test_a_tensorboard_export_of_another_tag_is_refused(tmp_path, tag):
    path = tmp_path / f"run-train-tag-{tag}.csv"
    path.write_text("Wall time,Step,Value\n" + "".join(f"1.0,{i},{0.1 + i * 0.01}\n"
                                                       for i in range(20)))
    with pytest.raises(LrkitError, match="not the training loss"):
        read_log(path)
    loss = tmp_path / "run-train-tag-epoch_loss.csv"
    loss.write_text(path.read_text())
    assert len(read_log(loss).losses) == 20


def test_a_semicolon_csv_with_decimal_commas_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("step;loss\n" + "".join(f"{i};{str(round(float(v), 4)).replace('.', ',')}\n"
                                            for i, v in enumerate(_losses(40))))
    log = read_log(path)
    assert log.losses[0] == pytest.approx(round(float(_losses(40)[0]), 4))


def test_a_batch_index_logged_as_the_step_is_refused_but_runs_started_again_are_read(tmp_path):
    losses = _losses(400)
    rows = "".join(f"{i % 100},{v}\n" for i, v in enumerate(losses))  # epochs of 100 batches
    path = tmp_path / "batchidx.csv"
    path.write_text("step,loss\n" + rows)
    with pytest.raises(LrkitError, match="batch index within each epoch"):
        read_log(path)  # it kept the last epoch alone: "too_slow, x10"
    again = tmp_path / "reruns.csv"  # the same script run three times into one file
    again.write_text("step,loss\n" + "".join(f"{i},{v}\n" for i, v in enumerate(losses[:100])) * 3)
    log = read_log(again)
    assert len(log.losses) == 100 and "restart" in log.source


def test_prefixed_step_rate_and_validation_names_are_read_in_csv_and_jsonl(tmp_path):
    losses = _losses(40)
    csv_path = tmp_path / "wandb.csv"
    csv_path.write_text("train/global_step,train/loss,train/learning_rate,eval/loss\n" + "".join(
        f"{100 * i},{v},0.1,{'' if i % 10 else 0.5}\n" for i, v in enumerate(losses)))
    log = read_log(csv_path)
    assert log.steps[-1] == 3900 and log.lrs[0] == 0.1 and len(log.val_losses) == 4
    jsonl = _jsonl(tmp_path / "wandb.jsonl", [{"train/global_step": 10 * i, "train/loss": float(v)}
                                              for i, v in enumerate(losses)])
    assert read_log(jsonl).steps[-1] == 390  # the rows' positions were the steps


def test_a_numpy_savetxt_header_is_read(tmp_path):
    path = tmp_path / "np.csv"
    path.write_text("# step,loss\n" + "".join(f"{100 * i},{v}\n"
                                              for i, v in enumerate(_losses(40))))
    assert read_log(path).steps[-1] == 3900


def test_pandas_rate_rows_with_a_null_loss_are_rates_not_a_divergence(tmp_path):
    records = []
    for i, v in enumerate(_losses(100)):
        records.append({"step": i, "loss": float(v), "lr": None})
        if i % 25 == 24:  # the rate logged in rows of its own; pandas writes loss: null there
            records.append({"step": i, "loss": None, "lr": 0.1})
    log = read_log(_jsonl(tmp_path / "pandas.jsonl", records))
    assert len(log.losses) == 100 and all(np.isfinite(log.losses))  # a last NaN: "diverged"
    assert log.lrs is not None and log.lrs[-1] == 0.1


def test_rows_without_a_step_in_a_log_with_steps(tmp_path):
    losses = _losses(50)
    path = tmp_path / "gap.csv"
    rows = [f"{100 * i},{v}" for i, v in enumerate(losses)]
    rows[20] = f",{losses[20]}"  # one empty step cell: its position, 20, sat among the steps
    path.write_text("step,loss\n" + "\n".join(rows) + "\n")
    with pytest.raises(LrkitError, match="line 22: a loss without a step"):
        read_log(path)
    records = []
    for i, v in enumerate(losses):
        records.append({"step": 10 * i, "epoch": i // 10, "loss": float(v)})
        if i % 10 == 9:  # a validation record holding its epoch only
            records.append({"epoch": i // 10, "val_loss": 0.5})
    log = read_log(_jsonl(tmp_path / "val.jsonl", records))
    assert [at for at, _ in log.val_losses][:2] == [90, 190]  # it was epochs 0, 1


def test_a_tab_separated_log_keeps_its_thousands_separators_an_error(tmp_path):
    path = tmp_path / "us.tsv"  # '1,000' is a thousand there, never 1.0
    path.write_text("step\tloss\n" + "".join(f"{i * 10:,}\t{v}\n" for i, v in enumerate(_losses(200))))
    with pytest.raises(LrkitError, match="'1,000' is not a number"):
        read_log(path)


def test_event_records_beside_the_steps_are_passed_by_and_a_start_record_too(tmp_path):
    losses = _losses()
    records = [{"event": "start", "config": {"lr": 0.1}}]
    for step, loss in enumerate(losses):
        records.append({"step": step, "loss": float(loss)})
        if step % 50 == 49:
            records.append({"event": "epoch_end", "epoch": step // 50, "loss": 1.0,
                            "val_loss": 0.5})
    log = read_log(_jsonl(tmp_path / "events.jsonl", records))
    assert len(log.losses) == 400  # read as restarts at the epoch numbers: 9 left; then refused


@pytest.mark.parametrize("first", [{"epoch": 0, "train_loss": 2.5, "val_loss": 2.4},
                                   {"step": 0, "loss_scale": 65536}])
def test_the_files_keys_are_its_commonest_not_its_first_records(tmp_path, first):
    records = [first] + [{"step": 10 * i, "loss": float(v)} for i, v in enumerate(_losses())]
    log = read_log(_jsonl(tmp_path / "first.jsonl", records))
    assert len(log.losses) >= 399 and max(log.losses) < 10  # the loss scale read as the loss


def test_a_global_step_wins_over_an_epoch_named_either_way(tmp_path):
    records = [{"train/epoch": round(i / 400, 2), "train/global_step": 10 * i,
                "train/loss": float(v)} for i, v in enumerate(_losses())]
    assert read_log(_jsonl(tmp_path / "wandb.jsonl", records)).steps[-1] == 3990


def test_a_flat_run_started_again_is_read_as_restarts_not_refused(tmp_path):
    rng = np.random.default_rng(0)
    rows = "".join(f"{i},{2.3 + 0.01 * rng.standard_normal()}\n" for i in range(100))
    path = tmp_path / "rerun.csv"
    path.write_text("step,loss\n" + rows * 3)
    assert len(read_log(path).losses) == 100


def test_a_rate_in_records_of_its_own_is_read_beside_the_losses(tmp_path):
    records = []
    for i, v in enumerate(_losses(100)):
        if i % 25 == 0:
            records.append({"step": i, "lr": 0.1 / (1 + i // 25)})
        records.append({"step": i, "loss": float(v)})
    log = read_log(_jsonl(tmp_path / "lr_apart.jsonl", records))
    assert log.lrs is not None and log.lrs[0] == 0.1 and log.lrs[-1] == pytest.approx(0.025)
