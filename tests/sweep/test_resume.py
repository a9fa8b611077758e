"""A sweep killed with SIGKILL in the middle of a trial resumes with the same command: every
planned trial ends up finished exactly once, the interrupted one retried, and the best rate is
that of an uninterrupted sweep."""
import os
import signal
import subprocess
import time

import pytest

import lrkit
from lrkit.sweep.api import build_spec
from lrkit.sweep.optuna_engine import (WORKER_ATTR, FileLock, JournalLiveness, StorageHandle,
                                       observe)
from tests.sweep.helpers import RECIPES, lrkit_command, subprocess_env

SETTINGS = ["--lrs", "1e-3:1", "--points-per-decade", "4", "--budget", "120",
            "--optimizers", "sgd,adam"]


def load(storage, name):
    import optuna

    return optuna.load_study(study_name=name, storage=StorageHandle(storage).open())


def finished_keys(study):
    return [(t.user_attrs["optimizer"], t.user_attrs["lr"], t.user_attrs["seed"])
            for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]


def wait_for_a_running_trial(proc, storage, name, timeout=120):
    """Until at least two trials are done and one is running past its first rung."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            trials = load(storage, name).get_trials(deepcopy=False)
        except Exception:  # the study is not created yet
            time.sleep(0.05)
            continue
        running = [t for t in trials if t.state.name == "RUNNING" and t.intermediate_values]
        if len([t for t in trials if t.state.is_finished()]) >= 2 and running:
            return running[0].number
        time.sleep(0.02)
    raise AssertionError("no trial was caught running")


def check_resumed(study, interrupted, reference):
    trials = study.get_trials(deepcopy=False)
    assert trials[interrupted].state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == interrupted]
    assert len(retries) == 1 and retries[0].state.name in ("COMPLETE", "PRUNED")
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    keys = finished_keys(study)
    assert len(keys) == len(set(keys)), "a planned trial ran twice"
    # exactly the trials of the uninterrupted sweep, each once
    assert sorted(keys) == sorted(finished_keys(reference))
    spec = build_spec(f"{RECIPES}:slow_wine", lrs="1e-3:1", points_per_decade=4, budget=120,
                      optimizers="sgd,adam")
    assert spec.strategy().plan(observe(trials, spec)).done


def test_sigkill_mid_trial_then_resume(tmp_path, monkeypatch):
    storage = str(tmp_path / "sweeps.journal")
    command = lrkit_command("sweep", f"{RECIPES}:slow_wine", *SETTINGS, "--storage", storage,
                            "--study-name", "killed", "--no-progress")
    env = subprocess_env(LRKIT_TEST_DELAY="0.006")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        interrupted = wait_for_a_running_trial(proc, storage, "killed")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert load(storage, "killed").trials[interrupted].state.name == "RUNNING"

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "best: lr=" in resumed.stdout

    monkeypatch.setenv("LRKIT_TEST_DELAY", "0")
    clean = lrkit.sweep(f"{RECIPES}:slow_wine", lrs="1e-3:1", points_per_decade=4, budget=120,
                        optimizers="sgd,adam", storage=storage, study_name="clean",
                        progress=False)
    check_resumed(load(storage, "killed"), interrupted, load(storage, "clean"))
    resumed_result = lrkit.sweep.load(storage, "killed")
    assert resumed_result.best_lr == clean.best_lr
    assert resumed_result.best.optimizer == clean.best.optimizer
    assert any(r.status == "failed" and "interrupted" in (r.error or "")
               for r in resumed_result.records)


def test_journal_liveness_tells_dead_workers_from_live_ones(tmp_path):
    """The journal's stand-in for Optuna's heartbeat: a running trial is stale exactly when the
    flock of the worker that claimed it is free."""
    import optuna

    storage = str(tmp_path / "s.journal")
    spec = build_spec("wine-logreg", lrs="0.01,0.1", budget=10)
    study = optuna.create_study(study_name="s", storage=StorageHandle(storage).open())
    workers = storage + ".workers"
    os.makedirs(workers)
    alive = FileLock(os.path.join(workers, "alive-worker"))
    assert alive.acquire()
    try:
        for token in ("alive-worker", "dead-worker"):
            study.enqueue_trial({"lr": 0.01, "seed": 0},
                                user_attrs=spec.trial_attrs(spec.point_of(
                                    {"optimizer": "recipe", "lr": "0.01", "seed": 0,
                                     "budget": 10}), 0, "bracket"))
            trial = study.ask()
            study._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, token)
        with JournalLiveness(workers) as liveness:
            assert liveness.recover(study, spec) == [1]
        states = [t.state.name for t in study.get_trials()]
        assert states == ["RUNNING", "FAIL", "WAITING"]  # the retry is queued
        assert study.trials[2].system_attrs["failed_trial"] == 1
    finally:
        alive.release()


@pytest.mark.parametrize("workers", [2])
def test_sigkill_of_a_multi_worker_sweep_kills_its_workers_too(tmp_path, workers):
    storage = str(tmp_path / "sweeps.journal")
    command = lrkit_command("sweep", f"{RECIPES}:slow_wine", *SETTINGS, "--storage", storage,
                            "--study-name", "multi", "--workers", str(workers), "--no-progress")
    env = subprocess_env(LRKIT_TEST_DELAY="0.006")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for_a_running_trial(proc, storage, "multi")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    time.sleep(1.0)
    before = len(load(storage, "multi").trials)
    time.sleep(1.5)  # orphaned workers would go on adding trials
    assert len(load(storage, "multi").trials) == before
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    keys = finished_keys(load(storage, "multi"))
    assert len(keys) == len(set(keys))


def _forked_workers(pid):
    """The worker processes a ``--workers N`` sweep forked (same command line as its parent)."""
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        command = handle.read()
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        children = [int(c) for c in handle.read().split()]
    found = []
    for child in children:
        with open(f"/proc/{child}/cmdline", "rb") as handle:
            if handle.read() == command:
                found.append(child)
    return found


def test_a_worker_killed_mid_sweep_leaves_the_sweep_complete_and_reported(tmp_path):
    # the others run its trial again and finish the plan: the command prints the result and
    # exits 0, with a warning (it said "1 of 1 worker processes failed ... see their errors
    # above", exit 2, and wrote no --json: a review)
    storage = str(tmp_path / "sweeps.journal")
    out = tmp_path / "result.json"
    command = lrkit_command("sweep", f"{RECIPES}:slow_wine", *SETTINGS, "--storage", storage,
                            "--study-name", "lost", "--workers", "2", "--no-progress",
                            "--json", str(out))
    env = subprocess_env(LRKIT_TEST_DELAY="0.006")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for_a_running_trial(proc, storage, "lost")
        (worker,) = _forked_workers(proc.pid)
        os.kill(worker, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "stopped by a signal" in err and "the sweep is complete" in err
    assert out.exists() and lrkit.sweep.load(storage, "lost").best is not None
    keys = finished_keys(load(storage, "lost"))
    assert len(keys) == len(set(keys))
