"""lrkit.Monitor and its framework callbacks, found in review: level names, logging off,
several processes writing one log, a callback pickled before fit (ddp_spawn)."""
import json
import logging
import pickle
import types

import pytest
import torch

import lrkit
from lrkit.diagnose.logs import read_log
from lrkit.errors import LrkitError


def _feed(target, steps=60):
    for step in range(steps):
        target.update(2.0 - 0.01 * step, lr=0.1)


def test_a_level_name_is_a_level(tmp_path, caplog):
    """Monitor(level="INFO") was accepted, then raised "level must be an integer" at the first
    report, before anything reached the file."""
    log = tmp_path / "run.jsonl"
    monitor = lrkit.Monitor(level="info", log_file=log, report_every=50)
    with caplog.at_level(logging.INFO, logger="lrkit.diagnose"):
        _feed(monitor)
        monitor.close()
    assert monitor.level == logging.INFO
    assert sum("lrkit train" in r.getMessage() for r in caplog.records) == 2
    assert len(log.read_text().splitlines()) == 60 + 2


@pytest.mark.parametrize("level", ["LOUD", -1, 2.5, True])
def test_a_bad_level_is_refused_up_front(level):
    with pytest.raises(LrkitError, match="level must be a logging level"):
        lrkit.Monitor(level=level)


def test_logger_false_logs_nothing_and_still_writes_the_file(tmp_path, caplog):
    log = tmp_path / "run.jsonl"
    monitor = lrkit.Monitor(logger=False, log_file=log)
    with caplog.at_level(logging.DEBUG):
        _feed(monitor)
        monitor.close()
    assert not [r for r in caplog.records if r.name.startswith("lrkit")]
    assert json.loads(log.read_text().splitlines()[-1])["event"] == "report"


def test_a_logger_that_is_not_one_is_refused():
    with pytest.raises(LrkitError, match="logger must be a logging.Logger"):
        lrkit.Monitor(logger=42)


def _lightning_callback(monkeypatch):
    import sys

    import lrkit.diagnose.lightning as module

    class Callback:
        pass
    fake = types.ModuleType("lightning.pytorch")
    fake.Callback = Callback
    monkeypatch.setitem(sys.modules, "lightning", types.ModuleType("lightning"))
    monkeypatch.setitem(sys.modules, "lightning.pytorch", fake)
    monkeypatch.setattr(module, "_CLASS", None)
    return module.MonitorCallback


def _trainer(rank_zero: bool):
    return types.SimpleNamespace(optimizers=[types.SimpleNamespace(param_groups=[{"lr": 0.1}])],
                                 callback_metrics={}, sanity_checking=False,
                                 is_global_zero=rank_zero)


def test_under_ddp_only_rank_zero_writes_the_lightning_log(monkeypatch, tmp_path, caplog):
    """Every rank appended its own steps 0, 1, ... to one file, which then read as several runs
    (2 of 10 steps were diagnosed), and every rank logged its reports."""
    cls = _lightning_callback(monkeypatch)
    log = tmp_path / "ddp.jsonl"
    callbacks = [cls(report_every=4, log_file=log) for _ in range(2)]
    with caplog.at_level(logging.INFO, logger="lrkit.diagnose"):
        for rank, callback in enumerate(callbacks):
            trainer = _trainer(rank == 0)
            callback.on_train_start(trainer, None)
            for step in range(10):
                callback.on_train_batch_start(trainer, None, None, step)
                callback.on_train_batch_end(trainer, None, torch.tensor(2.0 - 0.1 * step), None,
                                            step)
            callback.on_train_end(trainer, None)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(10))
    assert sum(r.get("event") == "report" for r in rows) == 3
    assert sum("lrkit train" in r.getMessage() for r in caplog.records) == 3
    assert callbacks[1].diagnosis is not None  # the other rank still diagnoses its own
    assert read_log(log).steps == list(range(10))  # one run, as lrkit diagnose reads it


def test_under_several_processes_only_the_main_one_writes_the_hugging_face_log(tmp_path):
    from lrkit.adapters.huggingface import MonitorCallback

    log = tmp_path / "hf.jsonl"
    for main in (True, False):
        callback = MonitorCallback(log_file=log)
        state = types.SimpleNamespace(is_world_process_zero=main)
        callback.on_train_begin(None, state, None)
        for step in range(10):
            callback.on_log(None, state, None, logs={"loss": 2.0 - 0.1 * step,
                                                     "learning_rate": 0.1})
        callback.on_train_end(None, state, None)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(10))


def test_a_callback_with_a_log_file_can_be_pickled_before_fit(monkeypatch, tmp_path):
    """ddp_spawn pickles the callbacks: "cannot pickle '_io.TextIOWrapper' object"."""
    from lrkit.adapters.huggingface import MonitorCallback

    log = tmp_path / "spawn.jsonl"
    callback = pickle.loads(pickle.dumps(MonitorCallback(log_file=log, report_every=0)))
    state = types.SimpleNamespace(is_world_process_zero=True)
    callback.on_train_begin(None, state, None)
    callback.on_log(None, state, None, logs={"loss": 1.0})
    callback.on_train_end(None, state, None)
    assert json.loads(log.read_text().splitlines()[0]) == {"step": 0, "loss": 1.0}


def test_an_unwritable_log_is_named_when_the_callback_is_made(tmp_path):
    from lrkit.adapters.huggingface import MonitorCallback

    with pytest.raises(LrkitError, match="cannot open the monitor log"):
        MonitorCallback(log_file=tmp_path / "no" / "such" / "dir.jsonl")


def test_reading_the_callbacks_monitor_before_fit_starts_nothing(tmp_path):
    """Reading callback.monitor before fit opened the log, and the start hook then closed that
    empty run: two reports in the file ("the last of 2 runs"), and a file left open that
    could not be pickled."""
    from lrkit.adapters.huggingface import MonitorCallback

    log = tmp_path / "hf.jsonl"
    callback = MonitorCallback(log_file=log, report_every=0)
    assert callback.monitor.report_every == 0 and callback.diagnosis is None
    pickle.dumps(callback)
    state = types.SimpleNamespace(is_world_process_zero=True)
    callback.on_train_begin(None, state, None)
    for step in range(10):
        callback.on_log(None, state, None, logs={"loss": 2.0 - 0.1 * step})
    callback.on_train_end(None, state, None)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(r.get("event") == "report" for r in rows) == 1


def test_a_validation_before_fit_stays_in_the_run_and_off_other_ranks_logs(tmp_path):
    """evaluate() before train() on rank 1 wrote its val_loss and an empty report to the shared
    file; on rank zero the point belongs to the run that follows."""
    from lrkit.adapters.huggingface import MonitorCallback

    log = tmp_path / "hf.jsonl"
    for main in (False, True):
        callback = MonitorCallback(log_file=log, report_every=0)
        state = types.SimpleNamespace(is_world_process_zero=main)
        callback.on_log(None, state, None, logs={"eval_loss": 2.5})  # evaluate() before train
        callback.on_train_begin(None, state, None)
        for step in range(10):
            callback.on_log(None, state, None, logs={"loss": 2.0 - 0.1 * step})
        callback.on_train_end(None, state, None)
        if not main:
            assert not log.exists() or log.read_text() == ""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r for r in rows if "val_loss" in r] == [{"step": 0, "val_loss": 2.5}]
    assert sum(r.get("event") == "report" for r in rows) == 1
