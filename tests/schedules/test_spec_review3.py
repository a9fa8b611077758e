"""Defects from a review of the schedule spec, units and inspection layer, each pinned here."""
import numpy as np
import pytest

from lrkit.errors import LrkitError
from lrkit.schedules import lint, parse, preview, rescale, steps_per_epoch_from
from lrkit.schedules.spec import from_config


@pytest.mark.parametrize("spec, units, steps", [
    ("linear(0.1*total, start=0.1, end=1) >> cosine(total - 0.1*total)", {"total_steps": 1005},
     1005),
    ("linear(0.5*epoch, start=0.1, end=1) >> cosine(2.5*epoch)", {"steps_per_epoch": 391}, 1173),
])
def test_a_two_piece_join_fills_the_run_it_was_written_for(spec, units, steps):
    # rounded on their own, both pieces rounded up: 101 + 905 = 1006 for a 1005-step run
    assert parse(spec).resolve(**units).length == steps
    assert lint(spec, steps, **{k: v for k, v in units.items() if k != "total_steps"}) == []


def test_rescale_keeps_a_warmup_of_zero_steps():
    moved = rescale("warmup(0) >> cosine(1000)", 256, 1024)
    assert moved(0) == pytest.approx(4.0)  # it became warmup(1): rate 0 at step 0
    assert "warmup(0)" in str(moved)


def test_lint_sees_no_jump_where_a_floor_takes_it_away():
    assert lint("floor(cosine(100) >> constant(0.5), 0.5)", 200) == []
    (jump,) = lint("cosine(100) >> constant(0.5)", 200)
    assert jump.code == "join-jump"


def test_lint_words_an_absolute_schedules_rates_as_rates():
    (warning,) = lint("peak(cosine(100, floor=0.1), 0.001)", 150)
    assert "stay at 0.0001;" in warning.message and "x lr" not in warning.message


@pytest.mark.parametrize("metrics, match", [
    ([1.0, 0.9, 0.95], "not a \\(step, value\\) pair"), ({2: None}, "not a number"),
    ({2: "abc"}, "not a number"), ({True: 1.0}, "step True")])
def test_preview_metrics_are_checked(metrics, match):
    with pytest.raises(LrkitError, match=match):
        preview("plateau(constant(), patience=0)", 10, metrics=metrics)


def test_preview_metrics_take_numpy_steps():
    rates = preview("plateau(constant(), patience=0)", 10, metrics={np.int64(2): 1.0}).rates
    assert len(rates) == 10


@pytest.mark.parametrize("call", [lambda: steps_per_epoch_from(True),
                                  lambda: steps_per_epoch_from(10, grad_accum=True),
                                  lambda: parse("cosine(3*epoch)").resolve(batches_per_epoch=True)])
def test_a_bool_is_no_count_of_batches(call):
    with pytest.raises(LrkitError, match="positive integer"):
        call()


@pytest.mark.parametrize("text", ["cosine(" + "1+" * 3000 + "1)", "cosine(" + "-" * 19000 + "1)",
                                  "cosine(" + "1" + "0" * 400 + " * 1.0)",
                                  "cosine(" + "1" + "0" * 400 + " / 2)"])
def test_specs_past_the_parser_or_float_range_get_a_clear_error(text):
    with pytest.raises(LrkitError, match="nested too deeply|too large"):
        parse(text)


def test_a_config_value_past_the_parser_gets_a_clear_error():
    with pytest.raises(LrkitError):
        from_config({"name": "cosine", "steps": "1+" * 5000 + "1"})


def test_huge_lengths_are_refused_clearly():
    with pytest.raises(LrkitError, match="too large"):
        parse("cosine(1e300*epoch)").resolve(steps_per_epoch=1e10)


def test_max_points_and_unit_options_are_checked():
    with pytest.raises(LrkitError, match="max_points"):
        preview("cosine(100)", 100).to_dict(max_points=0)
    for call in (preview, lint):
        with pytest.raises(LrkitError, match="unknown option 'step_per_epoch'"):
            call("cosine(100)", 100, step_per_epoch=10)


def test_restarts_key_points_are_where_the_rate_restarts():
    s = parse("restarts(100, mult=1.1)")
    assert s(330) < 0.01 and s(331) == pytest.approx(1.0)  # cycle 2 began at 332
    points = [p for p in preview(s, 400).key_points if "restart" in p.label]
    assert [p.step for p in points] == [100, 210, 331]


def test_the_restarts_floor_lint_names_the_first_cycle_below_the_floor():
    (warning,) = lint("restarts(100, decay=0.5, floor=0.25)", 1000)
    assert "from cycle 3" in warning.message  # cycle 2 peaks at 0.25: flat at the floor


def test_max_points_takes_numpy_integers():
    shown = preview("cosine(100)", 100)
    assert shown.to_dict(max_points=np.int64(50)) == shown.to_dict(max_points=50)


@pytest.mark.parametrize("spec", [
    "linear(0.1*total, start=0.1, end=1) >> linear(0.3*total, start=1, end=1) >> "
    "cosine(total - 0.4*total)",
    "warmup(0.1*total) >> linear(0.3*total, start=1, end=1) >> cosine(total - 0.4*total)"])
def test_a_chain_of_three_fills_the_run_it_was_written_for(spec):
    # each piece rounded on its own: 101 + 302 + 603 = 1006 for a 1005-step run
    assert parse(spec).resolve(total_steps=1005).length == 1005
    assert [w.code for w in lint(spec, 1005) if w.code == "long-horizon"] == []


def test_a_chain_whose_piece_refuses_the_rounded_length_resolves_as_before():
    s = parse("cosine(0.25*total) >> onecycle(0.35*total) >> cosine(0.4*total)")
    assert s.resolve(total_steps=10).length == 10  # LrkitError: pct*steps = 0.9 must be > 1
