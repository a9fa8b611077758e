"""Recipe: round trips, rates from build() and to_code(), batch-size rescaling, bad input."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from lrkit.errors import LrkitError
from lrkit.recommend import Recipe
from lrkit.recommend.codegen import schedule_function
from lrkit.recommend.shapes import SHAPES, shape_spec

SAMPLE_STEPS = [0, 1, 5, 9, 10, 11, 50, 99, 100, 150, 198, 199, 200, 250]


def sgd_recipe(**changes) -> Recipe:
    data = dict(optimizer="SGD", optimizer_options={"momentum": 0.9, "weight_decay": 5e-3},
                peak_lr=0.12, warmup_steps=10, total_steps=200,
                schedule=shape_spec("cosine", 200, 10), good_range=(0.01, 0.5), batch_size=32,
                notes=["a note"], evidence={"finder": {"lrs": [1e-3, 1e-2], "losses": [2.0, 1.5]}})
    data.update(changes)
    return Recipe(**data)


def adamw_recipe(**changes) -> Recipe:
    data = dict(optimizer="AdamW", optimizer_options={"betas": (0.9, 0.95), "weight_decay": 0.1},
                peak_lr=3e-3, warmup_steps=20, total_steps=200,
                schedule=shape_spec("wsd", 200, 20), batch_size=64)
    data.update(changes)
    return Recipe(**data)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def rates_of(optimizer, scheduler, steps: int) -> list[float]:
    """The first group's rate used at each optimizer step 0..steps-1 of a real training loop."""
    model_params = [p for g in optimizer.param_groups for p in g["params"]]
    out = []
    for _ in range(steps):
        out.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.zero_grad()
        sum((p ** 2).sum() for p in model_params).backward()
        optimizer.step()
        scheduler.step()
    return out


# -- round trip ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [sgd_recipe, adamw_recipe])
def test_dict_json_yaml_round_trip(make, tmp_path):
    recipe = make()
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert Recipe.from_yaml(recipe.to_yaml()) == recipe
    recipe.to_json(tmp_path / "r.json")
    recipe.to_yaml(tmp_path / "r.yaml")
    assert Recipe.from_json(tmp_path / "r.json") == recipe
    assert Recipe.from_yaml(str(tmp_path / "r.yaml")) == recipe
    assert recipe.to_dict()["kind"] == "lrkit.recipe"


def test_schedule_spec_round_trips_through_lrkit_schedules():
    from lrkit.schedules import parse, to_json, from_json

    recipe = sgd_recipe()
    assert str(parse(recipe.schedule)) == recipe.schedule
    assert from_json(to_json(parse(recipe.schedule))) == parse(recipe.schedule)


def test_summary_is_readable():
    text = str(sgd_recipe())
    assert "SGD(momentum=0.9, weight_decay=0.005)" in text
    assert "peak lr    0.12" in text and "warmup     10 steps" in text
    assert "cosine(190)" in text


# -- build / lr_at / to_code ---------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("make", [sgd_recipe, adamw_recipe])
def test_build_gives_the_spec_rates(make, shape):
    from lrkit.schedules import parse

    recipe = make(schedule=shape_spec(shape, 200, 10, floor=0.05 if shape != "constant" else 0.0),
                  warmup_steps=10)
    optimizer, scheduler = recipe.build(tiny_model().parameters())
    assert type(optimizer).__name__ == recipe.optimizer
    for key, value in recipe.optimizer_options.items():
        assert optimizer.defaults[key] == value
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    rates = rates_of(optimizer, scheduler, 260)
    spec = parse(recipe.schedule)
    for step in SAMPLE_STEPS:
        expected = recipe.peak_lr * spec(step)
        assert rates[step] == pytest.approx(expected, rel=1e-12, abs=1e-15), step
        assert recipe.lr_at(step) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert rates[10] == pytest.approx(recipe.peak_lr)  # the warmup ends at the peak
    assert rates[0] == pytest.approx(0.01 * recipe.peak_lr)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("make", [sgd_recipe, adamw_recipe])
def test_to_code_executes_and_matches_build(make, shape):
    recipe = make(schedule=shape_spec(shape, 200, 10, floor=0.1 if shape == "cosine" else 0.0),
                  warmup_steps=10)
    code = recipe.to_code()
    assert "lrkit" not in code.replace("# lrkit recipe", "")  # plain PyTorch only
    namespace = {"model": tiny_model()}
    exec(compile(code, "<recipe>", "exec"), namespace)  # noqa: S102 - the point of the test
    optimizer, scheduler = namespace["optimizer"], namespace["scheduler"]
    assert type(optimizer).__name__ == recipe.optimizer
    code_rates = rates_of(optimizer, scheduler, 260)
    built_rates = rates_of(*recipe.build(tiny_model().parameters()), 260)
    for step in range(260):
        assert code_rates[step] == pytest.approx(built_rates[step], rel=1e-12, abs=1e-15), step


def test_schedule_function_covers_wsd_shapes_and_polynomial():
    from lrkit.schedules import parse

    for spec in ["wsd(100, decay=30, shape='cosine', floor=0.1)", "wsd(100, decay=30, shape='linear')",
                 "warmup(5) >> polynomial(95, power=2, end=0.05)", "linear(50, start=1, end=0.2)",
                 "constant(0.5)"]:
        namespace: dict = {}
        exec("import math\n" + schedule_function(spec), namespace)  # noqa: S102
        fn, schedule = namespace["lr_factor"], parse(spec)
        for step in range(0, 130, 3):
            assert fn(step) == pytest.approx(schedule(step), rel=1e-12, abs=1e-15), (spec, step)


def test_to_code_refuses_what_it_cannot_write():
    recipe = sgd_recipe(schedule="restarts(50)")
    with pytest.raises(LrkitError, match="to_code.*build"):
        recipe.to_code()
    assert recipe.lr_at(60) > 0  # the recipe itself still works


def test_dotted_optimizer_path_builds_and_codes():
    recipe = sgd_recipe(optimizer="torch.optim.sgd.SGD")
    optimizer, _ = recipe.build(tiny_model().parameters())
    assert isinstance(optimizer, torch.optim.SGD)
    assert "from torch.optim.sgd import SGD" in recipe.to_code()


# -- batch size ------------------------------------------------------------------------------------
def test_sgd_rescales_linearly_and_keeps_samples():
    recipe = sgd_recipe()
    bigger = recipe.for_batch_size(128)
    assert bigger.peak_lr == pytest.approx(0.48)
    assert bigger.warmup_steps == 3 and bigger.total_steps == 50  # 10 x 32/128 = 2.5 -> 3
    assert bigger.schedule == "warmup(3, start=0.01) >> cosine(47)"
    assert bigger.parsed_schedule.length == bigger.total_steps
    assert bigger.batch_size == 128
    assert "linear rule" in bigger.notes[-1] and "32 to 128" in bigger.notes[-1]
    assert bigger.good_range == pytest.approx((0.04, 2.0))
    back = bigger.for_batch_size(32)
    assert back.peak_lr == pytest.approx(recipe.peak_lr)
    assert back.total_steps == recipe.total_steps and back.warmup_steps == 12  # 3 x 4, rounded once
    exact = sgd_recipe(warmup_steps=12, schedule=shape_spec("cosine", 200, 12))
    there_and_back = exact.for_batch_size(128).for_batch_size(32)
    assert (there_and_back.schedule, there_and_back.warmup_steps) == (exact.schedule, 12)


def test_adaptive_optimizer_uses_square_root_rule():
    recipe = adamw_recipe()
    bigger = recipe.for_batch_size(256)
    assert bigger.peak_lr == pytest.approx(6e-3)
    assert "square-root rule" in bigger.notes[-1]
    assert bigger.warmup_steps == 5 and bigger.total_steps == 50
    smaller = recipe.for_batch_size(16, keep="steps")
    assert smaller.peak_lr == pytest.approx(1.5e-3)
    assert smaller.total_steps == 200 and smaller.warmup_steps == 80
    assert smaller.schedule.startswith("warmup(80")
    assert smaller.lr_at(80) == pytest.approx(smaller.peak_lr)
    assert smaller.parsed_schedule.length == 200  # the schedule still ends with the run


def test_batch_rescaling_of_a_scaled_schedule_keeps_its_own_scale():
    recipe = sgd_recipe(schedule="(warmup(10, start=0.01) >> cosine(190)) * 0.5")
    moved = recipe.for_batch_size(64, keep="steps")
    assert moved.peak_lr == pytest.approx(0.24)
    assert moved.schedule == "(warmup(5, start=0.01) >> cosine(190)) * 0.5"
    assert moved.parsed_schedule(5) == pytest.approx(0.5)


def test_batch_rescaling_bad_input():
    with pytest.raises(LrkitError, match="batch size"):
        sgd_recipe(batch_size=None).for_batch_size(64)
    assert sgd_recipe(batch_size=None).for_batch_size(64, old=32).peak_lr == pytest.approx(0.24)
    with pytest.raises(LrkitError, match="positive integer"):
        sgd_recipe().for_batch_size(0)
    with pytest.raises(LrkitError, match="keep"):
        sgd_recipe().for_batch_size(64, keep="epochs")
    # the same samples at a huge batch leave almost no steps: refused, with the way out
    with pytest.raises(LrkitError, match="keep='steps'"):
        sgd_recipe().for_batch_size(32 * sgd_recipe().total_steps)
    # a recipe that is short to begin with still rescales (the same batch, or keeping its steps)
    tiny = Recipe("AdamW", {}, 1e-3, 1, 8, "warmup(1) >> cosine(7)", batch_size=32)
    assert tiny.for_batch_size(32).total_steps == 8
    assert tiny.for_batch_size(64, keep="steps").total_steps == 8
    # keeping the steps at a much smaller batch: the warmup's samples no longer fit the run
    with pytest.raises(LrkitError, match="not shorter than the run's 100 steps kept by"):
        Recipe("AdamW", {}, 1e-3, 20, 100, "warmup(20) >> cosine(80)",
               batch_size=64).for_batch_size(8, keep="steps")


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    ({"total_steps": 0}, "total_steps must be a whole number of steps >= 1, got 0"),
    ({"total_steps": -5}, "total_steps must be a whole number of steps >= 1, got -5"),
    ({"total_steps": 8, "warmup_steps": 10}, "budget of 8 steps is not longer than the warmup of 10"),
    ({"warmup_steps": -1}, "warmup_steps must be"),
    ({"optimizer": "Adamm"}, "unknown optimizer 'Adamm'"),
    ({"optimizer": "adamw"}, "did you mean 'AdamW'"),
    ({"optimizer": "my-task.Opt"}, "is not an importable 'package.module.Class' path"),
    ({"peak_lr": 0.0}, "peak_lr must be a positive finite number"),
    ({"peak_lr": math.nan}, "peak_lr must be a positive finite number"),
    ({"schedule": "cosine(100, flor=0.1)"}, "flor"),
    ({"schedule": "peak(cosine(100), 0.1)"}, "relative"),
    ({"schedule": "cosine(0.5*total)"}, "whole steps"),
    ({"optimizer_options": {"lr": 0.1}}, "must not hold 'lr'"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"total_steps": 50, "warmup_steps": 5, "schedule": "warmup(100) >> cosine(100)"},
     "runs 200 steps, longer than the recipe's total_steps=50"),
])
def test_bad_recipes_raise_clear_errors(changes, message):
    with pytest.raises(LrkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sgd_recipe(**changes)


def test_bad_optimizer_options_fail_clearly_on_build():
    recipe = sgd_recipe(optimizer_options={"betas": (0.9, 0.99)})
    with pytest.raises(LrkitError, match="cannot build SGD"):
        recipe.build(tiny_model().parameters())


def test_numpy_numbers_become_plain_ones_and_good_range_is_checked():
    import numpy as np

    recipe = sgd_recipe(peak_lr=np.float32(0.5), total_steps=np.int64(sgd_recipe().total_steps),
                        warmup_steps=np.int64(sgd_recipe().warmup_steps))
    assert type(recipe.peak_lr) is float and type(recipe.total_steps) is int
    json.loads(recipe.to_json())
    with pytest.raises(LrkitError, match="good_range must be two rates"):
        sgd_recipe(good_range=[1e-3, 1e-2, 1e-1])


def test_from_dict_rejects_unknown_and_missing_keys():
    data = sgd_recipe().to_dict()
    with pytest.raises(LrkitError, match="unknown recipe keys"):
        Recipe.from_dict({**data, "peak": 1})
    data.pop("peak_lr")
    with pytest.raises(LrkitError, match="lacks"):
        Recipe.from_dict(data)
    with pytest.raises(LrkitError, match="not a JSON recipe"):
        Recipe.from_json("{nope")


def test_a_peak_outside_the_range_tests_range_says_so_on_its_line():
    """A first-time user read "peak lr 0.015 (range test's good constant rates 0.0179 .. 0.0834)"
    as a contradiction: the line now says the peak is below (or above) that range."""
    from lrkit.recommend.recipe import Recipe
    from tests.show.test_report import recipe_dict

    def peak_line(peak):
        text = Recipe.from_dict(dict(recipe_dict(), peak_lr=peak)).summary()
        return next(line for line in text.splitlines() if "peak lr" in line)

    assert "(range test's good constant rates 0.01 .. 0.1)" in peak_line(0.05)
    assert "(below the range test's good constant rates" in peak_line(0.005)
    assert "(above the range test's good constant rates" in peak_line(0.5)
