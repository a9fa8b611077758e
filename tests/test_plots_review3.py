"""Plots and files of the sweep and schedule parts: no pyplot state, `$` shown as written, and a
missing folder refused before any work (as the finder's plot already did)."""
import matplotlib
import pytest

from lrkit.errors import LrkitError
from lrkit.schedules.inspection import plot, preview
from lrkit.sweep.results import SweepResult, TrialRecord


def _sweep(study_name="s"):
    settings = {"optimizers": ["sgd$x^$"], "optimizer_labels": ["sgd$x^$"], "budget": 10,
                "seeds": 1, "rates": {"values": ["0.01", "0.1", "1"]}}
    R = TrialRecord
    records = [R(0, "sgd$x^$", 0.01, 0, "finished", loss=0.5, curve=[[1, 0.9], [10, 0.5]]),
               R(1, "sgd$x^$", 0.1, 0, "finished", loss=0.3, curve=[[1, 0.9], [10, 0.3]]),
               R(2, "sgd$x^$", 1.0, 0, "diverged", curve=[[1, 0.9], [3, float("inf")]])]
    return SweepResult(records, settings=settings, study_name=study_name)


def test_sweep_plot_keeps_no_pyplot_figure_and_draws_dollar_names(tmp_path):
    import matplotlib.pyplot as plt

    plt.close("all")
    result = _sweep(study_name=r"run $\foo$ 1")  # mathtext would fail on \foo
    fig = result.plot()  # returned, not saved: pyplot used to keep it open
    assert plt.get_fignums() == []
    result.plot(tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    assert plt.get_fignums() == []
    title = fig.axes[0].get_title()
    assert title == r"sweep run \$\foo\$ 1"
    fig.savefig(tmp_path / "again.png")  # a returned figure still renders on its own


@pytest.mark.parametrize("write", [
    lambda r, p: r.plot(p), lambda r, p: r.to_json(p), lambda r, p: r.to_csv(p)])
def test_sweep_outputs_into_a_missing_folder_are_refused_clearly(tmp_path, write):
    target = tmp_path / "missing" / "out.file"
    with pytest.raises(LrkitError, match="is not an existing directory"):
        write(_sweep(), target)
    assert not target.parent.exists()


def test_schedule_plot_shows_dollar_labels_and_refuses_a_missing_folder(tmp_path):
    p = preview("cosine(100)", 100)
    out = plot(p, str(tmp_path / "a.png"), title=r"cost $\foo$")  # mathtext error before
    assert (tmp_path / "a.png").stat().st_size > 1000 and out.endswith("a.png")
    with pytest.raises(LrkitError, match="is not an existing directory"):
        plot(p, str(tmp_path / "nope" / "a.png"))
