"""What a range test hands back and how it is shown, found in a review: the report's restored
sentence and no-suggestion reason, old result files, labels, the good range, short curves."""
import re

import numpy as np

import lrkit
from lrkit.find import suggest
from lrkit.show import report as rp


def _gradient_descent():
    state = {"w": 5.0}

    def step(lr):
        state["w"] -= lr * 2 * (state["w"] - 1)
        return (state["w"] - 1) ** 2
    return step


def _page(result) -> str:
    return rp.render_page([("r.json", result.to_dict())])


def test_the_report_says_when_nothing_was_restored():
    """A FunctionTrainable without save_fn/load_fn: the page said "the model and optimizer were
    restored afterwards" beside the result's own warning that nothing was."""
    result = lrkit.range_test(lrkit.FunctionTrainable(_gradient_descent()), num_steps=100,
                              noise_batches=0, progress=False)
    assert result.settings["restored"] is False
    page = _page(result)
    assert "nothing was restored afterwards" in page and "were restored afterwards" not in page


def test_the_reports_no_suggestion_reason_is_the_summarys():
    """It guessed from the first or last warning: "nothing was restored" for a NaN first loss."""
    result = lrkit.range_test(lrkit.FunctionTrainable(lambda lr: float("nan")), num_steps=100,
                              budget_steps=3, noise_batches=0, progress=False)
    headline = re.search(r'<p class="headline">(.*?)</p>', _page(result)).group(1)
    assert "very first loss was nan" in headline
    assert result.settings["no_suggestion"][:40] in headline


def test_an_old_or_minimal_result_file_is_shown_as_the_api_reads_it():
    """A warning given as a string showed one bullet a character; a missing stop reason read
    "(stopped: None)"."""
    data = {"lrs": list(np.geomspace(1e-5, 1, 30)), "losses": list(np.linspace(2, 1, 30)),
            "suggested_lr": 0.01, "warnings": "one warning"}
    page = rp.render_page([("old.json", data)])
    assert page.count("warning: ") == 1 and "stopped: None" not in page


def test_the_report_labels_minimum_over_ten_as_the_summary_does():
    result = lrkit.range_test(lrkit.FunctionTrainable(_gradient_descent()), num_steps=100,
                              noise_batches=0, progress=False)
    assert "minimum/10" in _page(result)


def test_the_cli_table_prints_an_infinite_loss_as_inf():
    """The stop reason said "loss became inf" and the table's last row "nan"."""
    from lrkit.cli.find import curve_table
    from lrkit.find.result import FinderResult

    lrs = list(np.geomspace(1e-5, 1, 12))
    losses = list(np.linspace(2, 1, 11)) + [float("inf")]
    result = FinderResult.from_dict({"lrs": lrs, "losses": losses, "suggested_lr": None})
    assert curve_table(result).splitlines()[-1].split()[1] == "inf"


def test_a_method_chosen_by_name_lies_inside_its_good_range():
    rng = np.random.default_rng(139)
    n = 139
    lrs, x = np.logspace(-7, 1, n), np.linspace(0, 1, n)
    loss = (2.0 - 1.87 / (1 + np.exp(-(x - 0.1) * 30)) + 1000 * np.clip(x - 0.25, 0, None) ** 2
            + 0.5 * rng.standard_normal(n))
    for method in ("edge", "minimum", "valley", "steepest"):
        analysis = suggest.analyse(lrs, loss, method=method)
        low, high = analysis.good_range
        assert low <= analysis.suggested_lr <= high, method


def test_the_good_range_keeps_a_width_where_the_fall_starts_late():
    """(A guard: with a high edge fraction and a cliff-like fall the range could shrink to one
    point, low == high; a review's curves showed it.)"""
    lrs = np.geomspace(1e-4, 1, 60)
    loss = np.where(lrs < 0.01, 2.0, 2.0 - 1.5 * np.log10(lrs / 0.01) / 0.5)
    loss = np.where(lrs > 0.03, 5.0, loss)
    analysis = suggest.analyse(lrs, loss, gradient_noise=0.0)
    low, high = analysis.good_range
    assert high / low >= 1.5


def test_valley_on_a_short_curve_does_not_make_the_methods_disagree():
    """fastai's trim of the last 5 points left valley the first few points of a 10-point
    validation curve: "the methods disagree by 2.9 decades" on a clean fall."""
    lrs = np.logspace(-6, 0, 10)
    loss = np.array([2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.8, 0.6, 1.5, 4.0])
    analysis = suggest.analyse(lrs, loss, smooth_window=1.0)
    assert analysis.suggestions["valley"] is not None  # (still computed and shown)
    assert "valley" not in (analysis.disagreement or "")  # (it was 2.9 decades, valley's)
