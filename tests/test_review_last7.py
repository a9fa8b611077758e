"""A review of the last three commits: the CLI's main() called in-process leaves Python's streams
as it found them; TrainingRun.to_dict keeps val_curve's pairs; a schedule-free optimizer's own
warmup in a recipe when its groups' warmups differ or it is longer than the run."""
from __future__ import annotations

import io
import sys

import pytest

import lrkit
import lrkit.cli as cli
from lrkit.training import TrainingRun


def test_main_in_process_puts_back_a_strict_stdouts_error_handler(monkeypatch, capsys):
    # main() reconfigured sys.__stdout__ to errors="backslashreplace" for good: a script or a
    # test that called it then had its unencodable output escaped, not refused
    real = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "__stdout__", real)
    assert cli.main(["schedule", "list"]) == 0
    assert real.errors == "strict"


def test_main_in_process_puts_back_a_missing_stdout(monkeypatch, capsys):
    # sys.stdout None (pythonw, a daemon) became an open os.devnull file after main() returned
    monkeypatch.setattr(sys, "stdout", None)
    assert cli.main(["schedule", "list"]) == 0
    assert sys.stdout is None


def test_training_run_to_dict_keeps_val_curve_pairs():
    # asdict keeps the (step, loss) tuples; the JSON-ready copy made them lists, so a finite
    # run no longer came back equal from TrainingRun(**run.to_dict())
    run = TrainingRun([1.0, 0.5], [0.1, 0.1], 0.5, 0.9, False, [(0, 1.0), (1, 0.5)])
    assert TrainingRun(**run.to_dict()) == run
    assert TrainingRun([float("nan")], [0.1], float("nan"), None, True,
                       [(0, float("inf"))]).to_dict()["val_curve"] == [(0, None)]


schedulefree = pytest.importorskip("schedulefree")


def test_schedule_free_groups_with_different_warmups_are_not_told_to_keep_theirs():
    # the group note told the user to keep group 1's warmup_steps=40 (two warmups again) while
    # the schedule-free note said warmup_steps=0 in the optimizer
    problem = lrkit.examples.build("moons-mlp", seed=0)
    params = list(problem.model.parameters())
    problem.optimizer = schedulefree.AdamWScheduleFree(
        [{"params": params[:2], "warmup_steps": 100}, {"params": params[2:], "warmup_steps": 40}],
        lr=1e-3)
    recipe = lrkit.recommend(problem, steps=400, progress=False, confirm=False)
    assert recipe.warmup_steps == 100
    assert not any("warmup_steps=40" in note for note in recipe.notes)
    assert any("longest of its groups' 100, 40" in note for note in recipe.notes)


def test_schedule_free_warmup_longer_than_the_run_is_said_to_be_cut():
    # the note said warmup_steps=1000 was the schedule's warmup; the schedule's was 299
    problem = lrkit.examples.build("moons-mlp", seed=0)
    problem.optimizer = schedulefree.AdamWScheduleFree(problem.model.parameters(), lr=1e-3,
                                                       warmup_steps=1000)
    recipe = lrkit.recommend(problem, steps=300, progress=False, confirm=False)
    assert recipe.warmup_steps == 299
    assert any("warmup_steps=1000" in note and "cut to 299 steps" in note
               for note in recipe.notes)
