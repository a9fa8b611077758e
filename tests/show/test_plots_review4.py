"""A review of the plotting layer: figures that showed something false, and plot paths that
failed after the work was done."""
import json
import shutil

import numpy as np
import pytest

from lrkit.cli import main
from lrkit.errors import LrkitError
from lrkit.find import suggest
from lrkit.find.result import FinderResult
from lrkit.schedules import plot, preview
from lrkit.sweep.results import SweepResult


def _rising():
    lrs = list(np.geomspace(5, 1000, 40))
    losses = list(np.linspace(1.0, 8.8, 40))
    return FinderResult(lrs=lrs, losses=losses, smoothed=losses, suggested_lr=None,
                        method="edge", suggestions={"minimum": 0.5}, good_range=None,
                        group_ratios=[1.0], stop_reason="completed", warnings=[], settings={})


def test_a_curve_that_only_rose_is_shown_whole():
    ax = _rising().plot().axes[0]
    low, high = ax.get_ylim()
    assert low <= 1.0 and high >= 8.8  # the axis spanned 8e-13 around the first point


def test_a_curve_lowest_at_its_start_is_not_flattened_by_the_tail_cap():
    raw = np.linspace(1.0, 8.8, 40)
    assert np.array_equal(suggest._capped_tail(raw), raw)  # every loss was capped to 1.0


def test_the_legend_names_minimum_over_ten_as_the_summary_does():
    result = _rising()
    result.suggestions = {"minimum": 10.0, "edge": 20.0}
    labels = [t.get_text() for t in result.plot().axes[0].get_legend().get_texts()]
    assert "minimum/10: 10" in labels


def test_a_schedule_plot_checks_its_log_scale_path_and_labels(tmp_path):
    with pytest.raises(LrkitError, match="log scale needs a rate above 0"):
        plot(preview("constant(0)", 100), str(tmp_path / "c.png"), log=True)
    with pytest.raises(LrkitError, match="needs a file"):
        plot(preview("cosine(100)", 100), None)
    out = plot([preview("cosine(100)", 100), preview("peak(cosine(100), 0.05)", 100)],
               str(tmp_path / "mixed.png"))
    assert out.endswith("mixed.png")


def test_pgf_is_refused_up_front_without_its_tex_engine(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)  # no TeX here
    assert main(["schedule", "show", "cosine(100)", "--plot", str(tmp_path / "x.pgf")]) == 2
    assert ".pgf" in capsys.readouterr().err


def test_a_sweep_whose_plot_fails_keeps_its_json_and_csv(tmp_path, monkeypatch, capsys):
    def broken(self, path=None, **kwargs):
        raise RuntimeError("xelatex not found")

    monkeypatch.setattr(SweepResult, "plot", broken)
    code = main(["sweep", "logreg", "--lrs", "0.1", "--budget", "10", "--no-progress",
                 "--storage", str(tmp_path / "s.journal"), "--json", str(tmp_path / "s.json"),
                 "--csv", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png")])
    assert code == 2 and "plot could not be written" in capsys.readouterr().err
    assert json.loads((tmp_path / "s.json").read_text()) and (tmp_path / "s.csv").exists()


def test_a_curve_lowest_near_its_start_is_shown_whole_too():
    result = _rising()
    result.losses = result.smoothed = [1.2, 1.0, 0.99] + list(np.linspace(1.1, 8.8, 37))
    low, high = result.plot().axes[0].get_ylim()
    assert high >= 8.8
    raw = np.array(result.losses)
    assert np.array_equal(suggest._capped_tail(raw), raw)
