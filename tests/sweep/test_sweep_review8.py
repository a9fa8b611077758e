"""A trial that kills its worker (the out-of-memory killer, kill -9) counts towards its rate's
retries, as a Ray trial's death does; Ctrl-C and SIGTERM do not."""
import functools
import os
import signal
import subprocess
import sys
import time

import optuna

import lrkit
from lrkit.sweep.optuna_engine import StorageHandle
from tests.sweep.helpers import RECIPES, lrkit_command, subprocess_env

RUN = """
import sys, lrkit
sys.path.insert(0, {folder!r})
from recipes import killing_wine
result = lrkit.sweep(killing_wine, storage={storage!r}, study_name="s", lrs="0.01,0.1,1",
                     strategy="grid", budget=40, progress=False, max_retries=1)
print(result.summary())
"""


def wait_until_running(storage: str, name: str, count: int, timeout: float = 90) -> None:
    """Until ``count`` trials of the study run, and a little more (into their training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name=name, storage=StorageHandle(storage).open()
                                       ).get_trials(deepcopy=False)
        except Exception:  # the study is not created yet
            trials = []
        if sum(t.state.name == "RUNNING" for t in trials) >= count:
            time.sleep(0.5)
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} trials were caught running")


def test_a_rate_whose_worker_dies_on_every_attempt_ends_failed_not_retried_for_ever(tmp_path):
    # each resume ran the killing trial again: the sweep could never finish
    storage = str(tmp_path / "s.journal")
    script = RUN.format(folder=str(RECIPES.parent), storage=storage)
    codes = []
    for _ in range(3):
        run = subprocess.run([sys.executable, "-c", script], env=subprocess_env(),
                             capture_output=True, text=True, timeout=120)
        codes.append(run.returncode)
        if run.returncode == 0:
            break
    assert codes == [137, 137, 0], run.stderr  # two attempts (max_retries=1), then done
    assert "best: lr=0.1" in run.stdout
    assert "lr 1 (seed 0) failed on every attempt" in run.stdout
    assert "its worker died while running it" in run.stdout
    result = lrkit.sweep.load(storage, "s")
    assert {p.lr: p.status for p in result.points()}[1.0] == "failed"
    assert result.complete


def _sweep_until_running(storage: str, name: str, *options: str, running: int = 1, **popen):
    """``lrkit sweep`` of the slowed wine-logreg in a process, once ``running`` trials run."""
    command = lrkit_command("sweep", f"{RECIPES}:slow_wine", "--budget", "400", "--storage",
                            storage, "--study-name", name, "--no-progress",
                            *(options or ("--lrs", "0.01,0.1")))
    proc = subprocess.Popen(command, env=subprocess_env(LRKIT_TEST_DELAY="0.01"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            **popen)
    wait_until_running(storage, name, running)
    return proc


def test_a_sigterm_or_ctrl_c_is_marked_interrupted_and_not_counted(tmp_path):
    # the CLI's SIGTERM mid-trial: the trial is told as stopped from outside, not as a death
    storage = str(tmp_path / "s.journal")
    proc = _sweep_until_running(storage, "t")
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    study = optuna.load_study(study_name="t", storage=StorageHandle(storage).open())
    failed = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert failed and all(t.user_attrs.get("interrupted") for t in failed)
    records = lrkit.sweep.load(storage, "t").records
    assert any("interrupted (Ctrl-C, SIGTERM or SIGHUP)" in (r.error or "") for r in records)


def test_a_worker_process_stopped_by_its_parent_marks_its_trial_interrupted(tmp_path):
    # --workers 2 and Ctrl-C: the parent terminates its workers (SIGTERM), whose trials were
    # left running and then read as deaths, using up their rates' retries
    storage = str(tmp_path / "s.journal")
    proc = _sweep_until_running(storage, "w", "--lrs", "0.01,0.1,1", "--strategy", "grid",
                                "--workers", "2", running=2)
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    study = optuna.load_study(study_name="w", storage=StorageHandle(storage).open())
    failed = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert len(failed) == 2
    assert all(t.user_attrs.get("interrupted") for t in failed)


def test_an_empty_validation_loader_is_refused_before_any_trial(tmp_path):
    # the first trial failed in its evaluation and was stored as a failed attempt
    import pytest

    from lrkit.errors import LrkitError

    def recipe(seed):
        problem = lrkit.examples.build("wine-logreg", seed=seed)
        problem.val_loader = []
        return problem

    storage = str(tmp_path / "s.journal")
    with pytest.raises(LrkitError, match="val_loader has no batch"):
        lrkit.sweep(recipe, storage=storage, study_name="e", lrs="0.01,0.1", budget=20,
                    progress=False)
    assert not os.path.exists(storage) or not optuna.get_all_study_names(
        storage=StorageHandle(storage).open())


def test_the_cli_takes_max_retries(tmp_path, capsys):
    # the docs said "raise max_retries to retry a failed rate", which the CLI could not
    from lrkit.cli import main

    storage = str(tmp_path / "s.journal")
    assert main(["sweep", "wine-logreg", "--lrs", "0.01,0.1", "--budget", "20", "--storage",
                 storage, "--study-name", "m", "--max-retries", "5", "--no-progress"]) == 0
    study = optuna.load_study(study_name="m", storage=StorageHandle(storage).open())
    assert study.user_attrs["lrkit_max_retries"] == 5
    assert main(["sweep", "wine-logreg", "--max-retries", "-1", "--storage", storage]) == 2
    assert "--max-retries must be an integer >= 0, got -1" in capsys.readouterr().err


def test_a_hangup_stops_a_sweep_as_ctrl_c_does(tmp_path):
    # a closed terminal or a dropped SSH session (SIGHUP) killed the sweep with its trial left
    # running, which the next run now counts as its worker's death
    storage = str(tmp_path / "s.journal")
    proc = _sweep_until_running(storage, "h")
    try:
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=30) == 128 + signal.SIGHUP
        assert "terminated (SIGHUP)" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    study = optuna.load_study(study_name="h", storage=StorageHandle(storage).open())
    failed = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert failed and all(t.user_attrs.get("interrupted") for t in failed)


def test_under_nohup_a_hangup_is_still_ignored(tmp_path):
    storage = str(tmp_path / "s.journal")
    proc = _sweep_until_running(
        storage, "n", preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert proc.poll() is None  # nohup asked for it to go on
    finally:
        proc.kill()
        proc.wait()


def test_a_worker_that_loses_the_race_to_create_the_tables_opens_the_storage(monkeypatch,
                                                                            tmp_path):
    # two workers started together on a fresh PostgreSQL database: the one that lost the race
    # to create Optuna's tables stopped with "cannot reach storage ... duplicate key value
    # violates unique constraint "pg_type_typname_nsp_index"" (seen in CI)
    import optuna.storages

    from lrkit.sweep import optuna_engine

    class IntegrityError(Exception):
        pass

    calls = []
    real = optuna.storages.RDBStorage

    @functools.wraps(real)  # (its signature: the storage's options are read from it)
    def racing(url, **options):
        calls.append(url)
        if len(calls) == 1:
            raise IntegrityError('(psycopg2.errors.UniqueViolation) duplicate key value violates '
                                 'unique constraint "pg_type_typname_nsp_index"')
        return real(url, **options)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(optuna_engine.time, "sleep", lambda seconds: None)
    storage = StorageHandle(f"sqlite:///{tmp_path / 's.db'}").open()
    assert isinstance(storage, real) and len(calls) == 2


def test_other_integrity_errors_are_not_retried(monkeypatch, tmp_path):
    import optuna.storages
    import pytest

    from lrkit.errors import LrkitError

    class IntegrityError(Exception):
        pass

    calls = []

    @functools.wraps(optuna.storages.RDBStorage)
    def failing(url, **options):
        calls.append(url)
        raise IntegrityError("NOT NULL constraint failed")

    monkeypatch.setattr(optuna.storages, "RDBStorage", failing)
    with pytest.raises(LrkitError, match="cannot reach storage"):
        StorageHandle(f"sqlite:///{tmp_path / 's.db'}").open()
    assert len(calls) == 1
