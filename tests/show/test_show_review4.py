"""From a review of the show part: the default progress bar with no usable stderr, a sweep's
notes on the report page, report() given one path, exports with numpy values, a one-rate sweep's
plot."""
import io
import json
import sys
import warnings

import numpy as np
import pytest
import torch

import lrkit
from lrkit.errors import LrkitError
from lrkit.show.progress import progress_bar, show_progress


class _NoTty(io.StringIO):
    isatty = None  # a logging shim without isatty


@pytest.mark.parametrize("stream", [None, _NoTty()])
def test_the_default_progress_without_a_usable_stderr_shows_no_bar(monkeypatch, stream):
    # pythonw or a service: find_lr(progress=None) crashed with an AttributeError
    monkeypatch.setattr(sys, "stderr", stream)
    assert show_progress(None) is False
    problem = lrkit.examples.build("wine-logreg", seed=0)
    result = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                           problem.criterion, num_steps=30)
    assert result.suggested_lr is not None or result.warnings


def test_progress_must_be_a_bool_or_none():
    with pytest.raises(LrkitError, match="progress must be True, False or None .*got 'false'"):
        progress_bar(10, "x", enabled="false")
    assert show_progress(np.bool_(True)) is True


def _sweep(tmp_path, lrs, name):
    return lrkit.sweep("wine-logreg", lrs=lrs, budget=20, progress=False, study_name=name,
                       storage=str(tmp_path / "s.journal"))


def test_the_report_shows_a_sweeps_notes_and_an_unfinished_sweep(tmp_path):
    from lrkit.show.report import render_page

    data = _sweep(tmp_path, "1e-3:0.1", "edge").to_dict()
    assert data["notes"]
    page = render_page([("s.json", data)])
    assert "the best rate is the highest tried" in page
    data["complete"] = False
    assert "Best learning rate so far (the sweep is not finished)" in render_page([(None, data)])


def test_report_takes_one_path(tmp_path):
    from lrkit.show.report import report

    path = tmp_path / "sweep.json"
    _sweep(tmp_path, "0.01,0.1", "two").to_json(path)
    for given in (str(path), path):
        page = report(given, tmp_path / "out")
        assert page.exists() and "two" in page.read_text()


def test_exports_with_numpy_values_and_bad_paths(tmp_path):
    from lrkit.sweep.results import SweepResult, TrialRecord

    record = TrialRecord(number=0, optimizer="sgd", lr=0.1, seed=0, status="finished",
                         loss=np.float32(0.5), val_loss=np.float64(np.nan))
    data = json.loads(SweepResult([record], settings={}).to_json())  # float32: not serializable
    assert data["trials"][0]["loss"] == 0.5 and data["trials"][0]["val_loss"] is None
    recipe = lrkit.recommend("wine-logreg", steps=60, progress=False)
    recipe.evidence["curve"] = np.array([1.0, 2.0])  # "can only convert an array of size 1"
    assert json.loads(recipe.to_json())["evidence"]["curve"] == [1.0, 2.0]
    with pytest.raises(LrkitError, match="is not an existing directory"):
        recipe.to_json(tmp_path / "missing" / "r.json")
    with pytest.raises(LrkitError, match="give a file name"):
        recipe.to_json(tmp_path)


def test_a_one_rate_sweep_plots_without_a_warning(tmp_path):
    result = _sweep(tmp_path, "0.1", "one")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "identical low and high xlims"
        fig = result.plot(tmp_path / "one.png")
    low, high = fig.axes[0].get_xlim()
    assert low < 0.1 < high and high / low > 5
    torch.manual_seed(0)  # (nothing else drawn from the generators here)
