"""Preview, key points, every lint rule, plots, and batch-size rescaling."""
import json
import math
import re

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as L

from lrkit.errors import LrkitError
from lrkit.schedules import (Scale, constant, cosine, epoch, exponential, floor, linear_rule,
                             lint, parse, peak, plateau, plot, polynomial, preview, rescale,
                             restarts, sqrt_rule, total, warmup, wsd)
from lrkit.schedules.inspection import DENSE_STEPS, LINT_CODES, SampledRates

LINT_CASES = [
    # (spec, run steps, expected code)
    ("warmup(10) >> cosine(100)", 110, "zero-start"),
    ("linear(100, start=0, end=1)", 100, "zero-start"),
    ("cosine(100) >> constant(0.5)", 200, "join-jump"),
    ("join([cosine(100, floor=0.1), constant()], [60])", 200, "join-jump"),
    ("warmup(200, start=0.1) >> cosine(100)", 150, "warmup-too-long"),
    ("wsd(1000, decay=100, warmup=600)", 500, "warmup-too-long"),
    ("cosine(100)", 200, "short-horizon"),
    ("warmup(10, start=0.1) >> cosine(90)", 150, "short-horizon"),
    ("cosine(1000)", 200, "long-horizon"),
    ("restarts(10, floor=0.3, decay=0.5)", 100, "floor-above-peak"),
    ("floor(cosine(100) * 0.3, 0.5)", 100, "floor-above-peak"),
]


@pytest.mark.parametrize("spec,steps,code", LINT_CASES, ids=[f"{c[2]}:{c[0]}" for c in LINT_CASES])
def test_each_lint_rule_fires(spec, steps, code):
    found = lint(spec, steps)
    assert code in [w.code for w in found], found
    w = next(w for w in found if w.code == code)
    assert w.message and str(w).startswith(f"[{code}]")


def test_every_lint_code_is_covered_above():
    assert {c[2] for c in LINT_CASES} == set(LINT_CODES)


@pytest.mark.parametrize("spec,steps", [
    ("warmup(500, start=0.01) >> cosine(9500, floor=0.1)", 10000),
    ("warmup(0.05*total, start=0.01) >> cosine(0.95*total)", 20000),
    ("cosine(100, floor=0.5) >> constant(0.5)", 300),           # continuous join: no jump
    ("wsd(1000, decay=200, warmup=100, floor=0.01)", 1000),
    ("onecycle(1000)", 1000),
    ("peak(plateau(warmup(10, start=0.1) >> cosine(90)), 0.001)", 100),
    ("restarts(10, floor=0.1, decay=0.5)", 25),                  # decayed peaks only after the run
    ("floor(cosine(100), 0.1)", 100),
])
def test_clean_schedules_have_no_warnings(spec, steps):
    assert lint(spec, steps) == []


def test_lint_details_name_steps_and_rates():
    (jump,) = [w for w in lint("cosine(100, floor=0.1) >> constant(0.5)", 150) if w.code == "join-jump"]
    assert jump.step == 100 and "0.1" in jump.message and "0.5" in jump.message
    (short,) = lint("warmup(10, start=0.5) >> cosine(90, floor=0.2)", 150)
    assert short.code == "short-horizon" and short.step == 100 and "last 50 steps" in short.message
    assert lint("cosine(100)", None) == []  # run-length rules need the run length


def test_preview_key_points_and_rates():
    p = preview("warmup(100, start=0.01) >> cosine(900, floor=0.1)", 1000, lr=0.3)
    assert p.steps == 1000 and p.rates[0] == pytest.approx(0.003)
    assert p.peak == (100, pytest.approx(0.3))
    labels = {k.step: k.label for k in p.key_points}
    assert labels[0] == "start, lowest" and "warmup ends" in labels[100] and "peak" in labels[100]
    assert "end" in labels[999]
    assert p.warnings == []
    data = json.loads(json.dumps(p.to_dict()))
    assert data["spec"] == "warmup(100, start=0.01) >> cosine(900, floor=0.1)"
    assert len(data["curve"]) <= 520 and data["curve"][0] == [0, pytest.approx(0.003)]
    text = p.format()
    assert "warmup ends" in text and "relative" in text
    assert str(p) == text  # print(preview) shows the report
    assert len(repr(p)) < 200 and "steps=1000" in repr(p)  # not the 1000 rates


def test_preview_of_an_absolute_schedule_ignores_lr_and_resolves_fractions():
    p = preview("peak(warmup(0.1*total, start=0.5) >> cosine(0.9*total), 0.002)", 500, lr=99.0)
    assert max(p.rates) == pytest.approx(0.002)
    assert p.schedule == parse("peak(warmup(50, start=0.5) >> cosine(450), 0.002)")
    p2 = preview(warmup(2 * epoch, start=0.5) >> cosine(8 * epoch), 100, steps_per_epoch=10)
    assert p2.schedule == warmup(20, start=0.5) >> cosine(80)


def test_preview_simulates_torch_schedulers_for_comparison():
    theirs = preview(lambda opt: L.CosineAnnealingLR(opt, T_max=100, eta_min=0.001), 101, lr=0.1)
    ours = preview("cosine(100, floor=0.01)", 101, lr=0.1)
    assert theirs.source == "torch" and theirs.label == "CosineAnnealingLR"
    assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(ours.rates, theirs.rates))
    one = preview(lambda opt: L.OneCycleLR(opt, max_lr=0.1, total_steps=200), 200)
    assert one.peak[1] == pytest.approx(0.1)  # needs momentum: the throwaway optimizer has it
    metrics = {t: 1.0 for t in range(0, 60, 3)}
    ref = preview(lambda opt: L.ReduceLROnPlateau(opt, factor=0.5, patience=2), 60, metrics=metrics)
    mine = preview("plateau(constant(), factor=0.5, patience=2)", 60, metrics=metrics)
    assert ref.rates == pytest.approx(mine.rates) and min(mine.rates) < 1.0
    with pytest.raises(LrkitError, match="no plateau"):
        preview("cosine(60)", 60, metrics=metrics)


def test_plot_writes_an_image(tmp_path):
    a = preview("warmup(100, start=0.01) >> cosine(900)", 1000)
    b = preview(lambda opt: L.SequentialLR(opt, [L.LinearLR(opt, 0.01, total_iters=100),
                                                 L.CosineAnnealingLR(opt, 900)], [100]), 1000)
    out = a.plot(str(tmp_path / "s.png"), others=[b])
    assert (tmp_path / "s.png").stat().st_size > 1000
    assert plot(a, str(tmp_path / "s.svg"), log=True).endswith("s.svg")


def test_preview_bad_input():
    with pytest.raises(LrkitError, match="steps must be a positive integer"):
        preview("cosine(10)", 0)
    with pytest.raises(LrkitError, match="lr must be a finite number > 0"):
        preview("cosine(10)", 10, lr=-1.0)


# --- batch-size rescaling ---------------------------------------------------------------------

def test_rules():
    assert linear_rule(0.1, 256, 1024) == pytest.approx(0.4)
    assert sqrt_rule(0.1, 256, 1024) == pytest.approx(0.2)


def test_rescale_relative_schedule_scales_peak_and_keeps_warmup_in_samples():
    s = rescale("warmup(500) >> cosine(10000, floor=0.1)", 256, 1024)
    assert s == Scale(warmup(125) >> cosine(10000, floor=0.1), 4.0)
    assert rescale(s, 1024, 256) == Scale(warmup(500) >> cosine(10000, floor=0.1), 1.0)
    kept = rescale("warmup(500) >> cosine(10000)", 256, 1024, rule="sqrt", warmup="steps")
    assert kept == Scale(warmup(500) >> cosine(10000), 2.0)


def test_rescale_absolute_plateau_wsd_and_epoch_warmups():
    s = rescale(peak(plateau(warmup(2 * epoch) >> cosine(total)), 0.001), 64, 256, rule="sqrt")
    assert s == peak(plateau(warmup(2 * epoch) >> cosine(total)), 0.002)  # epochs are samples already
    assert rescale(wsd(1000, decay=200, warmup=100), 32, 64) == Scale(wsd(1000, decay=200, warmup=50), 2.0)
    assert rescale(constant(), 8, 8) == constant()
    with pytest.raises(LrkitError, match="rule='cube' is not allowed"):
        rescale(constant(), 8, 16, rule="cube")
    with pytest.raises(LrkitError, match="batch must be a positive finite number"):
        rescale(constant(), 8, 0)
    with pytest.raises(LrkitError, match="warmup='epochs' is not allowed"):
        rescale(constant(), 8, 16, warmup="epochs")


def test_misc_lint_free_families_render_in_preview():
    for spec in ["step(10)", "multistep([5, 15])", "restarts(7, mult=2)", "cyclic(5)",
                 "exponential(0.95)", "polynomial(30)", "inverse_sqrt(10)"]:
        p = preview(spec, 40)
        assert p.key_points[0].step == 0 and p.key_points[-1].step == 39
    assert floor(cosine(10), 0.5)(9) == 0.5 and exponential(0.5, floor=0.3)(5) == 0.3
    assert restarts(4, mult=2)(4) == 1.0 and polynomial(4, power=2)(2) == 0.25
    assert torch.__version__  # torch is importable here (preview of factories uses it)


# --- review fixes -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,fragment", [
    ("cosine(100, floor=1.5)", "floor=1.5 is not allowed"),
    ("exponential(0.99, floor=2)", "floor=2 is not allowed"),
    ("wsd(100, decay=20, floor=1.2)", "floor=1.2 is not allowed"),
    ("polynomial(100, end=3)", "end=3 is not allowed"),
    ("restarts(10, floor=1.1)", "floor=1.1 is not allowed"),
    ("cyclic(10, low=2)", "low=2 is not allowed"),
])
def test_a_floor_above_the_peak_is_refused_like_cyclic_low(spec, fragment):
    with pytest.raises(LrkitError, match=fragment) as info:
        parse(spec)
    assert "<= 1" in str(info.value) and "fraction of the peak" in str(info.value)


def test_floors_at_the_peak_and_above_a_scaled_schedule_still_work():
    assert cosine(10, floor=1.0)(5) == 1.0 and polynomial(10, end=1.0)(3) == 1.0
    # floor(...) may sit above what it wraps: still a lint finding, as documented
    assert [w.code for w in lint("floor(cosine(100) * 0.3, 0.5)", 100)] == ["floor-above-peak"]


@pytest.mark.parametrize("steps", [0, -5, 1.5, True])
def test_lint_refuses_a_run_length_preview_refuses(steps):
    with pytest.raises(LrkitError, match="steps must be a positive integer"):
        lint("cosine(10)", steps)
    with pytest.raises(LrkitError, match="steps must be a positive integer"):
        preview("cosine(10)", steps)
    assert lint("cosine(10)") == []  # without a run length the run rules are skipped


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), 0.0])
def test_preview_and_lint_refuse_a_non_finite_lr(lr):
    with pytest.raises(LrkitError, match="lr must be a finite number > 0"):
        preview("cosine(10)", 10, lr=lr)
    with pytest.raises(LrkitError, match="lr must be a finite number > 0"):
        lint("cosine(10)", 10, lr=lr)


def test_preview_factory_that_returns_no_scheduler():
    with pytest.raises(LrkitError, match="the factory returned None, not a torch scheduler"):
        preview(lambda opt: None, 60)
    with pytest.raises(LrkitError, match="returned int"):
        preview(lambda opt: 3, 60)


def test_preview_torch_scheduler_failure_is_a_clear_error():
    with pytest.raises(LrkitError, match="OneCycleLR failed after step 50 of the 60-step preview"):
        preview(lambda opt: L.OneCycleLR(opt, max_lr=0.1, total_steps=50), 60)
    with pytest.raises(LrkitError, match="too long to preview a torch scheduler"):
        preview(lambda opt: L.StepLR(opt, 10), 10 ** 9)


def test_long_preview_is_sampled_but_exact_at_every_step():
    s = warmup(1000, start=0.1) >> cosine(10 ** 9, floor=0.1) >> constant(0.1)
    p = preview(s, 2 * 10 ** 9, lr=0.5)
    assert p.sampled and isinstance(p.rates, SampledRates) and p.steps == 2 * 10 ** 9
    assert len(p.rates.points) < 5000 and p.rates.points[-1] == p.steps - 1
    for t in (0, 999, 1000, 12345, 10 ** 9 + 999, 10 ** 9 + 1000, p.steps - 1):
        assert p.rates[t] == 0.5 * s(t)  # exact, computed on demand
    for t in (0, 999, 1000, 10 ** 9 + 999, 10 ** 9 + 1000, p.steps - 1):
        assert t in p.rates.points  # both ends, boundaries and the step before each are sampled
    assert p.rates[-1] == p.rates[p.steps - 1] and p.rates[5:8] == [0.5 * s(t) for t in (5, 6, 7)]
    with pytest.raises(IndexError):
        p.rates[p.steps]
    assert p.peak == (1000, 0.5)
    labels = {k.step: k.label for k in p.key_points}
    assert "warmup ends" in labels[1000] and "switch to constant(0.1)" in labels[10 ** 9 + 1000]
    assert p.warnings == []
    assert len(p.to_dict()["curve"]) < 600 and "sampled at" in repr(p.rates)


def test_short_previews_stay_dense_lists():
    p = preview("cosine(100)", DENSE_STEPS)
    assert isinstance(p.rates, list) and not p.sampled and len(p.rates) == DENSE_STEPS
    assert "sampled" not in p.format()


def test_sampled_plateau_matches_the_dense_one():
    metrics = {t: 1.0 for t in range(0, 300, 10)}
    spec = "plateau(constant(), factor=0.5, patience=2)"
    dense = preview(spec, 300, metrics=metrics)
    long = preview(spec, DENSE_STEPS + 1, metrics=metrics)
    assert long.sampled
    assert [long.rates[t] for t in range(300)] == dense.rates
    assert long.rates[DENSE_STEPS] == dense.rates[-1]


def test_resolve_names_epochs_not_total_steps():
    with pytest.raises(LrkitError, match="epochs must be a number > 0, got 0"):
        cosine(total).resolve(steps_per_epoch=10, epochs=0)
    with pytest.raises(LrkitError, match="epochs=0.01 at 10 steps per epoch is 0 optimizer steps"):
        cosine(total).resolve(steps_per_epoch=10, epochs=0.01)
    with pytest.raises(LrkitError, match="steps_per_epoch must be a finite number > 0"):
        cosine(total).resolve(steps_per_epoch=float("inf"), epochs=2)


@pytest.mark.parametrize("spec, fix", [
    ("warmup(300) >> cosine(1000)", "start the warmup above 0, e.g. warmup(300, start=0.01)"),
    # no warmup node: the hint names what sets the first rate to 0, with its own length
    ("wsd(20000, decay=4000, warmup=2000)", "give it a floor above 0, e.g. floor=0.01"),
    ("linear(1000, start=0, end=1) >> cosine(9000)",
     "start the line above 0, e.g. linear(1000, start=0.01, end=1)"),
    ("scale(linear(100, start=0, end=1), 0.5) >> cosine(900)",
     "e.g. linear(100, start=0.01, end=1)"),
    ("cyclic(100, low=0)", "raise the bottom of the wave above 0, e.g. low=0.01"),
    ("step(100, gamma=0.5) * 0", "make its first value above 0 (step(100, gamma=0.5) * 0 is 0"),
])
def test_the_zero_start_hint_names_what_makes_the_first_rate_zero(spec, fix):
    found = [w.message for w in lint(spec, 20000) if w.code == "zero-start"]
    assert len(found) == 1 and fix in found[0]
    assert "warmup(500" not in found[0]


def test_lint_names_relative_rates_as_multiples_of_lr_not_of_the_peak():
    # the preview's "x peak" column is relative to the highest rate the run reaches (0.745 here);
    # the lint's rates multiply the optimizer's lr, and said "0.745x peak" beside it
    (warning,) = [w for w in lint("warmup(200, start=0.01) >> cosine(100)", 150)
                  if w.code == "long-horizon"]
    assert "0.7476x lr" in warning.message and "x peak" not in warning.message


@pytest.mark.parametrize("rule", [linear_rule, sqrt_rule])
@pytest.mark.parametrize("args, words", [
    ((float("nan"), 256, 1024), "lr must be a positive finite number, got nan"),
    ((-0.1, 256, 1024), "lr must be a positive finite number, got -0.1"),
    ((0.0, 256, 1024), "lr must be a positive finite number, got 0.0"),
    (("0.1", 256, 1024), "lr must be a positive finite number, got '0.1'"),
    ((None, 256, 1024), "lr must be a positive finite number, got None"),
    ((0.1, 256, float("inf")), "batch must be a positive finite number, got inf"),
    ((0.1, float("inf"), 1024), "base_batch must be a positive finite number, got inf"),
    ((0.1, 256, float("nan")), "batch must be a positive finite number, got nan"),
    ((0.1, True, 1024), "base_batch must be a positive finite number, got True"),
])
def test_rules_refuse_a_bad_rate_or_batch(rule, args, words):
    # nan gave nan, -0.1 gave -0.4, '0.1' and None a TypeError from inside, inf batches 0 or inf
    with pytest.raises(LrkitError, match=re.escape(words)):
        rule(*args)


def test_rules_take_numpy_numbers_and_refuse_infinite_batches_as_rescale_does():
    assert linear_rule(np.float64(0.1), np.int64(256), 1024) == pytest.approx(0.4)
    with pytest.raises(LrkitError, match="batch must be a positive finite number, got inf"):
        rescale(peak(cosine(10), 0.1), 256, float("inf"))
