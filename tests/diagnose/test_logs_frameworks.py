"""The logs training frameworks write, written here by the frameworks themselves (tiny models, a
few dozen CPU steps, nothing downloaded) and read by ``read_log`` and ``lrkit diagnose``:

* Hugging Face's Trainer: ``trainer_state.json`` (its ``log_history``), in the output directory
  and in each ``checkpoint-N``, and its TensorBoard folder (``report_to="tensorboard"``);
* Lightning: ``CSVLogger``'s sparse ``metrics.csv`` and ``TensorBoardLogger``'s
  ``lightning_logs/version_N``, with a ``LearningRateMonitor``.
"""
import csv
import json
import shutil

import pytest
import torch

from lrkit.diagnose.logs import read_log
from lrkit.errors import LrkitError


def _cli(argv, capsys):
    from lrkit.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# -- Hugging Face Trainer -----------------------------------------------------------------------

class _Tokens(torch.utils.data.Dataset):
    """Random token sequences, labelled by their first token."""

    def __init__(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 50, (n, 8), generator=g)
        self.y = (self.x[:, 0] > 25).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.y[i]}


def _hf_train(output_dir, **options):
    """A tiny BERT (built from a config, no download) trained by the real Trainer."""
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=2))
    settings = dict(output_dir=str(output_dir), max_steps=40, per_device_train_batch_size=8,
                    learning_rate=1e-3, use_cpu=True, disable_tqdm=True, report_to="none",
                    save_strategy="no", dataloader_num_workers=0)
    settings.update(options)
    trainer = Trainer(model=model, args=TrainingArguments(**settings),
                      train_dataset=_Tokens(320), eval_dataset=_Tokens(32, seed=1))
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    """The Trainer's output directory: checkpoint-20 and checkpoint-40 (each with its
    trainer_state.json), runs/<date>/ (TensorBoard), and trainer_state.json itself from
    ``trainer.save_state()``; ``before_save_state`` is the same directory without the latter."""
    root = tmp_path_factory.mktemp("hf")
    out = root / "out"
    trainer = _hf_train(out, logging_steps=2, eval_strategy="steps", eval_steps=10,
                        save_strategy="steps", save_steps=20, report_to=["tensorboard"])
    shutil.copytree(out, root / "before_save_state")
    trainer.save_state()
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {"out": out, "before": root / "before_save_state", "history": history}


def test_the_trainer_wrote_what_the_reader_is_tested_on(hf_run):
    """What these tests rely on: the Trainer's own files, as it wrote them."""
    out, history = hf_run["out"], hf_run["history"]
    assert (out / "checkpoint-20" / "trainer_state.json").is_file()
    assert (out / "checkpoint-40" / "trainer_state.json").is_file()
    assert list((out / "runs").glob("*/events.out.tfevents.*"))
    assert not (hf_run["before"] / "trainer_state.json").exists()
    assert {"loss", "learning_rate", "step", "epoch"} <= set(history[0])
    assert any("eval_loss" in entry for entry in history)
    assert "train_loss" in history[-1] and "loss" not in history[-1]  # the run's summary


def test_trainer_state_gives_the_training_loss_its_rates_steps_and_eval_loss(hf_run):
    history = hf_run["history"]
    log = read_log(hf_run["out"] / "trainer_state.json")
    train = [entry for entry in history if "loss" in entry]
    assert log.steps == [float(s) for s in range(2, 41, 2)]  # the Trainer's steps
    assert log.losses == [entry["loss"] for entry in train]
    assert log.lrs == [entry["learning_rate"] for entry in train]
    assert log.lrs[0] > log.lrs[-1]  # the Trainer's linear decay, as logged
    assert log.val_losses == [(float(e["step"]), e["eval_loss"]) for e in history
                              if "eval_loss" in e]
    assert [s for s, _ in log.val_losses] == [10.0, 20.0, 30.0, 40.0]
    # the summary's train_loss (the run's mean) is not a point of the curve
    assert len(log.losses) == 20 and history[-1]["train_loss"] not in log.losses
    assert "trainer_state.json" in log.source and "eval_loss" in log.source


def test_the_diagnosis_of_a_trainer_state_uses_its_steps_rates_and_eval_loss(hf_run):
    log = read_log(hf_run["out"] / "trainer_state.json")
    result = log.diagnose()
    assert result.verdict != "not_enough_data"
    assert result.evidence["best_at"] in log.steps and result.evidence["points"] == 20
    assert result.evidence["val_points"] == 4 and result.evidence["val_best_step"] in (10, 20,
                                                                                        30, 40)
    assert result.evidence["lr_max"] == pytest.approx(log.lrs[0])
    assert result.suggested_lr is not None


def test_a_checkpoints_trainer_state_holds_the_run_up_to_it(hf_run):
    log = read_log(hf_run["out"] / "checkpoint-20" / "trainer_state.json")
    assert log.steps[-1] == 20.0 and len(log.losses) == 10
    assert [s for s, _ in log.val_losses] == [10.0, 20.0]


def test_the_output_directory_reads_its_trainer_state(hf_run):
    log = read_log(hf_run["out"])
    assert log.source.startswith("trainer_state.json") and len(log.losses) == 20


def test_an_output_directory_without_save_state_reads_the_latest_checkpoint(hf_run):
    """Without trainer.save_state() only the checkpoints hold the state (and the TensorBoard
    folder beside them was read instead, as float32 and without saying which file)."""
    log = read_log(hf_run["before"])
    assert log.source.startswith("checkpoint-40/trainer_state.json, the latest of 2")
    assert log.steps[-1] == 40.0 and len(log.val_losses) == 4
    assert log.losses == read_log(hf_run["out"] / "trainer_state.json").losses


def test_a_folder_holding_the_output_directory_reads_it(hf_run, tmp_path):
    """Its runs/ TensorBoard folder is part of the output directory, not a second run."""
    shutil.copytree(hf_run["before"], tmp_path / "experiments" / "bert")
    log = read_log(tmp_path / "experiments")
    assert log.source.startswith("bert: checkpoint-40/trainer_state.json")


def test_the_trainers_tensorboard_folder_agrees_with_its_trainer_state(hf_run):
    state = read_log(hf_run["out"] / "trainer_state.json")
    runs = hf_run["out"] / "runs"
    for target in (runs, next(runs.iterdir())):  # runs/, and the run folder (date and host)
        log = read_log(target)
        assert "'train/loss'" in log.source and "'train/learning_rate'" in log.source
        assert "'eval/loss'" in log.source
        assert log.steps == state.steps
        assert log.losses == pytest.approx(state.losses, rel=1e-6)
        assert log.lrs == pytest.approx(state.lrs, rel=1e-6)
        assert [s for s, _ in log.val_losses] == [s for s, _ in state.val_losses]


def test_a_tag_reads_the_output_directorys_tensorboard_run(hf_run):
    log = read_log(hf_run["out"], tag="train/grad_norm")
    assert "tag 'train/grad_norm'" in log.source and log.steps == read_log(hf_run["out"]).steps


def test_cli_on_a_trainer_state_and_its_output_directory(hf_run, capsys):
    state = hf_run["out"] / "trainer_state.json"
    for target in (state, hf_run["out"]):
        code, out, err = _cli(["diagnose", str(target)], capsys)
        assert code == 0 and err == ""
        assert "20 loss values (trainer_state.json" in out and "4 validation values" in out
    code, out, _ = _cli(["diagnose", str(state), "--json"], capsys)
    payload = json.loads(out)
    assert code == 0 and payload["points"] == 20 and payload["validation_points"] == 4
    assert payload["evidence"]["val_best_step"] in (10, 20, 30, 40)


def test_a_run_shorter_than_logging_steps_says_to_log_more_often(tmp_path, capsys):
    """The Trainer logs the loss every logging_steps (default 500): a shorter run's state holds
    only the summary, whose train_loss is no curve."""
    _hf_train(tmp_path / "short", max_steps=6).save_state()
    capsys.readouterr()  # what the Trainer printed
    state = tmp_path / "short" / "trainer_state.json"
    history = json.loads(state.read_text())["log_history"]
    assert len(history) == 1 and "train_loss" in history[0]
    with pytest.raises(LrkitError, match=r"no training loss.*step 6.*logging_steps"):
        read_log(state)
    code, out, err = _cli(["diagnose", str(state)], capsys)
    assert code == 2 and out == "" and "logging_steps" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


class _Regression(torch.nn.Module):
    """A plain torch module for the Trainer; its loss turns NaN at one step (a bad batch), and
    the NaN gradients that clipping spreads keep every later loss NaN."""

    def __init__(self, nan_at):
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
        self.calls, self.nan_at = 0, nan_at

    def forward(self, x, labels=None):
        self.calls += 1
        out = self.net(x)
        loss = torch.nn.functional.mse_loss(out, labels)
        if self.calls == self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "logits": out}


class _Sums(torch.utils.data.Dataset):
    def __init__(self, n):
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.x[i].sum(0, keepdim=True)}


def test_a_run_that_went_nan_is_diverged_though_the_trainer_logged_zeros(tmp_path):
    """With logging_nan_inf_filter (the default) the Trainer logs a window of NaN losses as 0.0,
    beside a NaN grad_norm: read as they stand, the loss "fell to 0" and the run was healthy."""
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=40, logging_steps=2,
                             per_device_train_batch_size=8, learning_rate=0.05, optim="sgd",
                             lr_scheduler_type="constant", use_cpu=True, disable_tqdm=True,
                             save_strategy="no", report_to=["tensorboard"])
    trainer = Trainer(model=_Regression(nan_at=21), args=args, train_dataset=_Sums(320))
    trainer.train()
    trainer.save_state()
    state = tmp_path / "out" / "trainer_state.json"
    history = json.loads(state.read_text())["log_history"]
    zeros = [e for e in history if e.get("loss") == 0.0]
    assert len(zeros) == 10 and all(e["grad_norm"] != e["grad_norm"] for e in zeros)  # NaN
    for target in (state, tmp_path / "out" / "runs"):
        log = read_log(target)
        assert sum(v != v for v in log.losses) == 10 and 0.0 not in log.losses
        assert "10 losses logged as 0.0 beside a non-finite grad_norm read as NaN" in log.source
        assert log.diagnose().verdict == "diverged"


def test_a_trainer_state_cut_short_is_one_clear_error(hf_run, tmp_path, capsys):
    text = (hf_run["out"] / "trainer_state.json").read_text()
    cut = tmp_path / "trainer_state.json"
    cut.write_text(text[:len(text) // 2])
    with pytest.raises(LrkitError, match=r"trainer_state.json line \d+: not valid JSON.*cut "
                                         r"short"):
        read_log(cut)
    code, _, err = _cli(["diagnose", str(tmp_path)], capsys)
    assert code == 2 and "not valid JSON" in err and "Traceback" not in err


def test_a_bad_trainer_state_entry_is_named(tmp_path):
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": [{"loss": 1.0, "step": 1},
                                                {"loss": [0.5], "step": 2}]}))
    with pytest.raises(LrkitError, match=r"log_history\[1\]: loss is \[0.5\], not a number"):
        read_log(path)
    path.write_text(json.dumps({"log_history": {"loss": 1.0}}))
    with pytest.raises(LrkitError, match="log_history is a dict, not a list"):
        read_log(path)


def test_a_json_list_of_records_and_jsonl_named_json(tmp_path):
    records = [{"step": 10 * i, "loss": 1.0 / (1 + i), "lr": 0.1} for i in range(12)]
    listed = tmp_path / "history.json"
    listed.write_text(json.dumps(records, indent=1))
    log = read_log(listed)
    assert log.steps[-1] == 110.0 and log.lrs == [0.1] * 12
    lines = tmp_path / "lines.json"
    lines.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert read_log(lines).losses == log.losses


# -- PyTorch Lightning --------------------------------------------------------------------------

def _lightning_fit(save_dir, *, loss_name, val_on_step, optimizer, loggers, monitor):
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    class Regression(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log(loss_name, loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y),
                     on_step=val_on_step, on_epoch=True)

        def configure_optimizers(self):
            opt = optimizer(self)
            schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=6, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 4, generator=g)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    made = {"csv": lambda: CSVLogger(str(save_dir)), "tb": lambda: TensorBoardLogger(str(save_dir))}
    trainer = L.Trainer(max_epochs=3, logger=[made[k]() for k in loggers], log_every_n_steps=2,
                        callbacks=[LearningRateMonitor(**monitor)], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        accelerator="cpu", devices=1)
    trainer.fit(Regression(), torch.utils.data.DataLoader(data, batch_size=16),
                torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(32)),
                                            batch_size=16))
    return save_dir / "lightning_logs"


@pytest.fixture(scope="module")
def lightning_runs(tmp_path_factory):
    """Run A: ``self.log("train_loss", on_step=True, on_epoch=True)``, val_loss per epoch, SGD
    with a per-step StepLR and ``LearningRateMonitor(logging_interval="step")``; CSVLogger
    (version_0) and TensorBoardLogger (version_1). Run B: ``self.log("loss", ...)`` (loss_step
    and loss_epoch), val_loss also per validation batch, RMSprop with two parameter groups and
    the monitor's momentum and weight decay beside the rates."""
    root = tmp_path_factory.mktemp("lightning")
    a = _lightning_fit(root / "a", loss_name="train_loss", val_on_step=False,
                       optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05),
                       loggers=("csv", "tb"), monitor={"logging_interval": "step"})
    b = _lightning_fit(
        root / "b", loss_name="loss", val_on_step=True,
        optimizer=lambda m: torch.optim.RMSprop(
            [{"params": [m.net.weight], "lr": 0.01}, {"params": [m.net.bias], "lr": 0.002}],
            momentum=0.5, weight_decay=1e-4),
        loggers=("csv", "tb"),
        monitor={"logging_interval": "step", "log_momentum": True, "log_weight_decay": True})
    return {"a": a, "b": b}


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _expected(metrics, loss_column, rate_column, val_column):
    """The curve a reader should give, from the rows of metrics.csv: the loss's rows and their
    ``step``; at each, the rate of the latest rate row at or before its step; the validation
    rows with their steps."""
    rows = _rows(metrics)
    losses = sorted((float(r["step"]), float(r[loss_column])) for r in rows if r[loss_column])
    rates = sorted((float(r["step"]), float(r[rate_column])) for r in rows if r[rate_column])
    held = [[v for s, v in rates if s <= step][-1] for step, _ in losses]
    val = sorted((float(r["step"]), float(r[val_column])) for r in rows if r[val_column])
    return losses, held, val


def test_lightning_wrote_what_the_reader_is_tested_on(lightning_runs):
    header = list(_rows(lightning_runs["a"] / "version_0" / "metrics.csv")[0])
    assert {"epoch", "step", "train_loss_step", "train_loss_epoch", "val_loss", "lr-SGD"} <= \
        set(header)
    rows = _rows(lightning_runs["a"] / "version_0" / "metrics.csv")
    assert not any(r["train_loss_step"] and r["lr-SGD"] for r in rows)  # rates: rows of their own
    header_b = list(_rows(lightning_runs["b"] / "version_0" / "metrics.csv")[0])
    assert {"loss_step", "loss_epoch", "val_loss_step", "val_loss_epoch", "lr-RMSprop/pg1",
            "lr-RMSprop/pg1-momentum", "lr-RMSprop/pg2"} <= set(header_b)
    assert "loss" not in header_b and "val_loss" not in header_b
    assert list((lightning_runs["a"] / "version_1").glob("events.out.tfevents.*"))


def test_metrics_csv_gives_the_step_loss_the_held_rate_and_the_validation(lightning_runs):
    metrics = lightning_runs["a"] / "version_0" / "metrics.csv"
    losses, rates, val = _expected(metrics, "train_loss_step", "lr-SGD", "val_loss")
    log = read_log(metrics)
    assert list(zip(log.steps, log.losses)) == losses  # per step, Lightning's step column
    assert log.lrs == rates and len(set(rates)) >= 3  # the schedule, held between its rows
    assert log.val_losses == val and len(val) == 3
    epoch_means = {float(r["train_loss_epoch"]) for r in _rows(metrics) if r["train_loss_epoch"]}
    assert not epoch_means & set(log.losses)
    assert "'train_loss_step'" in log.source and "'lr-SGD'" in log.source
    result = log.diagnose()
    assert result.evidence["lr_max"] == 0.05 and result.evidence["lr_end"] == rates[-1]
    assert result.evidence["val_points"] == 3 and result.evidence["best_at"] in log.steps


def test_loss_step_loss_epoch_val_loss_step_and_the_monitors_momentum(lightning_runs):
    """``self.log("loss", on_step=True, on_epoch=True)`` writes no ``loss`` column (it was "no
    loss column"); ``val_loss_step`` counts validation batches, not training steps; the
    first group's rate is the rate, not its momentum or the second group's."""
    metrics = lightning_runs["b"] / "version_0" / "metrics.csv"
    losses, rates, val = _expected(metrics, "loss_step", "lr-RMSprop/pg1", "val_loss_epoch")
    log = read_log(metrics)
    assert list(zip(log.steps, log.losses)) == losses
    assert log.lrs == rates and rates[0] == 0.01
    assert log.val_losses == val and len(val) == 3
    assert "'loss_step'" in log.source and "'val_loss_epoch'" in log.source


def test_a_lightning_version_folder_reads_its_metrics_csv(lightning_runs):
    log = read_log(lightning_runs["a"] / "version_0")
    assert log.source.startswith("metrics.csv, column 'train_loss_step'")
    assert log.losses == read_log(lightning_runs["a"] / "version_0" / "metrics.csv").losses


def test_the_tensorboard_logger_agrees_with_the_csv_logger(lightning_runs):
    for run in ("a", "b"):
        csv_log = read_log(lightning_runs[run] / "version_0")
        tb_log = read_log(lightning_runs[run] / "version_1")
        assert tb_log.steps == csv_log.steps
        assert tb_log.losses == pytest.approx(csv_log.losses, rel=1e-6)
        assert tb_log.lrs == pytest.approx(csv_log.lrs, rel=1e-6)
        assert [s for s, _ in tb_log.val_losses] == [s for s, _ in csv_log.val_losses]
    assert "tag 'loss_step'" in read_log(lightning_runs["b"] / "version_1").source


def test_lightning_logs_with_both_loggers_lists_the_versions(lightning_runs, capsys):
    with pytest.raises(LrkitError) as info:
        read_log(lightning_runs["a"])
    message = str(info.value)
    assert "holds 2 runs" in message and "version_0 (metrics.csv)" in message
    assert "version_1 (TensorBoard)" in message and "give one run directory" in message
    code, out, err = _cli(["diagnose", str(lightning_runs["a"])], capsys)
    assert code == 2 and out == "" and "version_0 (metrics.csv)" in err and "Traceback" not in err


def test_cli_on_metrics_csv(lightning_runs, capsys):
    metrics = lightning_runs["a"] / "version_0" / "metrics.csv"
    code, out, err = _cli(["diagnose", str(metrics), "--json"], capsys)
    payload = json.loads(out)
    assert code == 0 and err == ""
    assert payload["points"] == len(read_log(metrics).losses) and payload["validation_points"] == 3
    assert "'lr-SGD'" in payload["format"] and payload["evidence"]["lr_max"] == 0.05


# -- what such files showed in plain CSV/JSONL --------------------------------------------------

def test_an_epoch_mean_is_taken_only_without_a_per_step_loss(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,loss_epoch,val_loss\n" + "".join(
        f"{i},{10 * i + 9},{1.0 / (1 + i)},\n{i},{10 * i + 9},,{1.1 / (1 + i)}\n"
        for i in range(10)))
    log = read_log(path)
    assert "'loss_epoch'" in log.source and log.steps[:2] == [9.0, 19.0]
    assert len(log.val_losses) == 10


def test_one_loss_like_column_is_taken_and_several_are_an_error(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,my_loss_step,my_loss_epoch,val_my_loss\n" + "".join(
        f"{i},{1.0 / (1 + i)},,\n" for i in range(10)))
    assert "'my_loss_step'" in read_log(path).source
    path.write_text("step,loss_a,loss_b\n0,1,2\n")
    with pytest.raises(LrkitError, match=r"several columns could be the training loss "
                                         r"\('loss_a', 'loss_b'\)"):
        read_log(path)


def test_a_momentum_column_before_the_rate_is_not_the_rate(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss,lr-Lion-momentum,lr-Lion\n" + "".join(
        f"{i},{1.0 / (1 + i)},0.9,0.003\n" for i in range(10)))
    log = read_log(path)
    assert log.lrs == [0.003] * 10 and "'lr-Lion'" in log.source


def test_a_rate_missing_on_some_loss_rows_is_carried_forward(tmp_path):
    """Rates held from rows of their own, and on loss rows that lack one: the latest logged
    (it was no rate at all, and no suggested rate, for a log that gives the rate when it
    changes; TensorBoard's reader held it already)."""
    path = tmp_path / "run.csv"
    path.write_text("step,loss,lr\n0,1.0,0.1\n1,0.9,\n2,0.8,0.05\n")
    assert read_log(path).lrs == [0.1, 0.1, 0.05]


def test_a_trainer_with_several_eval_sets_gives_its_first_eval_loss_as_validation(tmp_path):
    """A dict of eval datasets logs eval_<name>_loss, no eval_loss: it was no validation."""
    from lrkit.diagnose.logs import read_log

    history = []
    for step in range(10, 210, 10):
        history.append({"loss": 2.0 / (1 + step / 50), "learning_rate": 1e-3, "step": step,
                        "epoch": step / 100})
        if step % 50 == 0:
            history += [{"eval_a_loss": 1.5 / (1 + step / 60), "step": step},
                        {"eval_b_loss": 1.7 / (1 + step / 60), "step": step}]
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": history, "global_step": 200}))
    log = read_log(path)
    assert [at for at, _ in log.val_losses] == [50, 100, 150, 200]
    assert log.val_losses[0][1] == pytest.approx(1.5 / (1 + 50 / 60))
    assert "validation 'eval_a_loss' (also logged: 'eval_b_loss')" in log.source
    assert len(log.losses) == 20
