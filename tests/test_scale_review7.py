"""Scale review: what grew faster than the data (reading long JSONL logs, a sweep's summary and
export over many trials) or wrote every point of a long curve into a plot."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lrkit.diagnose import logs
from lrkit.diagnose.logs import read_log


def _count_columns(monkeypatch) -> list:
    """Count the calls of the reader's per-record column matching."""
    calls = []
    original = logs._record_columns

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(logs, "_record_columns", counted)
    return calls


def _jsonl_lines(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        loss = 2.0 * math.exp(-i / (n / 5)) + 0.2 + 0.05 * float(rng.standard_normal())
        lines.append(json.dumps({"step": i, "loss": loss, "lr": 0.1, "grad_norm": 1.0}))
        if i % 100 == 99:
            lines.append(json.dumps({"step": i, "val_loss": loss + 0.05}))
    return lines


def test_jsonl_columns_are_matched_once_per_key_set(tmp_path, monkeypatch):
    # matching each record's keys against the known names again took 40% of reading a JSONL
    # log (1e6 lines: 9.2 s, 4.1 s once per key set); the log reads the same either way
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(_jsonl_lines(3000)) + "\n")
    monkeypatch.setattr(logs, "COLUMNS_CACHED", 0, raising=False)  # no cache: each record
    reference = read_log(path)
    monkeypatch.undo()
    calls = _count_columns(monkeypatch)
    log = read_log(path)
    # the first records are scanned for the file's keys (KEY_SCAN_RECORDS), then each of the two
    # key sets (a loss record, a validation record) is matched once
    assert len(calls) <= logs.KEY_SCAN_RECORDS + 2
    assert (log.steps, log.losses, log.lrs, log.val_losses, log.source) == (
        reference.steps, reference.losses, reference.lrs, reference.val_losses, reference.source)
    assert len(log.losses) == 3000 and len(log.val_losses) == 30
    assert log.diagnose().to_dict() == reference.diagnose().to_dict()


def test_json_list_of_records_is_matched_once_per_key_set(tmp_path, monkeypatch):
    records = [json.loads(line) for line in _jsonl_lines(2000)]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(records))
    calls = _count_columns(monkeypatch)
    log = read_log(path)
    assert len(calls) <= 2
    assert len(log.losses) == 2000 and log.lrs == [0.1] * 2000 and len(log.val_losses) == 20


#: the most points a drawn curve may have
MAX_PLOTTED = 4000


class _CountingList(list):
    """A list that counts the loops over it."""

    loops = 0

    def __iter__(self):
        type(self).loops += 1
        return super().__iter__()


@pytest.mark.parametrize("mode", [None, "grid"])
def test_sweep_result_reads_its_records_a_bounded_number_of_times(mode):
    # diverged_from read every record, and the ranking, the best, the bands and the JSON export
    # asked it once per point: O(points x records), 1.9 s for to_dict() at 2,000 trials
    from lrkit.sweep.results import SweepResult, TrialRecord

    lrs = np.geomspace(1e-4, 10, 400)
    records = [TrialRecord(number=k, optimizer="sgd", lr=float(lr), seed=0,
                           status="diverged" if lr > 5 else "finished",
                           loss=None if lr > 5 else (math.log10(lr) + 1) ** 2, steps=20,
                           curve=[[0, 1.0], [10, 0.5]])
               for k, lr in enumerate(lrs)]
    settings = {"rates": {"values": [float(v) for v in lrs]}}
    if mode:
        settings["strategy"] = {"mode": mode}
    result = SweepResult(records, settings=settings, study_name="s")
    expected = (result.best_lr, result.band(), result.diverged_from("sgd"))
    result = SweepResult(records, settings=settings, study_name="s")
    result.records = _CountingList(result.records)
    _CountingList.loops = 0
    result.summary()
    data = result.to_dict()
    result.table()
    assert _CountingList.loops < 60  # a few per call, not one per point (400)
    assert (result.best_lr, result.band(), result.diverged_from("sgd")) == expected
    assert data["diverged_from"]["sgd"] == expected[2] and expected[2] is not None
    assert len(data["trials"]) == 400


def _finder_result(n: int):
    from lrkit.find.result import FinderResult

    rng = np.random.default_rng(0)
    lrs = np.geomspace(1e-7, 10, n)
    losses = 2.3 - 0.5 * np.tanh(np.log10(lrs / 1e-4)) + 0.05 * rng.standard_normal(n)
    losses[n // 3] = 9.0  # one spike: the thinned curve keeps it
    return FinderResult(lrs=lrs.tolist(), losses=losses.tolist(), smoothed=losses.tolist(),
                        suggested_lr=1e-2, method="edge",
                        suggestions={"edge": 1e-2, "minimum": 1e-3}, good_range=(1e-3, 1e-1),
                        group_ratios=[1.0], stop_reason="completed", warnings=[], settings={})


def test_long_range_test_plot_draws_a_bounded_number_of_points(tmp_path):
    # every point was drawn: a 100,000-step range test's SVG was 11 MB (107 MB at 1e6 steps)
    result = _finder_result(20_000)
    fig = result.plot()
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if line.get_label() in ("loss", "smoothed loss")]
    assert len(curves) == 2
    for line in curves:
        xs, ys = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        assert len(xs) <= MAX_PLOTTED  # (lrkit.show.plots.MAX_PLOTTED)
        # the same span, the spike and the lowest point kept, in order
        assert xs[0] == result.lrs[0] and xs[-1] == result.lrs[-1]
        assert ys.max() == max(result.losses) and ys.min() == min(result.losses)
        assert np.all(np.diff(xs) > 0)
    marker = [line for line in ax.get_lines() if str(line.get_label()).startswith("suggested")]
    assert marker and marker[0].get_xdata()[0] == 1e-2
    path = tmp_path / "finder.svg"
    result.plot(path)
    assert path.stat().st_size < 1_500_000  # 2.4 MB when all 40,000 points were drawn
    # a range test of ordinary length is drawn whole, as before
    short = _finder_result(300)
    raw = next(line for line in short.plot().axes[0].get_lines() if line.get_label() == "loss")
    assert list(raw.get_xdata()) == short.lrs


def test_report_run_curves_draw_a_bounded_number_of_points():
    from matplotlib.figure import Figure

    from lrkit.show.report import draw_runs, smooth

    rng = np.random.default_rng(1)
    n = 30_000
    losses = (2.0 * np.exp(-np.arange(n) / 5000) + 0.1 + 0.02 * rng.standard_normal(n)).tolist()
    runs = [{"lr": 0.1, "losses": losses}, {"lr": 1.0, "losses": losses[:50] + [math.nan]}]
    ax = Figure().add_subplot(1, 1, 1)
    draw_runs(ax, runs, "runs", labels=lambda run: f"lr {run['lr']}")
    long_line = ax.get_lines()[0]
    steps, values = smooth(losses)
    ys = np.asarray(long_line.get_ydata())
    assert len(ys) <= MAX_PLOTTED  # (lrkit.show.plots.MAX_PLOTTED)
    assert ys.max() == max(values) and ys.min() == min(values)
    assert long_line.get_xdata()[-1] == steps[-1]
    assert ax.get_yscale() == "log"
    # the short run, drawn whole, and its cross where it stopped
    assert len(ax.get_lines()[1].get_xdata()) == 50
    assert list(ax.get_lines()[2].get_xdata()) == [50]


def test_a_monitor_report_on_a_long_run_does_not_copy_the_run():
    """Each report copied the losses and rates, built a step array and two masks of the whole
    run (~7 ms a report at 1e6 steps, so a run's reports grew as steps²); the bin means are
    computed from views now, with the same values."""
    import tracemalloc

    import lrkit

    n = 200_000
    monitor = lrkit.Monitor(report_every=0, logger=False)
    losses = (1.0 + np.exp(-np.arange(n) / 5e4)).tolist()
    for loss in losses:
        monitor.update(loss, lr=0.1)
    monitor.diagnose()  # the history settled into its array
    tracemalloc.start()
    try:
        result = monitor.diagnose()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.evidence["steps_per_point"] == n / 1000
    assert peak < 8 * n  # less than one float64 copy of the run (it made over four)
