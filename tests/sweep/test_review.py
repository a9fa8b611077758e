"""Defects found in a review of ``lrkit.sweep``: each test failed before its fix."""
import random

import numpy as np
import pytest
import torch

import lrkit
from lrkit.errors import LrkitError
from lrkit.sweep.api import build_spec
from lrkit.sweep.results import SweepResult, TrialRecord
from lrkit.sweep.space import parse_optimizers, parse_rates
from lrkit.sweep.strategy import Point, Simulated, Strategy, simulate


def test_a_sweep_leaves_the_global_generators_as_they_were(journal):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    lrkit.sweep("logreg", lrs="0.1,1", budget=20, storage=journal, progress=False,
                diagnose=False)
    assert random.getstate() == before[0]
    assert (np.random.get_state()[1] == before[1]).all()
    assert torch.equal(torch.get_rng_state(), before[2])


def test_numpy_numbers_are_accepted_as_settings():
    spec = build_spec("logreg", lrs="1e-2:1", points_per_decade=np.int64(4),
                      seeds=np.int64(2), budget=np.int64(20), stride=np.int64(2),
                      repeat_top=np.int64(2), diverge_factor=np.float32(5.0),
                      tolerance=np.float32(0.25))
    assert (spec.seeds, spec.budget, spec.stride, spec.repeat_top) == (2, 20, 2, 2)
    assert type(spec.budget) is int and type(spec.seeds) is int
    assert spec.rates.points_per_decade == 4 and len(spec.rates) == 9
    spec.settings_json()  # plain numbers: the stored settings are JSON


def test_a_single_rate_and_numpy_rates():
    assert parse_rates(0.01).values == (0.01,)
    assert parse_rates(np.float64(0.01)).values == (0.01,)
    assert parse_rates(np.array([0.1, 0.01])).values == (0.01, 0.1)
    with pytest.raises(LrkitError, match="True"):
        parse_rates([True, 0.1])  # True is not the rate 1.0
    with pytest.raises(LrkitError, match="-1"):
        parse_rates(-1.0)


def test_optimizers_of_the_wrong_type_are_a_clear_error():
    with pytest.raises(LrkitError, match="optimizers must be .* got 42"):
        parse_optimizers(42)


def test_a_repeat_seed_that_diverges_does_not_rewrite_the_finished_walk():
    strategy = Strategy(33, 1, budget=90, seeds=2, repeat_top=3)

    def outcome(point: Point, unstable: bool) -> Simulated:
        value = ((point.index - 20) / 8) ** 2 + 1
        if unstable and point.seed == 1 and point.index == 19:
            return Simulated(None, {}, diverged_at=5)
        return Simulated(value, {s: value * 1.5 for s in strategy.rung_steps})

    stable, _ = simulate(strategy, lambda p: outcome(p, False))
    unstable, _ = simulate(strategy, lambda p: outcome(p, True))
    walk = {o.point for o in stable if o.point.seed == 0}
    assert {o.point for o in unstable if o.point.seed == 0} == walk
    first_repeat = next(k for k, o in enumerate(unstable) if o.point.seed > 0)
    assert all(o.point.seed > 0 for o in unstable[first_repeat:])


def test_a_rate_that_diverged_with_any_seed_is_never_best():
    settings = {"optimizers": ["sgd"], "optimizer_labels": ["sgd"], "budget": 10, "seeds": 2,
                "rates": {"values": ["0.01", "0.1", "1"]}}
    R = TrialRecord
    records = [R(0, "sgd", 0.01, 0, "finished", loss=0.5), R(1, "sgd", 0.1, 0, "finished", loss=0.3),
               R(2, "sgd", 1.0, 0, "finished", loss=0.4), R(3, "sgd", 0.1, 1, "diverged"),
               R(4, "sgd", 1.0, 1, "finished", loss=0.41),
               R(5, "sgd", 0.01, 1, "finished", loss=0.52)]
    result = SweepResult(records, settings=settings)
    point = next(p for p in result.points() if p.lr == 0.1)
    assert point.status == "diverged"
    assert result.best.lr == 1.0
    assert result.band() == (1.0, 1.0)  # the rate that diverged ends the band


def test_lrkit_sweep_is_callable_and_has_load_after_a_plain_import():
    """docs/sweep.md's lrkit.sweep.load(...) after `import lrkit` (it was the function alone)."""
    import subprocess
    import sys

    code = ("import lrkit; print(callable(lrkit.sweep), callable(lrkit.sweep.load), "
            "lrkit.sweep.SweepResult.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["True", "True", "SweepResult"], done.stderr


def test_a_budget_in_epochs_counts_optimizer_steps_under_gradient_accumulation():
    """2 epochs of a recipe that accumulates 4 batches per step are 2 * ceil(batches / 4)
    optimizer steps; they were 2 * batches (8 epochs of data)."""
    from lrkit import Problem, examples

    def recipe(seed=0):
        p = examples.build("logreg", seed=seed)
        return Problem(model=p.model, optimizer=p.optimizer, train_loader=p.train_loader,
                       criterion=p.criterion, step_options={"accumulation_steps": 4})

    batches = len(recipe().train_loader)
    spec = build_spec(recipe, lrs="0.01,0.1", epochs=2)
    assert spec.budget == 2 * -(-batches // 4)
    plain = build_spec("logreg", lrs="0.01,0.1", epochs=2)
    assert plain.budget == 2 * batches


def test_points_per_decade_given_twice_or_for_a_list_is_refused_not_ignored():
    assert parse_rates("1e-3:1:4").points_per_decade == 4
    assert parse_rates("1e-3:1:4", 4).points_per_decade == 4  # the same, said twice
    assert parse_rates("1e-3:1").points_per_decade == 8  # the default
    with pytest.raises(LrkitError, match="sets 4 points per decade and points_per_decade .* 16"):
        parse_rates("1e-3:1:4", 16)
    with pytest.raises(LrkitError, match="is for a LOW:HIGH range; a list of rates"):
        parse_rates("0.01,0.1", 16)
    with pytest.raises(LrkitError, match="is for a LOW:HIGH range"):
        parse_rates([0.01, 0.1], 16)
    assert parse_rates("0.01,0.1").values == (0.01, 0.1)


def test_cli_points_per_decade_with_a_range_that_sets_its_own(capsys, tmp_path, monkeypatch):
    from lrkit.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["sweep", "logreg", "--lrs", "1e-3:1:4", "--points-per-decade", "16",
                 "--budget", "10"])
    err = capsys.readouterr().err
    assert code == 2 and "sets 4 points per decade" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # refused before the default storage was created
