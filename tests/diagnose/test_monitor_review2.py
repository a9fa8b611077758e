"""From a second review of the Monitor: the Lightning callback's validation values one
validation late, a report that raised out of update(), the steps of a loop that raised before
close(), and manual optimization with nothing returned."""
import logging
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import lrkit
from tests.sweep.helpers import subprocess_env


def test_the_lightning_callback_records_val_loss_logged_at_the_epoch_end():
    L = pytest.importorskip("lightning")  # (a dev dependency)
    from lrkit.diagnose.lightning import MonitorCallback

    for name in ("lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.manual_seed(0)
    x = torch.randn(512, 8)
    y = x @ torch.randn(8, 1)
    logged = []

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(8, 1)
            self.outs = []

        def training_step(self, batch, _):
            return nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def validation_step(self, batch, _):
            self.outs.append(nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def on_validation_epoch_end(self):  # Lightning 2's place for an epoch's val_loss
            value = torch.stack(self.outs).mean()
            self.outs.clear()
            self.log("val_loss", value)
            if not self.trainer.sanity_checking:
                logged.append(value.item())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.02)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                               batch_size=16)

        def val_dataloader(self):
            return torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(x[:64], y[:64]), batch_size=32)

    callback = MonitorCallback(report_every=0, logger=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Trainer(max_epochs=4, callbacks=[callback], logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False,
                  accelerator="cpu").fit(Module())
    recorded = [v for _, v in callback.monitor._val]
    # each value one validation late and the last one lost, before
    assert recorded == pytest.approx(logged) and len(recorded) == 4


def test_a_diagnosis_that_fails_does_not_end_the_training_loop(monkeypatch, caplog):
    monitor = lrkit.Monitor(report_every=10, logger="lrkit.test.monitor")

    def broken():
        raise OverflowError("math range error")

    monkeypatch.setattr(monitor, "diagnose", broken)
    with caplog.at_level(logging.WARNING, logger="lrkit.test.monitor"):
        for i in range(45):
            monitor.update(2.0 - i * 0.01)  # raised out of update() at step 10
    assert monitor.step == 45 and "the diagnosis failed (OverflowError" in caplog.text
    assert caplog.text.count("the diagnosis failed") == 1  # once, not at every report


def test_an_on_report_that_raises_still_stops_the_run():
    # (a review of the change: the guard around the report swallowed it, and a run meant to be
    # stopped went on)
    def stop(diagnosis):
        raise KeyboardInterrupt("stop the run")

    monitor = lrkit.Monitor(report_every=10, logger=False, on_report=stop)
    with pytest.raises(KeyboardInterrupt, match="stop the run"):
        for i in range(25):
            monitor.update(2.0 - i * 0.01)
    assert monitor.step == 10


def test_closed_monitors_leave_no_exit_work_behind(tmp_path):
    from lrkit.diagnose import monitor as module

    for i in range(50):
        monitor = lrkit.Monitor(report_every=0, logger=False, log_file=tmp_path / f"{i}.jsonl")
        monitor.update(1.0)
        monitor.close()
    assert all(not m.closed for m in module._OPEN_MONITORS)


@pytest.mark.parametrize("case", ["rerun", "fork"])
def test_the_exit_writer_leaves_a_later_run_and_a_forked_child_alone(tmp_path, case):
    log = tmp_path / "run.jsonl"
    first = ("import lrkit, os, sys\n"
             f"path = {str(log)!r}\n"
             "m = lrkit.Monitor(report_every=0, log_file=path, logger=False)\n"
             "for i in range(20):\n"
             "    m.update(2.0 - i * 0.01, lr=0.1)\n")
    if case == "rerun":  # the crashed run's monitor lives on (a notebook keeps the traceback)
        code = first + ("n = lrkit.Monitor(report_every=0, log_file=path, logger=False)\n"
                        "for i in range(30):\n"
                        "    n.update(1.0 - i * 0.01, lr=0.1)\n"
                        "n.close()\n")
    else:  # a child made with os.fork that exits normally
        code = first + ("pid = os.fork()\n"
                        "if pid == 0:\n"
                        "    sys.exit(0)\n"
                        "os.waitpid(pid, 0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    from lrkit.diagnose.logs import read_log

    lines = [line for line in log.read_text().splitlines() if '"loss"' in line]
    if case == "rerun":
        assert len(read_log(log).losses) == 30  # the completed run is the last one read
    else:
        assert len(lines) == 20  # the parent's steps once (the child's exit wrote them again)


def test_the_steps_of_a_loop_that_raised_before_close_reach_the_file(tmp_path):
    log = tmp_path / "run.jsonl"
    code = ("import lrkit\n"
            f"m = lrkit.Monitor(report_every=1000, log_file={str(log)!r}, logger=False)\n"
            "for i in range(950):\n"
            "    m.update(2.0 - i * 0.001, lr=0.1)\n"
            "raise RuntimeError('boom')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert "boom" in done.stderr
    assert len(log.read_text().splitlines()) == 950  # an empty file, before
    from lrkit.diagnose.logs import read_log

    assert read_log(log).losses[-1] == pytest.approx(2.0 - 949 * 0.001)


class _Trainer:
    """What the Lightning callback reads of a trainer, for calling its hooks directly."""
    optimizers = []
    accumulate_grad_batches = 1
    global_rank = 0
    sanity_checking = False
    callback_metrics: dict = {}


def test_manual_optimization_returning_nothing_is_warned_about_once():
    from lrkit.diagnose.lightning import MonitorCallback

    callback = MonitorCallback(report_every=0, logger=False)
    Trainer = _Trainer

    class Manual:
        automatic_optimization = False

    with pytest.warns(UserWarning, match="training_step returned no loss"):
        callback.on_train_batch_end(Trainer(), Manual(), None, None, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        callback.on_train_batch_end(Trainer(), Manual(), None, None, 1)  # once
        # under automatic optimization a None skips a batch on purpose: no warning
        MonitorCallback(report_every=0, logger=False).on_train_batch_end(
            Trainer(), object(), None, None, 0)


def test_with_several_validation_loaders_the_first_ones_value_is_recorded():
    # Lightning names it "val_loss/dataloader_idx_0", and nothing was recorded
    from lrkit.diagnose.lightning import MonitorCallback

    callback = MonitorCallback(report_every=0, logger=False)

    class Trainer(_Trainer):
        callback_metrics = {"val_loss/dataloader_idx_0": torch.tensor(0.5),
                            "val_loss/dataloader_idx_1": torch.tensor(0.9)}

    callback.on_train_batch_end(Trainer(), object(), torch.tensor(1.0), None, 0)
    callback.on_validation_end(Trainer(), object())
    assert [v for _, v in callback.monitor._val] == [pytest.approx(0.5)]
