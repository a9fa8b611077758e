"""The strategy on synthetic objectives: fast, no training, no Optuna."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrkit.sweep.strategy import (DIVERGED, FINISHED, PRUNED, RUNNING, Observation, Point,
                                  Simulated, Strategy, coarse_indices, refine_steps, simulate)

LATTICE = [10 ** (k / 8) for k in range(-32, 1)]  # 1e-4 .. 1, 8 per decade: 33 rates


def family(budget, *, noise_floor=0.5, diverge_above=0.3, start=2.0):
    """Loss curves with the short-horizon bias of real training: a higher rate falls faster but
    to a higher floor, so it leads early and may lose at the end; above ``diverge_above`` the
    loss blows up within a few steps."""

    def loss(lr, t):
        floor = 0.1 + noise_floor * lr
        return floor + (start - floor) * math.exp(-lr * t)

    def outcome(point):
        lr = LATTICE[point.index]
        if lr > diverge_above:
            return Simulated(None, diverged_at=3)
        rungs = {t: loss(lr, t) for t in range(1, budget)}
        return Simulated(loss(lr, budget), rungs)

    return outcome


def grid_reference(outcome, budget):
    finals = {}
    steps = 0
    for i in range(len(LATTICE)):
        sim = outcome(Point(0, i))
        steps += sim.diverged_at or budget
        if sim.final is not None:
            finals[i] = sim.final
    return finals, steps


def best_index(observations):
    finished = [o for o in observations if o.status == FINISHED]
    return min(finished, key=lambda o: o.value).point.index


@pytest.mark.parametrize("budget, noise_floor, diverge_above", [
    (300, 0.5, 0.3), (300, 2.0, 0.3), (1000, 0.5, 0.05), (100, 0.1, 1.5), (3000, 5.0, 0.3),
])
def test_finds_the_grid_optimum_with_a_fraction_of_the_steps(budget, noise_floor, diverge_above):
    outcome = family(budget, noise_floor=noise_floor, diverge_above=diverge_above)
    finals, grid_steps = grid_reference(outcome, budget)
    observations, steps = simulate(Strategy(len(LATTICE), budget=budget), outcome)
    chosen = best_index(observations)
    regret = (finals[chosen] - min(finals.values())) / min(finals.values())
    assert regret <= 0.01, (chosen, min(finals, key=finals.get))
    assert steps <= 0.40 * grid_steps
    assert len({o.point for o in observations}) == len(observations)  # nothing run twice


def test_higher_rates_are_never_started_above_a_divergence():
    outcome = family(300, diverge_above=0.05)
    observations, _ = simulate(Strategy(len(LATTICE), budget=300), outcome)
    assert any(o.status == DIVERGED for o in observations)
    limit = math.inf
    for o in observations:  # each trial was planned knowing the earlier ones
        assert o.point.index < limit
        if o.status == DIVERGED:
            limit = min(limit, o.point.index)


def test_every_point_diverging_ends_without_a_best():
    outcome = family(300, diverge_above=1e-6)
    observations, _ = simulate(Strategy(len(LATTICE), budget=300), outcome)
    assert observations and all(o.status == DIVERGED for o in observations)
    assert Strategy(len(LATTICE), budget=300).plan(observations).done


def test_the_plan_replays_the_same_trials_from_any_prefix_of_the_history():
    """What makes resume exact: after a crash, the recorded history alone says what comes next."""
    strategy = Strategy(len(LATTICE), 2, budget=300, seeds=2)
    outcomes = [family(300), family(300, noise_floor=3.0, diverge_above=0.1)]
    observations, _ = simulate(strategy, lambda p: outcomes[p.group](p))
    for k in range(len(observations)):
        plan = strategy.plan(observations[:k])
        assert observations[k].point in [p.point for p in plan.proposals]
        assert plan.proposals[0].point == observations[k].point
    assert strategy.plan(observations).done


def test_while_a_trial_runs_the_plan_waits_and_offers_speculative_work():
    strategy = Strategy(len(LATTICE), budget=300)
    first = strategy.plan([]).proposals[0].point
    assert first.index == coarse_indices(33, 4)[len(coarse_indices(33, 4)) // 2]
    plan = strategy.plan([Observation(first, RUNNING)])
    assert not plan.done and not plan.proposals and plan.waiting
    assert {p.point.index for p in plan.speculative} >= {first.index - 4, first.index + 4}


def test_pruning_only_stops_a_higher_rate_that_trails_its_lower_reference():
    strategy = Strategy(33, budget=300, tolerance=0.02)
    ref = Observation(Point(0, 10), FINISHED, 0.5, {33: 1.0, 100: 0.8})
    rung = strategy.rung_steps[0]
    assert rung == 33
    higher, lower = Point(0, 14), Point(0, 6)
    assert strategy.should_prune(higher, 10, rung, 1.05, [ref])       # trails by 5%
    assert not strategy.should_prune(higher, 10, rung, 1.01, [ref])   # within the tolerance
    assert not strategy.should_prune(higher, 10, rung, 0.9, [ref])    # leads
    assert not strategy.should_prune(lower, 10, rung, 5.0, [ref])     # a lower rate: never
    assert not strategy.should_prune(higher, None, rung, 5.0, [ref])  # no reference
    assert not strategy.should_prune(Point(0, 14, seed=1), 10, rung, 5.0, [ref])  # seed repeats
    assert not strategy.should_prune(higher, 10, 50, 5.0, [ref])      # not a rung step
    assert strategy.should_prune(higher, 10, rung, math.nan, [ref])


def test_seed_repeats_of_the_best_rates():
    strategy = Strategy(len(LATTICE), budget=300, seeds=3, repeat_top=2)
    observations, _ = simulate(strategy, family(300))
    repeats = [o for o in observations if o.point.seed > 0]
    assert len(repeats) == 2 * 2
    assert all(o.status == FINISHED for o in repeats)
    top = sorted((o for o in observations if o.point.seed == 0 and o.status == FINISHED),
                 key=lambda o: o.value)[:2]
    assert {o.point.index for o in repeats} == {o.point.index for o in top}


def test_full_grid_mode_runs_everything():
    strategy = Strategy(len(LATTICE), budget=300, mode="grid", seeds=2)
    observations, _ = simulate(strategy, family(300))
    assert len(observations) == 2 * len(LATTICE)
    assert not any(o.status == PRUNED for o in observations)


def test_short_lists_keep_enough_coarse_points():
    assert Strategy(5, budget=100).stride == 1
    assert Strategy(9, budget=100).stride == 2
    assert coarse_indices(33, 4) == list(range(0, 33, 4))
    assert coarse_indices(30, 4)[-1] == 29
    assert refine_steps(4) == [2, 1] and refine_steps(3) == [2, 1] and refine_steps(1) == []


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 32), st.lists(st.floats(0.01, 3.0), min_size=33, max_size=33),
       st.integers(1, 8))
def test_unimodal_curves_are_solved_exactly(argmin, slopes, stride):
    """Without early stopping, bracket + bisection finds the exact optimum of a strictly
    unimodal curve from a fraction of the points."""
    values = {argmin: 0.0}
    for i in range(argmin + 1, 33):
        values[i] = values[i - 1] + slopes[i]
    for i in range(argmin - 1, -1, -1):
        values[i] = values[i + 1] + slopes[i]
    strategy = Strategy(33, budget=90, rungs=0, stride=stride)
    observations, _ = simulate(strategy, lambda p: Simulated(values[p.index]))
    assert best_index(observations) == argmin
    assert len(observations) <= 33


def test_a_speculative_refine_candidate_carries_the_reference_the_refine_stage_gives_it():
    # speculated with the walk's best as its reference, and stopped where the refine stage
    # (no reference: refine candidates run to the end) never stops it
    strategy = Strategy(33, budget=300)
    obs = [Observation(Point(0, 16), FINISHED, 0.5, {33: 1.0, 100: 0.7}),
           Observation(Point(0, 20), FINISHED, 0.4, {33: 0.9, 100: 0.6}),
           Observation(Point(0, 24), RUNNING)]
    speculative = {p.point.index: p.ref for p in strategy.plan(obs).speculative}
    obs[2] = Observation(Point(0, 24), FINISHED, 0.45, {33: 0.8, 100: 0.65})
    planned = {p.point.index: p.ref for p in strategy.plan(obs).proposals}
    assert planned  # the refine stage's candidates
    for index, ref in planned.items():
        if index in speculative:
            assert speculative[index] == ref
    assert all(ref is None for index, ref in speculative.items()
               if index not in (24, 28))  # the walk's own next step keeps its reference


def test_a_finished_trial_that_trails_its_reference_is_read_as_stopped():
    # a speculative trial started while its reference ran found no reference value at the
    # rungs and ran to the end; one worker would have stopped it: the plan reads it as stopped,
    # so that the walk does not depend on the number of workers or on timing
    strategy = Strategy(33, budget=300, tolerance=0.02)
    middle = coarse_indices(33, 4)[len(coarse_indices(33, 4)) // 2]
    up = middle + 4
    ref = Observation(Point(0, middle), FINISHED, 0.5, {33: 1.0, 100: 0.7})
    trailing = Observation(Point(0, up), FINISHED, 0.3, {33: 1.5, 100: 0.9})  # ends lower
    stopped = Observation(Point(0, up), PRUNED, None, {33: 1.5})
    both = [strategy.plan([ref, o]).proposals for o in (trailing, stopped)]
    assert [p.point for p in both[0]] == [p.point for p in both[1]]

