"""The Ray Tune engine (``lrkit.sweep(..., engine="ray")``) on a real local Ray with 2 CPUs.

One sweep of the built-in ``logreg`` example (two optimizers, 90 steps a trial) runs through
Ray Tune and through Optuna; the rest reuses it (a finished Ray sweep is restored, not rerun)
or refuses bad input before anything trains. The resume test kills a driver process that
joined this Ray cluster (``ray_address``) in the middle of a trial and runs the same call again.
"""
import glob
import json
import os
import random
import subprocess
import sys
import time

import pytest
import ray
import torch

import lrkit
from lrkit.cli import main
from lrkit.errors import LrkitError
from lrkit.sweep.strategy import rung_steps, trails

from tests.sweep.helpers import subprocess_env

#: one trial at a time, as the Optuna engine's one worker: the same trials in the same order
#: (with more at once, both engines add speculative trials while a walk waits)
SETTINGS = dict(lrs="1e-3:1e3", points_per_decade=2, optimizers="sgd,adam", budget=90,
                progress=False, workers=1)
CLI_SETTINGS = ["--lrs", "1e-3:1e3", "--points-per-decade", "2", "--optimizers", "sgd,adam",
                "--budget", "90", "--no-progress", "--workers", "1"]


@pytest.fixture(scope="module")
def swept(local_ray, tmp_path_factory):
    """The Ray engine's sweep and its storage directory."""
    storage = str(tmp_path_factory.mktemp("ray"))
    return lrkit.sweep("logreg", engine="ray", storage=storage, **SETTINGS), storage


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The Optuna engine's sweep with the same settings."""
    journal = str(tmp_path_factory.mktemp("optuna") / "sweeps.journal")
    return lrkit.sweep("logreg", storage=journal, **SETTINGS)


def by_key(result):
    return {(r.optimizer, r.lr, r.seed): r for r in result.records}


def test_ray_engine_picks_the_optuna_engines_rate(swept, reference, tmp_path):
    result, storage = swept
    assert isinstance(result, lrkit.SweepResult) and result.complete is True
    assert result.best_lr == reference.best_lr
    assert result.best.optimizer == reference.best.optimizer
    assert result.best_by_optimizer().keys() == {"sgd", "adam"}
    assert {k: v.lr for k, v in result.best_by_optimizer().items()} == {
        k: v.lr for k, v in reference.best_by_optimizer().items()}
    assert result.band() == reference.band()
    # the same trials with the same numbers (trials are deterministic)
    ours, theirs = by_key(result), by_key(reference)
    assert set(theirs) == set(ours)
    for key, record in theirs.items():
        assert ours[key].status == record.status, key
        assert ours[key].loss == record.loss and ours[key].steps == record.steps, key
        assert ours[key].phase == record.phase, key
    finished = [r for r in result.records if r.status == "finished"]
    assert finished and all(r.curve and r.eval_curve and r.steps == 90 for r in finished)
    assert sorted(r.number for r in result.records) == list(range(1, len(result.records) + 1))
    # the SweepResult works as the Optuna engine's does
    assert "rank" in result.table() and "best: lr=" in result.summary()
    data = json.loads(result.to_json(tmp_path / "r.json"))
    assert data["best"]["lr"] == reference.best_lr and len(data["trials"]) == len(ours)
    result.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000
    assert result.storage == f"Ray Tune experiment {storage}/lrkit-sweep-logreg"
    assert os.path.isfile(os.path.join(storage, "lrkit-sweep-logreg", "lrkit-sweep.json"))


def test_diverged_and_pruned_trials_are_recorded(swept):
    result, _ = swept
    records = by_key(result)
    diverged = [r for r in result.records if r.status == "diverged"]
    assert [(r.optimizer, r.lr) for r in diverged] == [("adam", 31.6227766017)]
    assert diverged[0].loss is None and 1 <= diverged[0].diverged_step < 90
    # the rates above it are never started (the strategy marks them infeasible)
    assert not [r for r in result.records if r.optimizer == "adam" and r.lr > 31.6227766017]
    row = [p for p in result.points() if p.optimizer == "adam" and p.status == "diverged"]
    assert row and result.diverged_from("adam") == 31.6227766017
    # the walk up stopped sgd at 31.6 at the first rung, where it trailed its reference (the
    # coarse rate below, 1.0) by more than the tolerance: the strategy's own rule
    pruned = [r for r in result.records if r.status == "pruned"]
    assert [(r.optimizer, r.lr) for r in pruned] == [("sgd", 31.6227766017)]
    step = rung_steps(90, 3, 2)[0]
    assert pruned[0].steps == step and pruned[0].eval_curve[-1][0] == step
    reference = dict(map(tuple, records[("sgd", 1.0, 0)].eval_curve))[step]
    assert trails(pruned[0].eval_curve[-1][1], reference, 0.1)
    assert pruned[0].diagnosis and "pruned: no advice" in pruned[0].diagnosis


def test_the_same_call_restores_a_finished_sweep_and_gives_back_the_rng(swept):
    result, storage = swept
    random.seed(7)
    torch.manual_seed(7)
    before = (random.getstate(), torch.get_rng_state())
    started = time.perf_counter()
    again = lrkit.sweep("logreg", engine="ray", storage=storage, **SETTINGS)
    assert time.perf_counter() - started < 15  # nothing trained again
    assert [(r.number, r.status, r.loss) for r in again.records] == [
        (r.number, r.status, r.loss) for r in result.records]
    assert random.getstate() == before[0] and torch.equal(torch.get_rng_state(), before[1])


def test_cli_runs_the_ray_engine(swept, capsys):
    result, storage = swept
    assert main(["sweep", "logreg", *CLI_SETTINGS, "--engine", "ray", "--storage", storage,
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)  # the JSON alone: Ray prints to stderr
    assert data["best"]["lr"] == result.best_lr and len(data["trials"]) == len(result.records)
    assert main(["sweep", "logreg", *CLI_SETTINGS, "--engine", "ray", "--storage",
                 storage]) == 0
    out = capsys.readouterr().out
    assert "best: lr=" in out and "Ray Tune experiment" in out and "optuna" not in out


@pytest.mark.parametrize("args, words", [
    (["--engine", "spark"], "invalid choice: 'spark'"),
    (["--ray-address", "auto"], "--ray-address is for --engine ray"),
    (["--engine", "ray", "--report"], "--report reads an Optuna study"),
    (["--engine", "ray", "--continue"], "--continue is for the Optuna engine"),
    (["--engine", "ray", "--storage", "postgresql://u:secret@db/lrkit"], "is a database"),
    (["--engine", "ray", "--workers", "0"], "workers must be an integer >= 1, got 0"),
])
def test_cli_refuses_bad_ray_input(local_ray, args, words, capsys):
    try:
        code = main(["sweep", "logreg", *CLI_SETTINGS, *args])
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert words in err and "secret" not in err


def test_bad_input_gives_clear_errors(swept, tmp_path, monkeypatch):
    _, storage = swept
    with pytest.raises(LrkitError, match="engine must be 'optuna' or 'ray', got 'spark'"):
        lrkit.sweep("logreg", engine="spark", **SETTINGS)
    with pytest.raises(LrkitError, match="ray_address='auto' is for engine='ray'"):
        lrkit.sweep("logreg", ray_address="auto", **SETTINGS)
    with pytest.raises(LrkitError, match="heartbeat_interval=3 is for the Optuna engine"):
        lrkit.sweep("logreg", engine="ray", heartbeat_interval=3, **SETTINGS)
    with pytest.raises(LrkitError, match="continue_study"):
        lrkit.sweep("logreg", engine="ray", continue_study=True, **SETTINGS)
    journal = tmp_path / "sweeps.journal"
    journal.write_text("")
    with pytest.raises(LrkitError, match="is a file"):
        lrkit.sweep("logreg", engine="ray", storage=str(journal), **SETTINGS)
    with pytest.raises(LrkitError, match="is not an existing directory"):
        lrkit.sweep("logreg", engine="ray", storage=str(tmp_path / "no" / "such"), **SETTINGS)
    with pytest.raises(LrkitError, match="Ray is already initialised"):
        lrkit.sweep("logreg", engine="ray", ray_address="auto", storage=storage, **SETTINGS)
    # the stored sweep with other settings, or other workers, is refused before any trial
    other = dict(SETTINGS, budget=120)
    with pytest.raises(LrkitError, match=r"other settings \(budget: stored 90, now 120\)"):
        lrkit.sweep("logreg", engine="ray", storage=storage, **other)
    with pytest.raises(LrkitError, match="started with workers=1, now workers=2"):
        lrkit.sweep("logreg", engine="ray", storage=storage, **dict(SETTINGS, workers=2))
    # without Ray installed
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(LrkitError, match=r"pip install 'lrkit\[ray\]'"):
        lrkit.sweep("logreg", engine="ray", **SETTINGS)


def test_import_lrkit_does_not_import_ray():
    code = ("import sys, lrkit, lrkit.sweep, lrkit.cli.sweep; "
            "print([m for m in ('ray', 'optuna') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=subprocess_env())
    assert out.stdout.strip() == "[]"


RECIPE = '''
import os
import time

import ray

import lrkit.examples

LOG, BLOCK = {log!r}, {block!r}


def make(seed=0):
    """logreg; inside a Ray trial it logs its build, and the 4th trial waits while BLOCK is."""
    if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
        with open(LOG, "a+") as f:
            f.seek(0)
            started = len(f.read().splitlines())
            f.write(f"{{os.getpid()}}\\n")
        while started >= 3 and os.path.exists(BLOCK):
            time.sleep(0.1)
    return lrkit.examples.build("logreg", seed=seed)
'''
RESUME = dict(lrs="1e-2:1e3", points_per_decade=2, budget=60, workers=1, progress=False,
              study_name="resume")


def terminated(experiment: str) -> list[str]:
    """Trial ids that Tune's stored experiment state holds as finished."""
    found = sorted(glob.glob(os.path.join(experiment, "experiment_state-*.json")))
    if not found:
        return []
    try:
        with open(found[-1]) as f:
            state = json.load(f)
    except (OSError, ValueError):  # being written
        return []
    trials = [json.loads(t[0]) for t in state["trial_data"]]
    return [t["trial_id"] for t in trials if t["status"] == "TERMINATED"]


def kill_in_fourth_trial(code: str, args: list[str], log, experiment: str) -> None:
    """Run ``python -c code *args`` (a sweep's driver) and ``kill -9`` it while its 4th trial
    runs (the recipe blocks there), once Tune recorded the first 3 in ``experiment``."""
    driver = subprocess.Popen([sys.executable, "-c", code, *args], env=subprocess_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 40
        while not (log.exists() and len(log.read_text().splitlines()) >= 4
                   and len(terminated(experiment)) >= 3):
            assert driver.poll() is None, driver.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the sweep did not reach its 4th trial"
            time.sleep(0.1)
    finally:
        driver.kill()
        driver.wait()


def test_a_killed_sweep_resumes_without_rerunning_finished_trials(local_ray, tmp_path):
    log, block = tmp_path / "builds.log", tmp_path / "block"
    (tmp_path / "recipe.py").write_text(RECIPE.format(log=str(log), block=str(block)))
    block.write_text("")
    target, storage = f"{tmp_path / 'recipe.py'}:make", str(tmp_path / "ray")
    experiment = os.path.join(storage, "resume")
    address = ray.get_runtime_context().gcs_address
    code = ("import sys, lrkit; lrkit.sweep(sys.argv[1], engine='ray', ray_address=sys.argv[2], "
            f"storage=sys.argv[3], **{RESUME!r})")
    kill_in_fourth_trial(code, [target, address, storage], log, experiment)
    finished_before = terminated(experiment)
    assert len(finished_before) == 3
    builds_before = len(log.read_text().splitlines())
    block.unlink()
    result = lrkit.sweep(target, engine="ray", storage=storage, **RESUME)
    builds_after = len(log.read_text().splitlines()) - builds_before
    # the 3 finished trials were not run again: only the interrupted one and those after it
    assert builds_after == len(result.records) - 3
    assert len(result.records) == len({(r.lr, r.seed) for r in result.records})
    assert all(r.status in ("finished", "pruned", "diverged") for r in result.records)
    assert sorted(r.number for r in result.records) == list(range(1, len(result.records) + 1))
    # and it chose what an uninterrupted sweep chooses
    plain = lrkit.sweep("logreg", storage=str(tmp_path / "j.journal"),
                        **{k: v for k, v in RESUME.items() if k != "study_name"})
    assert result.best_lr == plain.best_lr
    assert sorted((r.lr, r.status) for r in result.records) == sorted(
        (r.lr, r.status) for r in plain.records)
