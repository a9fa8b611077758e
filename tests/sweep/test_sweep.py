"""Real sweeps on a built-in example (small budgets), through Optuna's journal storage."""
import json
import math
import subprocess
import sys

import pytest

import lrkit
from lrkit.errors import LrkitError
from lrkit.sweep import load
from lrkit.sweep.optuna_engine import SETTINGS_ATTR, StorageHandle

from tests.sweep.helpers import RECIPES, subprocess_env

SMALL = dict(lrs="1e-3:1", points_per_decade=4, budget=60, progress=False)


def optuna_study(journal, name):
    import optuna

    return optuna.load_study(study_name=name, storage=StorageHandle(journal).open())


def keys(study):
    """(optimizer, lr, seed) of every finished attempt."""
    return [(t.user_attrs["optimizer"], t.user_attrs["lr"], t.user_attrs["seed"])
            for t in study.get_trials(deepcopy=False) if t.state.is_finished()
            and t.state.name != "FAIL"]


def test_sweep_end_to_end(journal, tmp_path):
    result = lrkit.sweep("wine-logreg", storage=journal, **SMALL)
    assert isinstance(result, lrkit.SweepResult)
    best = result.best
    assert best is not None and best.status == "finished" and math.isfinite(best.loss)
    assert best.lr == result.best_lr and best.optimizer == "SGD (recipe)"
    low, high = result.band()
    assert low <= best.lr <= high
    points = result.points()
    assert points[0] == best and [p.loss for p in points if p.loss is not None] == sorted(
        p.loss for p in points if p.loss is not None)
    assert {p.status for p in points} <= {"finished", "pruned", "diverged"}
    finished = [r for r in result.records if r.status == "finished"]
    assert all(r.curve and r.eval_curve and r.steps == 60 for r in finished)
    assert "rank" in result.table() and "best: lr=" in result.summary()
    # exports
    rows = result.to_csv(tmp_path / "r.csv").splitlines()
    assert rows[0].startswith("number,optimizer,lr,seed,status,loss") and len(rows) == 1 + len(
        result.records)
    data = json.loads(result.to_json(tmp_path / "r.json"))
    assert data["best"]["lr"] == best.lr and len(data["trials"]) == len(result.records)
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["budget"] == 60
    result.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000
    # an ordinary Optuna study: the same trials, the settings stored with it
    study = optuna_study(journal, result.study_name)
    assert study.user_attrs[SETTINGS_ATTR]["budget"] == 60
    assert len(keys(study)) == len(set(keys(study))) == len(result.records)
    assert study.best_trial.params["lr"] == pytest.approx(best.lr)
    trial = study.best_trial  # what Optuna's tools (optuna-dashboard) show
    assert set(trial.params) == {"lr", "seed"} and trial.distributions["lr"].log
    assert trial.user_attrs["status"] == "finished" and trial.user_attrs["optimizer_label"]
    assert trial.intermediate_values  # the rungs
    # the same call again: everything is there already, nothing is rerun
    again = lrkit.sweep("wine-logreg", storage=journal, **SMALL)
    assert len(optuna_study(journal, result.study_name).trials) == len(study.trials)
    assert again.best_lr == best.lr
    # and it can be read back without running anything
    assert load(journal).best_lr == best.lr


def test_optimizers_and_seeds_give_a_seed_comparison(journal):
    result = lrkit.sweep("wine-logreg", storage=journal, optimizers="sgd,adam", seeds=2,
                         repeat_top=2, **SMALL)
    per_optimizer = result.best_by_optimizer()
    assert set(per_optimizer) == {"sgd", "adam"}
    repeated = [p for p in result.points() if p.seeds == 2]
    assert len(repeated) == 4 and all(p.loss_sd is not None for p in repeated)
    comparison = result.seed_comparison()
    assert comparison is not None and isinstance(comparison["significant"], bool)
    assert "seed noise" in result.summary()


def test_other_settings_are_refused_unless_continued(journal):
    first = lrkit.sweep("wine-logreg", storage=journal, **SMALL)
    with pytest.raises(LrkitError, match="other settings.*seeds.*--continue"):
        lrkit.sweep("wine-logreg", storage=journal, **{**SMALL, "budget": 60}, seeds=2)
    study = optuna_study(journal, first.study_name)
    before = set(keys(study))
    more = lrkit.sweep("wine-logreg", storage=journal, seeds=2, continue_study=True, **SMALL)
    after = set(keys(optuna_study(journal, first.study_name)))
    assert before < after  # the seed-0 trials were reused, only the repeats were added
    assert {k[2] for k in after - before} == {1}
    assert more.best_lr == first.best_lr
    # another study name in the same file is independent
    other = lrkit.sweep("wine-logreg", storage=journal, study_name="other", seeds=2, **SMALL)
    assert other.study_name == "other"


def test_callable_recipe_and_epochs(journal):
    def recipe(seed=0):
        return lrkit.examples.build("wine-logreg", seed=seed)

    result = lrkit.sweep(recipe, storage=journal, lrs="0.01,0.1,1", epochs=2, progress=False)
    assert {r.steps for r in result.records if r.status == "finished"} == {2 * 8}
    assert result.study_name.startswith("lrkit-sweep-")


def test_two_local_workers_share_one_sweep(journal):
    result = lrkit.sweep(f"{RECIPES}:slow_wine", storage=journal, workers=2,
                         optimizers="sgd,adam", **{**SMALL, "budget": 80})
    study = optuna_study(journal, result.study_name)
    finished = keys(study)
    assert len(finished) == len(set(finished)) == len(result.records)
    assert result.best is not None
    single = lrkit.sweep("wine-logreg", storage=journal, study_name="single",
                         optimizers="sgd,adam", **{**SMALL, "budget": 80})
    # every trial is deterministic: the shared results agree with a one-worker sweep's
    seen = {(r.optimizer, r.lr): r.loss for r in single.records if r.status == "finished"}
    for r in result.records:
        if r.status == "finished" and (r.optimizer, r.lr) in seen:
            assert r.loss == pytest.approx(seen[(r.optimizer, r.lr)], rel=1e-6)


def test_a_failing_recipe_stops_the_sweep_with_its_error(journal):
    with pytest.raises(LrkitError, match="boom from the recipe"):
        lrkit.sweep(f"{RECIPES}:broken", storage=journal, **SMALL)


def test_a_problem_instance_is_not_a_recipe(journal):
    with pytest.raises(LrkitError, match="fresh model per trial"):
        lrkit.sweep(lrkit.examples.build("wine-logreg"), storage=journal, **SMALL)


def test_missing_optuna_is_a_clear_error(monkeypatch, journal):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(LrkitError, match=r"pip install 'lrkit\[sweep\]'"):
        lrkit.sweep("wine-logreg", storage=journal, **SMALL)


def test_importing_lrkit_does_not_import_optuna():
    code = ("import sys, lrkit; f = lrkit.sweep; import lrkit.sweep as m; "
            "assert callable(f) and callable(m) and callable(lrkit.sweep); "
            "assert 'optuna' not in sys.modules, 'optuna imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_progress_bar_and_range_edge_hint(journal, capsys):
    result = lrkit.sweep("wine-logreg", storage=journal, lrs="1e-3:0.1", points_per_decade=4,
                         budget=60, progress=True)
    err = capsys.readouterr().err
    assert "sweep wine-logreg" in err and "trial" in err
    assert result.best_lr == pytest.approx(0.1)  # plain SGD on a convex problem: the top
    assert "the best rate is the highest tried" in result.summary()


def test_a_problem_without_validation_data_is_scored_on_its_training_loss(journal):
    # no val_loader: every trial finishes, scored on its final training loss (not "diverged")
    def recipe(seed):
        problem = lrkit.examples.build("wine-logreg", seed=seed)
        problem.val_loader = None
        return problem

    run = lrkit.train(recipe(0), lr=0.1, steps=40, seed=0)
    assert not run.diverged and math.isfinite(run.val_loss)
    assert run.val_loss == pytest.approx(sum(run.losses[-2:]) / 2)  # the last 5% of 40 steps
    result = lrkit.sweep(recipe, storage=journal, lrs="1e-3:1", points_per_decade=2, budget=40,
                         progress=False)
    assert result.best_lr is not None
    assert any(r.status == "finished" for r in result.records)


def test_a_failing_trial_is_not_retried_by_another_worker_in_the_same_run(journal):
    # the sweep stops with the error and the next run retries it: with two workers the other
    # one claimed the retry at once, and a run spent two of the rate's attempts (a review)
    import optuna

    from lrkit.sweep.optuna_engine import StorageHandle

    with pytest.raises(LrkitError, match="boom above 0.05|worker processes failed"):
        lrkit.sweep(f"{RECIPES}:broken_above", storage=journal, study_name="twice", workers=2,
                    lrs="1e-3:1", points_per_decade=4, budget=60, progress=False)
    study = optuna.load_study(study_name="twice", storage=StorageHandle(journal).open())
    errors = [(t.user_attrs.get("optimizer"), t.user_attrs.get("lr"))
              for t in study.get_trials(deepcopy=False) if "error" in t.user_attrs]
    assert errors and len(errors) == len(set(errors))  # one attempt per rate in this run
