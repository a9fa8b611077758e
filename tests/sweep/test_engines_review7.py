"""Review 7 of the sweep engines (lrkit/sweep/ray_engine.py): bad storage values, a Searcher
state older than Tune's after a kill during Tune's copy, and progress=False on a resumed sweep.

Only the last test starts Ray (the module's local Ray of 2 CPUs, two rates of ``logreg`` for 20
steps); the others stop before Ray, or need none.
"""
import json
import os
import pickle
import re

import pytest

import lrkit
from lrkit.cli import main
from lrkit.errors import LrkitError
from lrkit.sweep import ray_engine
from lrkit.sweep.api import build_spec

SMALL = dict(lrs="0.01,0.1", budget=20, progress=False, workers=1)


@pytest.fixture
def no_run(monkeypatch):
    """``ray_engine.run`` replaced by one that records the storage location it was given (a
    sweep that gets that far would start Ray and train)."""
    seen = []

    def run(spec, study_name, location, **kwargs):
        seen.append(location)
        raise AssertionError(f"the sweep would run, in {location!r}")

    monkeypatch.setattr(ray_engine, "run", run)
    return seen


@pytest.mark.parametrize("storage", ["foo://bucket/sweeps", "nosuchfs+x://host/sweeps"])
def test_a_storage_uri_pyarrow_cannot_open_is_a_clear_error(storage, capsys):
    # pyarrow's ArrowInvalid ("Unrecognized filesystem type in URI") or OSError ("Unable to load
    # libjvm") came out of ray_engine.run (its _read_marker, before Ray starts) as a traceback
    with pytest.raises(LrkitError, match=rf"storage '{re.escape(storage)}' cannot be opened as Ray Tune's "
                                         r"storage_path \(.+\); give a directory, or a URI"):
        lrkit.sweep("logreg", engine="ray", storage=storage, **SMALL)
    code = main(["sweep", "logreg", "--engine", "ray", "--storage", storage, "--lrs", "0.01",
                 "--budget", "20", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "lrkit sweep: error: storage" in err and "Traceback" not in err


@pytest.mark.parametrize("storage", [123, b"runs", ["runs"]])
def test_a_storage_that_is_not_a_path_is_refused(storage, no_run, tmp_path, monkeypatch):
    # storage=123 became a directory '123' in the working directory, where Tune put the sweep
    # (the Optuna engine refuses it)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LrkitError, match=r"storage must be a directory or a URI \(a str\) for "
                                         rf"engine='ray', got {type(storage).__name__} "):
        lrkit.sweep("logreg", engine="ray", storage=storage, **SMALL)
    assert no_run == [] and os.listdir(tmp_path) == []


def test_the_default_storage_named_is_created_as_when_omitted(no_run, tmp_path, monkeypatch):
    # --storage .lrkit/ray in a project without .lrkit was refused ("create it first"), while
    # omitting it creates .lrkit/ray
    monkeypatch.chdir(tmp_path)
    for storage in (None, ".lrkit/ray", os.path.join(".lrkit", "ray")):
        with pytest.raises(AssertionError, match="the sweep would run"):
            lrkit.sweep("logreg", engine="ray", storage=storage, **SMALL)
    assert no_run == [str(tmp_path / ".lrkit" / "ray")] * 3


def test_a_searcher_state_older_than_tunes_state_takes_tunes_ends(tmp_path):
    # Tune copies its state files to the storage one by one, experiment_state-* before
    # searcher-state-*: a driver killed between the two left the Searcher's file older, with a
    # trial Tune holds as TERMINATED still running. Tune restored it as ended and never reported
    # it again, and the plan waited for it: the resumed sweep hung (a sweep stopped in its 2nd
    # trial, its Searcher file edited so: killed after 90 s)
    spec = build_spec("logreg", lrs="1e-3:1", points_per_decade=2, budget=30)
    planner = ray_engine.Planner(spec)
    config = planner.propose("first")
    assert isinstance(config, dict) and planner.trials["first"]["status"] == "running"
    session = "2026-01-01_00-00-00"
    with open(tmp_path / f"searcher-state-{session}.pkl", "wb") as f:
        pickle.dump(planner.state(), f)  # the older copy: the trial running
    rungs = spec.strategy().rung_steps
    outcome = {"eval_curve": [[s, 1.0] for s in rungs] + [[30, 0.5]], "steps": 30}
    last = {ray_engine.STATUS: "finished", "lrkit_objective": 0.5,
            ray_engine.OUTCOME: json.dumps(outcome), "lrkit_number": 1}
    state = {"trial_data": [[json.dumps({"trial_id": "first", "config": config,
                                         "status": "TERMINATED"}),
                             json.dumps({"last_result": last})]]}
    (tmp_path / f"experiment_state-{session}.json").write_text(json.dumps(state))
    restored = ray_engine.Planner(spec)
    ray_engine._restore_planner(restored, str(tmp_path / f"searcher-state-{session}.pkl"))
    entry = restored.trials["first"]
    assert entry["status"] == "finished" and entry["value"] == 0.5
    assert entry["rungs"] == {s: 1.0 for s in rungs}
    # the plan goes on (it waited: None) with the next trial, numbered after it
    following = restored.propose("second")
    assert isinstance(following, dict) and following["number"] == 2
    # a trial Tune runs again (unfinished there) keeps the Searcher's entry
    state["trial_data"][0][0] = json.dumps({"trial_id": "first", "config": config,
                                            "status": "PENDING"})
    (tmp_path / f"experiment_state-{session}.json").write_text(json.dumps(state))
    again = ray_engine.Planner(spec)
    ray_engine._restore_planner(again, str(tmp_path / f"searcher-state-{session}.pkl"))
    assert again.trials["first"]["status"] == "running"


@pytest.mark.timeout(90)
def test_progress_false_silences_a_resumed_sweep_started_with_progress(local_ray, tmp_path,
                                                                       capsys):
    # Tune restores the RunConfig a sweep started with: one started with progress printed Tune's
    # status table ("== Status == ...") again under progress=False / --no-progress
    settings = dict(SMALL, engine="ray", storage=str(tmp_path), study_name="quiet")
    first = lrkit.sweep("logreg", **dict(settings, progress=True))
    assert capsys.readouterr().err.strip()  # the progress it was asked for
    again = lrkit.sweep("logreg", **settings)
    err = capsys.readouterr().err
    assert "Status" not in err and "Trial" not in err, err[-2000:]
    assert [(r.lr, r.loss) for r in again.records] == [(r.lr, r.loss) for r in first.records]


def test_the_clash_check_of_a_ray_sweep_compares_with_rays_default_storage(tmp_path, monkeypatch):
    """The CLI refused an output at the Optuna journal's default path under --engine ray, whose
    storage is a directory elsewhere."""
    import argparse

    from lrkit.cli.sweep import check_args

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".lrkit").mkdir()

    def args(**kw):
        base = dict(target="wine-logreg", plot=None, csv=None, json=None, storage=None,
                    engine="ray")
        return argparse.Namespace(**{**base, **kw})

    check_args(args(json=os.path.join(".lrkit", "sweeps.journal")))  # not Ray's storage
    with pytest.raises(LrkitError, match="is also --storage"):  # Optuna's, still
        check_args(args(engine="optuna", json=os.path.join(".lrkit", "sweeps.journal")))
