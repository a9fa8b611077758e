"""Two worker processes on one study in a real PostgreSQL server, and Optuna's heartbeat retry
after a worker is killed.

The server comes from ``.ci/postgres.sh`` (``LRKIT_TEST_POSTGRES_URL``; default
``postgresql://lrkit:lrkit@127.0.0.1:5432/lrkit``). Outside CI the tests skip when no server
answers; in CI (``CI`` set) an unreachable server is a failure.
"""
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import lrkit
from lrkit.sweep.optuna_engine import StorageHandle
from tests.sweep.helpers import RECIPES, lrkit_command, subprocess_env

pytestmark = pytest.mark.postgres

DEFAULT_URL = "postgresql://lrkit:lrkit@127.0.0.1:5432/lrkit"
SETTINGS = ["--lrs", "1e-3:1", "--points-per-decade", "4", "--budget", "120",
            "--optimizers", "sgd,adam"]


@pytest.fixture(scope="module")
def postgres_url():
    url = os.environ.get("LRKIT_TEST_POSTGRES_URL", DEFAULT_URL)
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(StorageHandle(url).url,
                                          connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # no server, no driver, bad credentials
        message = (f"PostgreSQL is not reachable at {url} ({type(exc).__name__}: "
                   f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                   "start it with: eval \"$(.ci/postgres.sh)\"")
        if os.environ.get("CI"):
            pytest.fail("in CI the PostgreSQL server must be up: " + message)
        pytest.skip(message)
    return url


@pytest.fixture
def study_name(postgres_url):
    import optuna

    name = f"lrkit-test-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=StorageHandle(postgres_url).open())
    except Exception:
        pass


def load(url, name):
    import optuna

    return optuna.load_study(study_name=name, storage=StorageHandle(url).open())


def finished_keys(study):
    return [(t.user_attrs["optimizer"], t.user_attrs["lr"], t.user_attrs["seed"])
            for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]


def test_two_workers_share_one_study(postgres_url, study_name):
    command = lrkit_command("sweep", f"{RECIPES}:slow_wine", *SETTINGS, "--storage",
                            postgres_url, "--study-name", study_name, "--no-progress")
    env = subprocess_env(LRKIT_TEST_DELAY="0.006")
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, err
        assert "best: lr=" in out
    study = load(postgres_url, study_name)
    keys = finished_keys(study)
    assert keys and len(keys) == len(set(keys)), "a planned trial ran twice"
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING", "FAIL")]
    owners = {t.system_attrs.get("lrkit_worker", "").split(":")[1] for t in study.trials}
    assert owners == {str(w.pid) for w in workers}, "both workers should have run trials"
    # both processes report the same sweep
    best_lines = [next(l for l in out.splitlines() if l.startswith("best:")) for out, _ in outputs]
    assert best_lines[0] == best_lines[1]
    # and the shared result equals a one-worker sweep's: every trial is deterministic
    reference = lrkit.sweep(f"{RECIPES}:slow_wine", lrs="1e-3:1", points_per_decade=4,
                            budget=120, optimizers="sgd,adam", storage=postgres_url,
                            study_name=study_name + "-ref", progress=False)
    try:
        shared = lrkit.sweep.load(postgres_url, study_name)
        assert shared.best_lr == reference.best_lr
    finally:
        import optuna

        optuna.delete_study(study_name=study_name + "-ref",
                            storage=StorageHandle(postgres_url).open())


def test_heartbeat_retries_the_trial_of_a_killed_worker(postgres_url, study_name):
    code = (
        "import lrkit, sys; lrkit.sweep(sys.argv[1], lrs='1e-3:1', points_per_decade=4, "
        "budget=120, storage=sys.argv[2], study_name=sys.argv[3], heartbeat_interval=1, "
        "grace_period=3, progress=False)")
    command = [sys.executable, "-c", code, f"{RECIPES}:slow_wine", postgres_url, study_name]
    env = subprocess_env(LRKIT_TEST_DELAY="0.01")
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    interrupted = None
    deadline = time.monotonic() + 120
    try:
        while interrupted is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            try:
                trials = load(postgres_url, study_name).get_trials(deepcopy=False)
            except Exception:
                time.sleep(0.1)
                continue
            running = [t for t in trials if t.state.name == "RUNNING" and t.intermediate_values]
            if len([t for t in trials if t.state.is_finished()]) >= 1 and running:
                interrupted = running[0].number
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert interrupted is not None
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    study = load(postgres_url, study_name)
    assert study.trials[interrupted].state.name == "FAIL"
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == interrupted]
    assert len(retry) == 1 and retry[0].state.name in ("COMPLETE", "PRUNED")
    keys = finished_keys(study)
    assert len(keys) == len(set(keys))
