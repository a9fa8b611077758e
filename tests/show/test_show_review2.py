"""Review of the output side: finder plots on odd curves, saving, JSON export and import, the
report on damaged or mistaken inputs, escaping, and the demo's progress bar on an error."""
import io
import json
import math
import warnings

import pytest

from lrkit.cli import main
from lrkit.errors import LrkitError
from lrkit.find.result import FinderResult
from lrkit.show import report as rp
from tests.show.test_report import assert_self_contained, recipe_dict, schedule_dict, sweep_dict


def finder(**changes) -> FinderResult:
    data = dict(lrs=[1e-4, 1e-3, 1e-2, 1e-1, 1.0], losses=[2.0, 1.8, 1.2, 0.9, 5.0],
                smoothed=[2.0, 1.9, 1.5, 1.1, 2.0], suggested_lr=1e-2, method="steepest",
                suggestions={"steepest": 1e-2, "valley": None}, good_range=(1e-3, 1e-1),
                group_ratios=[1.0], stop_reason="completed", warnings=[], settings={})
    data.update(changes)
    return FinderResult(**data)


def drawn(result: FinderResult):
    """The figure, drawn to PNG with every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = result.plot()
        fig.savefig(io.BytesIO(), format="png")
    return fig


# -- finder plots ----------------------------------------------------------------------------

def test_plot_into_a_missing_directory_is_a_clear_error(tmp_path):
    target = tmp_path / "no" / "such" / "curve.png"
    with pytest.raises(LrkitError, match="is not an existing directory"):
        finder().plot(target)
    with pytest.raises(LrkitError, match="is not an existing directory"):
        finder().to_json(tmp_path / "missing" / "r.json")
    buffer = io.BytesIO()
    finder().plot(buffer)  # a file object is still accepted
    assert buffer.getvalue()[:4] == b"\x89PNG"


def test_plot_with_nan_in_the_smoothed_curve_draws_and_marks_the_suggestion():
    fig = drawn(finder(smoothed=[math.nan, 1.9, 1.5, 1.1, 2.0]))
    ax = fig.axes[0]
    assert all(math.isfinite(v) for v in ax.get_ylim())
    marker = [line for line in ax.get_lines() if str(line.get_label()).startswith("suggested")]
    assert marker and math.isfinite(marker[0].get_ydata()[0])
    assert marker[0].get_xdata()[0] == 1e-2


def test_plot_leaves_out_zero_rates_on_the_log_axis():
    fig = drawn(finder(lrs=[0.0, 1e-3, 1e-2, 1e-1, 1.0]))
    for line in fig.axes[0].get_lines():
        xs = [x for x in line.get_xdata() if not isinstance(x, str)]
        assert all(x > 0 for x in xs if line.get_linestyle() != ":")


def test_validation_curve_below_the_training_loss_stays_in_view():
    fig = drawn(finder(val_steps=[0, 2, 4], val_losses=[0.5, 0.2, 0.1]))
    ax = fig.axes[0]
    val = [line for line in ax.get_lines() if line.get_label() == "validation loss"][0]
    assert list(val.get_xdata()) == [1e-4, 1e-2, 1.0]  # each value at its own step's rate
    low, high = ax.get_ylim()
    assert low <= 0.1 and high >= 2.0


def test_validation_points_that_cannot_be_drawn_are_skipped():
    drawn(finder(val_steps=[0, 2, 4], val_losses=[2.0, 3.0]))  # lengths differ
    drawn(finder(val_steps=[0, 2, 9], val_losses=[2.0, None, 3.0]))  # None, step out of range


def test_plot_into_the_callers_axes_keeps_the_callers_layout():
    from matplotlib.figure import Figure

    fig = Figure(layout="constrained")
    left, _right = fig.subplots(1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "The figure layout has changed to tight"
        assert finder().plot(ax=left) is fig
    assert type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"


def test_dollar_signs_in_names_do_not_break_the_plots():
    drawn(finder(suggestions={"steepest": 1e-2, "$\\foo$": 1e-3}))
    schedule = dict(schedule_dict(), label="$x^$", spec="$x^$")
    sweep = sweep_dict()
    sweep["points"] = [dict(p, optimizer="$\\bad$") for p in sweep["points"]]
    recipe = dict(recipe_dict(), schedule="$_$")
    page = rp.render_page([("p.json", schedule), ("s.json", sweep), ("r.json", recipe)])
    assert "$x^$" in page


# -- JSON in and out -------------------------------------------------------------------------

def test_to_json_takes_its_own_indent_and_writes_strict_json():
    result = finder(losses=[2.0, 1.8, math.inf, math.nan, 5.0], suggested_lr=math.nan)
    text = result.to_json(indent=4)
    assert text.startswith('{\n    "lrs"')
    json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} in the JSON"))


def test_from_dict_of_only_the_curve_and_suggestion_fills_the_rest():
    """What the report detects as a range test: ``lrs``, ``losses``, ``suggested_lr``."""
    data = {"lrs": [1e-4, 1e-3, 1e-2, 1e-1], "losses": [2.0, 1.5, None, 3.0],
            "suggested_lr": 1e-3}
    result = FinderResult.from_dict(data)
    assert result.steps == 4 and math.isnan(result.losses[2]) and result.suggestions == {}
    drawn(result)
    assert result.summary().startswith("Suggested learning rate: 0.001")
    page = rp.render_page([("minimal.json", data)])
    assert 'id="suggested-lr"' in page


def test_from_dict_round_trips_validation_nan():
    result = finder(val_steps=[0, 2], val_losses=[1.0, math.nan])
    back = FinderResult.from_dict(json.loads(result.to_json()))
    assert back.val_steps == [0, 2] and math.isnan(back.val_losses[1])
    assert back.to_dict() == result.to_dict()


@pytest.mark.parametrize("change, message", [
    ({"losses": [1.0, 2.0]}, "losses has 2 values but lrs has 5"),
    ({"lrs": "abc"}, "lrs must be a list of numbers"),
    ({"smoothed": ["x"] * 5}, "smoothed must be a list of numbers"),
    ({"suggested_lr": "0.1"}, "suggested_lr must be a positive number or null"),
    ({"suggestions": [1, 2]}, "suggestions must map method names to rates"),
    ({"val_steps": [0, 7], "val_losses": [1.0, 2.0]}, "val_steps must be step indices"),
])
def test_from_dict_refuses_a_broken_curve_with_what_is_wrong(change, message):
    data = dict(finder().to_dict(), **change)
    with pytest.raises(LrkitError, match=message):
        FinderResult.from_dict(data)


def test_summary_table_stays_aligned_for_long_names_and_extreme_rates():
    result = finder(suggestions={"steepest": 1.2345e-12, "a_much_longer_method": 1.5e11,
                                 "valley": None}, suggested_lr=1.2345e-12)
    rows = result.summary().split("\n\n")[1].splitlines()[:4]
    ends = {len(row.rstrip(" *")) for row in rows}
    assert len(ends) == 1, rows


# -- the report on damaged or mistaken inputs -------------------------------------------------

@pytest.mark.parametrize("name, data, message", [
    ("finder.json", dict(finder().to_dict(), losses=[1.0]), "losses has 1 values"),
    ("sweep.json", dict(sweep_dict(), band=[0.1]), "a field has the wrong shape or type"),
    ("schedule.json", dict(schedule_dict(), curve=[1, 2, 3]), "a field has the wrong shape"),
    ("recipe.json", dict(recipe_dict(), optimizer_options=["momentum"]), "wrong shape"),
    ("example.json", {"tables": [{"optimizer": "SGD", "results": [1]}]}, "wrong shape"),
])
def test_report_on_a_damaged_result_names_the_file_without_a_traceback(name, data, message,
                                                                       tmp_path, capsys):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    with pytest.raises(LrkitError, match=f"{name}.*{message}"):
        rp.render_page([(str(path), data)])
    out = tmp_path / "out"
    assert main(["report", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert name in err and "Traceback" not in err
    assert not (out / "index.html").exists()


def test_report_on_a_binary_an_empty_or_a_bom_file(tmp_path, capsys):
    png = tmp_path / "overview.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    assert main(["report", str(png), "--out", str(tmp_path / "o")]) == 2
    assert "overview.png' is not JSON" in capsys.readouterr().err
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert main(["report", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "empty.json' is empty" in capsys.readouterr().err
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(recipe_dict()).encode())
    assert rp.load_result(bom)[0] == rp.RECIPE


def test_a_run_key_cannot_break_out_of_its_id_attribute():
    evil = '"><script>alert(1)</script>'
    runs = [{"key": evil, "label": "recipe", "losses": [1.0, 0.5], "final_train_loss": 0.5}]
    page = rp.versus_body({"steps": 2, "runs": runs}, rp.Ids())
    assert "<script>" not in page
    assert_self_contained(page)


def test_a_single_note_or_reason_is_one_bullet():
    assert rp.bullets("one note") == '<ul class="">' + "<li>one note</li></ul>"


# -- progress ----------------------------------------------------------------------------------

class Bar:
    """Stands in for a tqdm bar and records whether it was closed."""

    def __init__(self, *args, **kwargs):
        self.closed = False

    def update(self, n=1):
        pass

    def set_postfix_str(self, text):
        pass

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_the_demo_closes_its_progress_bar_when_a_part_fails(monkeypatch):
    import lrkit
    from lrkit.show import demo, progress

    bars = []

    def broken(*args, **kwargs):
        raise RuntimeError("range test failed")

    monkeypatch.setattr(progress, "progress_bar", lambda *a, **k: bars.append(Bar()) or bars[-1])
    monkeypatch.setattr(lrkit, "find_lr", broken)
    with pytest.raises(RuntimeError, match="range test failed"):
        demo.run_demo(seed=0, quick=True, progress=True)
    assert bars and all(bar.closed for bar in bars)


def test_a_suggestion_read_from_the_validation_curve_is_marked_on_it():
    result = finder(val_steps=[0, 2, 4], val_losses=[0.5, 0.2, 0.1],
                    settings={"curve": "validation"})
    marker = [line for line in drawn(result).axes[0].get_lines()
              if str(line.get_label()).startswith("suggested")][0]
    assert marker.get_ydata()[0] == pytest.approx(0.2)  # the validation loss at 1e-2
    trained = [line for line in drawn(finder()).axes[0].get_lines()
               if str(line.get_label()).startswith("suggested")][0]
    assert trained.get_ydata()[0] == pytest.approx(1.5)  # the training curve's, as before
