"""Defects found in a third review of ``lrkit.sweep`` (the Python API and its result, as a
user): each test failed before its fix."""
import functools
import os

import pytest

import lrkit
from lrkit.errors import LrkitError
from lrkit.sweep.api import default_study_name
from lrkit.sweep.optuna_engine import StorageHandle
from lrkit.sweep.space import parse_optimizers

TINY = dict(lrs="0.1,1", budget=20, progress=False)


def _recipe_for(example):
    def recipe(seed=0):
        return lrkit.examples.build(example, seed=seed)
    return recipe


class _Recipe:
    def __init__(self, example):
        self.example = example

    def __call__(self, seed=0):
        return lrkit.examples.build(self.example, seed=seed)

    def make(self, seed=0):
        return self(seed)


def test_two_closures_are_not_silently_one_study(journal):
    """``_recipe_for("wine-logreg")`` and ``_recipe_for("logreg")`` had the same default study
    name and stored label, so the second sweep resumed the first and returned wine-logreg's
    trials as logreg's. A recipe the default name cannot tell apart is refused by name."""
    wine, logreg = _recipe_for("wine-logreg"), _recipe_for("logreg")
    with pytest.raises(LrkitError, match="study_name="):
        lrkit.sweep(wine, storage=journal, **TINY)
    assert not os.path.exists(journal)  # refused before anything was stored
    first = lrkit.sweep(wine, storage=journal, study_name="wine", **TINY)
    second = lrkit.sweep(logreg, storage=journal, study_name="logreg", **TINY)
    assert [r.loss for r in first.records] != [r.loss for r in second.records]


@pytest.mark.parametrize("recipe", [
    lambda seed=0: lrkit.examples.build("logreg", seed=seed),
    functools.partial(lrkit.examples.build, "logreg"),
    _Recipe("logreg"),
    _Recipe("logreg").make,
], ids=["lambda", "partial", "callable-object", "bound-method"])
def test_recipes_without_a_telling_name_need_a_study_name(recipe):
    with pytest.raises(LrkitError, match="study_name="):
        default_study_name(recipe)


def test_named_recipes_keep_their_default_names():
    def local(seed=0):  # no captured variables: its name says what it builds
        return lrkit.examples.build("logreg", seed=seed)

    assert default_study_name(local).startswith("lrkit-sweep-")
    assert default_study_name(lrkit.examples.build) == "lrkit-sweep-lrkit.examples.build"
    assert default_study_name("wine-logreg") == "lrkit-sweep-wine-logreg"


def test_an_empty_storage_is_refused_not_the_default_journal(tmp_path, monkeypatch):
    """``storage=""`` wrote to ``.lrkit/sweeps.journal`` in the current directory."""
    monkeypatch.chdir(tmp_path)
    for empty in ("", "  "):
        with pytest.raises(LrkitError, match="storage"):
            lrkit.sweep("wine-logreg", storage=empty, **TINY)
    assert not (tmp_path / ".lrkit").exists()


@pytest.mark.parametrize("url", ["postgresql:/user:secret@host/db", "sqlite:/relative.db",
                                 "postgres:user:secret@host/db"])
def test_a_url_missing_its_slashes_is_named_a_url_with_the_password_masked(url):
    """It was taken for a journal file path ('the directory .../postgresql:/user:secret@host does
    not exist'), the password printed."""
    with pytest.raises(LrkitError) as caught:
        StorageHandle(url).open()
    text = str(caught.value)
    assert "secret" not in text and "://" in text and "URL" in text


def test_an_unknown_database_scheme_suggests_the_known_one():
    with pytest.raises(LrkitError, match="did you mean 'postgresql'"):
        StorageHandle("postgress://user:secret@host/db").open()


@pytest.mark.parametrize("spec, close", [("adma", "adam"), ("sgd-momentun", "sgd-momentum"),
                                         ("nadam", None)])
def test_an_unknown_optimizer_name_suggests_the_closest(spec, close):
    if close is None:  # torch's NAdam, by name in any case: not unknown
        parse_optimizers(spec)
        return
    with pytest.raises(LrkitError, match=fr"did you mean [^)]*{close!r}[^)]*\)"):
        parse_optimizers(f"sgd,{spec}")


def test_a_pruned_trial_gets_its_verdict_but_no_advice():
    # the highest rate of a sweep, pruned because lower rates did better, read
    # "plateaued (x3, 76%)": raise the rate
    from lrkit.sweep.results import SweepResult, TrialRecord

    detail = {"verdict": "plateaued", "recommendation": "x3", "confidence": 0.76}
    pruned = TrialRecord(number=0, optimizer="sgd", lr=0.0316, seed=0, status="pruned",
                         loss=5.5, steps=17, diagnosis_detail=dict(detail))
    finished = TrialRecord(number=1, optimizer="sgd", lr=0.01, seed=0, status="finished",
                           loss=0.05, steps=150, diagnosis_detail=dict(detail))
    result = SweepResult([pruned, finished], settings={})
    assert result.records[0].diagnosis == "plateaued (76%, pruned: no advice)"
    assert result.records[1].diagnosis == "plateaued (x3, 76%)"


def test_a_trials_diagnosis_does_not_depend_on_the_strategys_rungs():
    """The same trial (rate, seed, losses bit for bit) under refine's rungs and grid's none gets
    the same verdict (a review: too_slow x3 under refine, healthy under grid)."""
    from lrkit.sweep.space import OptimizerSpec
    from lrkit.sweep.trial import TrialConfig, run_trial

    base = dict(problem="wine-logreg", optimizer=OptimizerSpec("recipe", "recipe"), lr=0.01,
                seed=0, budget=400)
    refine = run_trial(TrialConfig(**base, eval_steps=(44, 133)))
    grid = run_trial(TrialConfig(**base))
    assert [p for p in refine.curve] == [p for p in grid.curve]
    assert len(refine.eval_curve) == 3 and len(grid.eval_curve) == 1
    assert refine.diagnosis == grid.diagnosis
