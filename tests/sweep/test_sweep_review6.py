"""Sweep defects found in a review of its driving logic: a sweep stopped between trials read as
complete, a rate above a walk divergence could be best (with several workers), the early-stop
note looked only at the next rate, rungs after one step, the CLI's output and option names."""
import json
import os
import textwrap

import pytest

import lrkit
from lrkit.cli import main
from lrkit.sweep import load
from lrkit.sweep.results import SweepResult, TrialRecord
from lrkit.sweep.strategy import rung_steps

RECIPES = os.path.join(os.path.dirname(__file__), "recipes.py")
SMALL = dict(lrs="1e-3:1", budget=20, progress=False)


def test_a_sweep_stopped_by_a_trial_error_reads_unfinished(tmp_path):
    """No trial was running or waiting (the failed one is retried by the next run), so the
    report read as complete: "9 trials (1 failed, 8 finished) ... best: lr=0.237"."""
    storage = str(tmp_path / "s.journal")
    with pytest.raises(lrkit.LrkitError, match="seed 1 data missing"):
        lrkit.sweep(f"{RECIPES}:seed_one_fails", seeds=2, storage=storage, **SMALL)
    stopped = load(storage)
    assert stopped.complete is False and stopped.best is not None
    assert "not finished" in stopped.summary() and "run the same command again" in \
        stopped.summary()
    assert json.loads(stopped.to_json())["complete"] is False


def test_a_finished_sweep_reads_complete(tmp_path):
    storage = str(tmp_path / "s.journal")
    result = lrkit.sweep("wine-logreg", storage=storage, **SMALL)
    assert result.complete is True and load(storage).complete is True
    assert "not finished" not in result.summary()


def _record(number, lr, status, loss=None, seed=0, optimizer="sgd"):
    return TrialRecord(number=number, optimizer=optimizer, lr=lr, seed=seed, status=status,
                       loss=loss)


SETTINGS = {"optimizers": ["sgd"], "optimizer_labels": ["sgd"], "budget": 20, "seeds": 1,
            "rates": {"values": ["0.01", "0.03", "0.1", "0.3", "1"]}}


def test_a_rate_above_a_walk_divergence_is_never_best():
    """With two workers 0.316 started beside 0.1, finished, and became the best after 0.1
    diverged: the answer hung on the number of workers."""
    records = [_record(0, 0.01, "finished", 0.6), _record(1, 0.1, "diverged"),
               _record(2, 0.03, "finished", 0.5), _record(3, 0.3, "finished", 0.4)]
    result = SweepResult(records, settings=SETTINGS)
    assert result.best.lr == 0.03
    assert result.best_by_optimizer()["sgd"].lr == 0.03
    assert result.band() == (0.03, 0.03)


def test_the_early_stop_note_looks_past_the_refine_steps():
    """The refine steps finish between the best and a pruned walk rate, so the note (which
    checked only the next rate up) never showed where it mattered."""
    records = [_record(0, 0.01, "finished", 0.6), _record(1, 0.03, "finished", 0.5),
               _record(2, 0.1, "finished", 0.55), _record(3, 0.3, "pruned", 0.7)]
    summary = SweepResult(records, settings=SETTINGS).summary()
    assert "a higher rate, 0.3, was stopped early" in summary
    # a divergence in between: nothing above it is feasible, no note
    records[2] = _record(2, 0.1, "diverged")
    assert "stopped early" not in SweepResult(records, settings=SETTINGS).summary()


def test_no_trial_is_judged_before_ten_steps():
    """At a budget of 12 the first rung was step 1: a review's best rate stopped there."""
    assert rung_steps(12, 3, 2) == []
    assert rung_steps(90, 3, 2) == [10, 30]
    assert rung_steps(2000, 3, 2) == [222, 667]


def test_json_on_stdout_stays_json_when_the_recipe_writes_to_file_descriptor_one(
        tmp_path, capfd, monkeypatch):
    """A subprocess (any C library or tool) writing to fd 1 landed in the JSON."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "noisy.py").write_text(textwrap.dedent("""
        import os
        from lrkit import examples

        def recipe(seed=0):
            os.system("echo from-a-subprocess")
            return examples.build("wine-logreg", seed=seed)
        """))
    assert main(["sweep", "noisy.py:recipe", "--lrs", "0.01:1", "--budget", "20", "--json",
                 "--storage", str(tmp_path / "s.journal"), "--no-progress"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["best"] is not None
    assert "from-a-subprocess" in err


def test_the_progress_bar_ends_full_and_names_a_trials_best(tmp_path, capsys):
    lrkit.sweep("wine-logreg", lrs="1e-3:1", budget=20, seeds=2,
                storage=str(tmp_path / "s.journal"), progress=True)
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    done = last.split("|")[2].split()[0]  # "11/11"
    assert done.split("/")[0] == done.split("/")[1] and "100%" in last
    assert "best trial lr=" in last


@pytest.mark.parametrize("option, value", [("--seeds", "0"), ("--budget", "1"),
                                           ("--epochs", "0"), ("--stride", "0")])
def test_cli_errors_name_the_option_as_written(option, value, capsys, tmp_path):
    assert main(["sweep", "wine-logreg", option, value, "--no-progress",
                 "--storage", str(tmp_path / "s.journal")]) == 2
    assert f"error: {option} must be" in capsys.readouterr().err


def test_prose_about_the_budget_is_left_as_prose(capsys, tmp_path, monkeypatch):
    """(Only "budget must ..." is the option: "give a training budget" stays a sentence.)"""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "open_ended.py").write_text(textwrap.dedent("""
        from lrkit import examples

        def recipe(seed=0):
            problem = examples.build("wine-logreg", seed=seed)
            problem.budget_steps = None
            return problem
        """))
    assert main(["sweep", "open_ended.py:recipe", "--no-progress",
                 "--storage", str(tmp_path / "s.journal")]) == 2
    err = capsys.readouterr().err
    assert "give a training budget" in err
    assert "give a training --budget" not in err


def test_the_full_grid_is_the_reference_and_marks_nothing_infeasible():
    """The walk's rule (nothing above a seed-0 divergence is best) took the grid's lowest loss
    away from it: best 0.03 where the grid's 0.3 was lowest."""
    records = [_record(0, 0.01, "finished", 0.6), _record(1, 0.1, "diverged"),
               _record(2, 0.03, "finished", 0.5), _record(3, 0.3, "finished", 0.4)]
    grid = SweepResult(records, settings=dict(SETTINGS, strategy={"mode": "grid"}))
    assert grid.best.lr == 0.3 and grid.points()[0].lr == 0.3


def test_an_infeasible_rate_ranks_after_the_feasible_ones():
    """The table and the JSON's points ranked 0.3 first, above the best (0.03)."""
    records = [_record(0, 0.01, "finished", 0.6), _record(1, 0.1, "diverged"),
               _record(2, 0.03, "finished", 0.5), _record(3, 0.3, "finished", 0.4)]
    result = SweepResult(records, settings=SETTINGS)
    assert [p.lr for p in result.points()][:3] == [0.03, 0.01, 0.3]
    assert json.loads(result.to_json())["points"][0]["lr"] == 0.03


def test_a_repeat_seeds_divergence_does_not_put_the_best_in_a_diverged_region():
    """"best: lr=0.3" beside "diverged at lr >= 0.1", where only a repeat seed of 0.1 diverged."""
    records = [_record(0, 0.1, "finished", 0.3), _record(1, 0.3, "finished", 0.2),
               _record(2, 0.1, "diverged", seed=1), _record(3, 0.3, "finished", 0.21, seed=1)]
    result = SweepResult(records, settings=dict(SETTINGS, seeds=2))
    assert result.best.lr == 0.3 and result.diverged_from("sgd") is None
    assert "diverged at" not in result.summary()


@pytest.mark.parametrize("text", ["1e-3..1", "1e-3-1", "1e-3 to 1"])
def test_a_range_written_otherwise_says_how_to_write_one(text, capsys, tmp_path):
    assert main(["sweep", "wine-logreg", "--lrs", text, "--no-progress",
                 "--storage", str(tmp_path / "s.journal")]) == 2
    assert "give a range LOW:HIGH (e.g. 1e-3:1)" in capsys.readouterr().err


def test_a_grid_reports_diverged_only_where_every_higher_rate_diverged():
    """"best: lr=0.3" beside "diverged at lr >= 0.1": the grid marks nothing infeasible."""
    grid = dict(SETTINGS, strategy={"mode": "grid"})
    records = [_record(0, 0.01, "finished", 0.6), _record(1, 0.1, "diverged"),
               _record(2, 0.03, "finished", 0.5), _record(3, 0.3, "finished", 0.4)]
    result = SweepResult(records, settings=grid)
    assert result.diverged_from("sgd") is None and "diverged at" not in result.summary()
    records[3] = _record(3, 0.3, "diverged")
    result = SweepResult(records + [_record(4, 1.0, "diverged")], settings=grid)
    assert result.diverged_from("sgd") == 0.1 and result.best.lr == 0.03  # 0.1 and above
