"""Resuming a Ray sweep from a damaged experiment, and with a failed trial.

Tune copies its state files from the driver's staging directory to the storage in a background
thread (``pyarrow.fs.copy_files``, which writes each file in place), so a driver killed during a
copy leaves a file cut short, and Tune's restore, which cannot read it, starts the experiment
over ("Failed to restore the run state"): the stored trials dropped out of the sweep. Here a
sweep is killed in its 4th trial (as in test_ray_engine.py), then a copy of its experiment gets
a cut-short file and is resumed. Each case has its own experiment name, so its own staging
directory: Tune reuses a restored run's staging directory within one Ray session.
"""
import glob
import os
import shutil

import pytest
import ray

import lrkit
from lrkit.errors import LrkitError

from tests.sweep.test_ray_engine import RECIPE, kill_in_fourth_trial, terminated

#: without the fix the cut-short Searcher state hung the resumed sweep (Tune's half-restored
#: ConcurrencyLimiter waited for trials that never came): fail instead of waiting for ever
pytestmark = pytest.mark.timeout(120)

SETTINGS = dict(lrs="1e-2:1e3", points_per_decade=2, budget=60, workers=1, progress=False)


@pytest.fixture(scope="module")
def killed(local_ray, tmp_path_factory):
    """A sweep whose driver was killed with ``kill -9`` in its 4th trial, 3 trials finished:
    (recipe target, its build log, storage, the uninterrupted sweep's records)."""
    root = tmp_path_factory.mktemp("killed")
    log, block = root / "builds.log", root / "block"
    (root / "recipe.py").write_text(RECIPE.format(log=str(log), block=str(block)))
    block.write_text("")
    target, storage = f"{root / 'recipe.py'}:make", root / "ray"
    code = ("import sys, lrkit; lrkit.sweep(sys.argv[1], engine='ray', ray_address=sys.argv[2], "
            f"storage=sys.argv[3], study_name='base', **{SETTINGS!r})")
    kill_in_fourth_trial(code, [target, ray.get_runtime_context().gcs_address, str(storage)],
                         log, str(storage / "base"))
    assert len(terminated(str(storage / "base"))) == 3
    block.unlink()
    plain = lrkit.sweep("logreg", storage=str(root / "plain.journal"), **SETTINGS)
    return target, log, storage, sorted((r.lr, r.status) for r in plain.records)


def copy_of(storage, name: str) -> str:
    shutil.copytree(storage / "base", storage / name)
    return str(storage / name)


def cut_short(path: str, keep: int = 0) -> None:
    """What a kill during Tune's copy of ``path`` to the storage leaves."""
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:keep])


def builds(log) -> int:
    return len(log.read_text().splitlines())


@pytest.mark.parametrize("keep", [0, 200])
def test_a_cut_short_searcher_state_is_rebuilt_from_tunes_experiment_state(killed, keep):
    # the Searcher's pickle, empty (EOFError) or cut in the middle (UnpicklingError): Tune's
    # restore failed, started the sweep over and trained every trial again
    target, log, storage, plain = killed
    experiment = copy_of(storage, f"searcher{keep}")
    [state] = glob.glob(os.path.join(experiment, "searcher-state-*.pkl"))
    cut_short(state, keep)
    before = builds(log)
    result = lrkit.sweep(target, engine="ray", storage=str(storage),
                         study_name=f"searcher{keep}", **SETTINGS)
    # the 3 finished trials were kept: only the interrupted one and those after it trained
    assert builds(log) - before == len(result.records) - 3
    assert len(result.records) == len({(r.lr, r.seed) for r in result.records})
    assert sorted(r.number for r in result.records) == list(range(1, len(result.records) + 1))
    assert sorted((r.lr, r.status) for r in result.records) == plain


def test_a_cut_short_experiment_state_resumes_from_the_session_before(killed):
    # the resumed sweep is a second Tune session; its experiment state is cut short: Tune's
    # restore failed and started the sweep over. The first session's state is whole
    target, log, storage, plain = killed
    experiment = copy_of(storage, "older")
    first = lrkit.sweep(target, engine="ray", storage=str(storage), study_name="older",
                        **SETTINGS)
    states = sorted(glob.glob(os.path.join(experiment, "experiment_state-*.json")))
    assert len(states) == 2
    cut_short(states[-1], 5000)
    before = builds(log)
    again = lrkit.sweep(target, engine="ray", storage=str(storage), study_name="older",
                        **SETTINGS)
    # the first session's 3 finished trials were kept; the trials after them ran again
    assert builds(log) - before == len(again.records) - 3
    assert [(r.number, r.lr, r.status) for r in again.records] == [
        (r.number, r.lr, r.status) for r in first.records]
    assert os.path.isfile(states[-1] + ".torn")


@pytest.mark.parametrize("pattern", ["search_gen_state-*.json", "experiment_state-*.json"])
def test_damaged_tune_state_with_no_session_to_fall_back_on_is_a_clear_error(killed, pattern):
    # Tune could not read it and started the sweep over, dropping the 3 finished trials
    target, log, storage, _ = killed
    experiment = copy_of(storage, "damaged" + pattern[:6])
    [state] = glob.glob(os.path.join(experiment, pattern))
    cut_short(state)
    before = builds(log)
    with pytest.raises(LrkitError, match=rf"Ray Tune's state of the experiment is damaged \("
                                         rf"{pattern.split('*')[0]}.* cannot be read: .*Give "
                                         r"another study_name \(or remove the experiment's"):
        lrkit.sweep(target, engine="ray", storage=str(storage),
                    study_name="damaged" + pattern[:6], **SETTINGS)
    assert builds(log) == before
    assert len(glob.glob(os.path.join(experiment, "experiment_state-*.json"))) == 1


FAILING = '''
import os
import ray
import lrkit.examples

LOG = {log!r}


def make(seed=0):
    """logreg; its 2nd build in a Ray trial raises."""
    if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
        with open(LOG, "a+") as f:
            f.seek(0)
            started = len(f.read().splitlines())
            f.write("build\\n")
        if started == 1:
            raise ValueError("broken at the 2nd build")
    return lrkit.examples.build("logreg", seed=seed)
'''


def test_a_failed_trial_is_kept_failed_when_the_sweep_is_resumed(local_ray, tmp_path):
    # the restored failed trial had no config in its Tune Result (it failed before its first
    # report), so it dropped out: every rerun said "the sweep stopped before its plan was done"
    log = tmp_path / "builds.log"
    (tmp_path / "failing.py").write_text(FAILING.format(log=str(log)))
    target = f"{tmp_path / 'failing.py'}:make"
    settings = dict(SETTINGS, engine="ray", storage=str(tmp_path / "ray"), max_retries=0)
    first = lrkit.sweep(target, **settings)
    failed = [(r.number, r.lr, r.error) for r in first.records if r.status == "failed"]
    assert len(failed) == 1 and "broken at the 2nd build" in failed[0][2]
    before = builds(log)
    again = lrkit.sweep(target, **settings)
    # as under the Optuna engine, a trial that failed max_retries + 1 times counts as failed
    # and is not run again; the rest of the sweep is kept as it was
    assert builds(log) == before
    assert [(r.number, r.lr, r.status, r.loss) for r in again.records] == [
        (r.number, r.lr, r.status, r.loss) for r in first.records]
    assert [(r.number, r.lr, r.error) for r in again.records if r.status == "failed"] == failed


def test_a_searcher_state_saved_before_the_last_proposal_gives_no_number_twice(killed):
    """A kill between a proposal and the Searcher's next save: the checkpoint did not know the
    trial Tune runs again, and the next proposal took its number (two trials numbered 4)."""
    import pickle

    target, log, storage, plain = killed
    experiment = copy_of(storage, "stale")
    (state_file,) = glob.glob(os.path.join(experiment, "searcher-state-*.pkl"))
    with open(state_file, "rb") as f:
        state = pickle.load(f)
    last = max(entry["number"] for entry in state["trials"].values())
    state["trials"] = {k: e for k, e in state["trials"].items() if e["number"] != last}
    state["count"] = last - 1
    with open(state_file, "wb") as f:
        pickle.dump(state, f)
    result = lrkit.sweep(target, engine="ray", storage=str(storage), study_name="stale",
                         **SETTINGS)
    numbers = sorted(r.number for r in result.records)
    assert numbers == list(range(1, len(numbers) + 1))
    assert sorted((r.lr, r.status) for r in result.records) == plain
