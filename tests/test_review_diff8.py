"""Regressions found by a review of the changes in d89f564..4c212fb (each fails before its fix)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import lrkit
from lrkit import examples
from lrkit.errors import LrkitError

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    env.setdefault("MPLBACKEND", "Agg")
    return env


# -- lrkit.files.write_atomically -----------------------------------------------------------------
def test_dev_stdout_into_a_pipe_is_written_in_place():
    """``--json /dev/stdout | jq``: os.path.realpath turns /dev/stdout into
    /proc/<pid>/fd/pipe:[N], which is no path, and mkstemp failed there with FileNotFoundError
    (lrkit find exited 2); open('/dev/stdout', 'w') wrote into the pipe before."""
    code = "from lrkit.files import write_atomically; write_atomically('/dev/stdout', 'x\\n')"
    run = subprocess.run([sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "x\n"


# -- sweep: the summary's note for failed rates ---------------------------------------------------
def _raising_once(marker: str, error: BaseException = KeyboardInterrupt()):
    """wine-logreg whose first trial at a rate below 0.05 raises ``error`` once (Ctrl-C, or the
    CLI's SIGTERM, by default)."""
    def recipe(seed: int = 0):
        problem = examples.build("wine-logreg", seed=seed)
        criterion = problem.criterion

        def loss_fn(model, batch):
            if problem.optimizer.param_groups[0]["lr"] < 0.05 and not os.path.exists(marker):
                Path(marker).touch()
                raise error
            return criterion(model(batch[0]), batch[1])

        problem.loss_fn = loss_fn
        return problem

    return recipe


def test_a_rate_stopped_by_ctrl_c_is_not_said_to_have_failed_on_every_attempt(tmp_path):
    """An attempt stopped by Ctrl-C is marked interrupted and never counts; the summary (and
    --json's notes) said the rate "failed on every attempt and is left out of the best and the
    band", though the next run trains it as usual."""
    storage = str(tmp_path / "s.journal")
    with pytest.raises(KeyboardInterrupt):
        lrkit.sweep(_raising_once(str(tmp_path / "marker")), storage=storage,
                    study_name="s", lrs="0.01,0.1", strategy="grid", budget=20,
                    progress=False)
    result = lrkit.sweep.load(storage, "s")
    assert result.best is not None  # (lr 0.1 finished first)
    assert not any("failed on every attempt" in note for note in result.notes()), \
        result.summary()


def test_a_rate_with_retries_left_is_not_said_to_have_failed_on_every_attempt(tmp_path):
    """One raised attempt of max_retries=3: the next run retries it, and the summary said it
    had failed on every attempt and was left out."""
    recipe = _raising_once(str(tmp_path / "marker"), RuntimeError("a passing hiccup"))
    storage = str(tmp_path / "s.journal")
    with pytest.raises(LrkitError, match="a passing hiccup"):
        lrkit.sweep(recipe, storage=storage, study_name="s", lrs="0.01,0.1", strategy="grid",
                    budget=20, progress=False, max_retries=3)
    result = lrkit.sweep.load(storage, "s")
    assert result.best is not None
    assert not any("failed on every attempt" in note for note in result.notes()), \
        result.summary()


# -- sweep: a worker process stopped by SIGTERM ----------------------------------------------------
RECIPE = '''
import os, signal
from pathlib import Path
from lrkit import examples

def recipe(seed=0):
    problem = examples.build("wine-logreg", seed=seed)
    criterion = problem.criterion

    def loss_fn(model, batch):
        marker = os.environ["REVIEW8_MARKER"]
        if os.getpid() != int(os.environ["REVIEW8_PARENT"]) and not os.path.exists(marker):
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGTERM)  # `kill PID` of one --workers process
        return criterion(model(batch[0]), batch[1])

    problem.loss_fn = loss_fn
    return problem
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and signals (Linux)")
def test_a_worker_process_sent_sigterm_does_not_fail_a_sweep_the_others_completed(
        tmp_path, monkeypatch):
    """A --workers process sent SIGTERM (by hand, or a scheduler) now turns it into
    KeyboardInterrupt and exits 143; the parent read every positive exit code as a worker
    whose trial raised and stopped a complete sweep with "failed ...; see their errors above"
    (no error was printed). It exited -15 before: a warning, and the sweep's result."""
    recipe = tmp_path / "term_recipe.py"
    recipe.write_text(RECIPE)
    monkeypatch.setenv("REVIEW8_PARENT", str(os.getpid()))
    monkeypatch.setenv("REVIEW8_MARKER", str(tmp_path / "marker"))
    result = lrkit.sweep(f"{recipe}:recipe", storage=str(tmp_path / "s.journal"),
                         study_name="s", lrs="0.01,0.03,0.1,0.3", strategy="grid", budget=30,
                         progress=False, workers=2)
    assert (tmp_path / "marker").exists()  # the worker process was stopped mid-trial
    assert result.complete
    assert {p.status for p in result.points()} == {"finished"}


# -- sweep: a SIGTERM just after a trial's training ----------------------------------------------
def test_an_interrupt_after_the_training_of_a_trial_does_not_use_up_its_retries(
        tmp_path, monkeypatch):
    """Only run_trial is inside _execute's `except KeyboardInterrupt`: a Ctrl-C/SIGTERM while
    the result is told (to_dict, set_user_attr, tell: journal writes) left the trial RUNNING,
    unmarked, and the next run recovered it as a worker that died; that now counts towards
    max_retries (with max_retries=0 the rate was recorded failed for good)."""
    import lrkit.sweep.optuna_engine as engine

    real = engine.run_trial
    state = {"done": False}

    class Outcome:
        def __init__(self, outcome):
            self._outcome = outcome

        def __getattr__(self, name):
            return getattr(self._outcome, name)

        def to_dict(self):
            if not state["done"]:
                state["done"] = True
                raise KeyboardInterrupt  # the SIGTERM lands as the result is told
            return self._outcome.to_dict()

    monkeypatch.setattr(engine, "run_trial", lambda config, report: Outcome(real(config, report)))
    storage = str(tmp_path / "s.journal")
    options = dict(storage=storage, study_name="s", lrs="0.01,0.1", strategy="grid", budget=20,
                   progress=False, max_retries=0)
    with pytest.raises(KeyboardInterrupt):
        lrkit.sweep("wine-logreg", **options)
    result = lrkit.sweep("wine-logreg", **options)
    assert {p.status for p in result.points()} == {"finished"}, result.summary()


# -- sync_ranks as a step option -------------------------------------------------------------------
@pytest.mark.parametrize("value", ["no", "false", 0.5])
def test_a_recipes_sync_ranks_that_is_not_a_bool_is_refused_by_name(value):
    """sync_ranks became a step option (a recipe's dict may hold it), and every other step
    option's value is checked by name; 'false' was read as True."""
    problem = examples.build("wine-logreg")
    problem.step_options = {"sync_ranks": value}
    with pytest.raises(LrkitError, match="sync_ranks"):
        problem.trainable()


# -- docs ------------------------------------------------------------------------------------------
def test_find_md_no_longer_says_from_trainers_problem_lacks_sync_ranks():
    """fbd7dae put sync_ranks=True in from_trainer's step_options for recommend; the paragraph
    still ends "from_trainer's Problem (for recommend and sweeps) has no such option yet: run
    those in a single process"."""
    text = " ".join((REPO / "docs" / "find.md").read_text().split())
    assert "has no such option yet" not in text
