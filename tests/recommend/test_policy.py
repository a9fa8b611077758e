"""The policy's pure rules on made-up range-test results (no training)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from lrkit.recommend import policy


def finder(anchor: float = 0.1, steps: int = 100):
    """A range-test result whose smoothed loss is lowest at ``anchor``."""
    lrs = np.logspace(-7, 1, steps)
    smoothed = (np.log10(lrs) - math.log10(anchor)) ** 2
    return SimpleNamespace(lrs=lrs.tolist(), smoothed=smoothed.tolist(), suggested_lr=anchor / 10,
                           good_range=(anchor / 100, anchor / 2))


def test_by_epochs_interpolates_between_few_and_many():
    assert policy.by_epochs(None, 1.0, 0.3) == 1.0
    assert policy.by_epochs(2, 1.0, 0.3) == 1.0
    assert policy.by_epochs(100, 1.0, 0.3) == 0.3
    middle = policy.by_epochs(math.sqrt(policy.FEW_EPOCHS * policy.MANY_EPOCHS), 1.0, 0.3)
    assert middle == pytest.approx(math.sqrt(0.3))


def test_plan_without_room_uses_the_fixed_factor():
    plan = policy.plan(finder(0.1), total_steps=1000, optimizer="SGD", current_lr=0.01,
                       confirm=True, epochs=50)
    assert plan.confirm_steps == 0 and any("no confirmation runs" in n for n in plan.notes)
    choice = policy.choose(plan, [])
    assert choice.peak_lr == pytest.approx(0.1 * policy.PEAK_FACTOR_MANY_EPOCHS, rel=0.05)


def test_plan_with_room_confirms_and_shrinks_for_many_epochs():
    anchor = 0.1
    plan = policy.plan(finder(anchor), total_steps=4000, optimizer="Adam", current_lr=1e-3,
                       confirm=True, epochs=40)
    assert plan.confirm_steps == round(policy.CONFIRM_FRACTION * 4000) and len(plan.candidates) == 3
    assert 3 * plan.confirm_steps + 100 <= policy.MAX_COST * 4000
    runs = [dict(lr=lr, score=s, diverged=False, steps=200)
            for lr, s in zip(plan.candidates, [0.5, 0.3, 0.4])]
    choice = policy.choose(plan, runs)
    assert choice.peak_lr == pytest.approx(plan.candidates[1] * policy.SHRINK_MANY_EPOCHS, rel=0.01)
    few = policy.plan(finder(anchor), total_steps=4000, optimizer="Adam", current_lr=1e-3,
                      confirm=True, epochs=2)
    assert policy.choose(few, runs).peak_lr == pytest.approx(plan.candidates[1], rel=0.01)


def test_no_shrink_when_the_highest_candidate_wins():
    # the short runs saw no harm from the highest rate: a many-epoch run takes it as it is
    plan = policy.plan(finder(0.1), total_steps=4000, optimizer="SGD", current_lr=0.01,
                       confirm=True, epochs=40)
    assert plan.shrink == pytest.approx(policy.SHRINK_MANY_EPOCHS)
    runs = [dict(lr=lr, score=s, diverged=False, steps=200)
            for lr, s in zip(plan.candidates, [0.5, 0.4, 0.3])]
    choice = policy.choose(plan, runs)
    assert choice.peak_lr == pytest.approx(plan.candidates[2], rel=0.01)
    assert any("highest candidate won" in n for n in choice.notes)
    # a diverged highest candidate is not a win of the highest rate that did not diverge
    runs[2] = dict(runs[2], diverged=True, score=math.inf)
    assert policy.choose(plan, runs).peak_lr == pytest.approx(
        plan.candidates[1] * policy.SHRINK_MANY_EPOCHS, rel=0.01)


def test_diverged_candidates_are_dropped():
    plan = policy.plan(finder(0.1), total_steps=4000, optimizer="SGD", current_lr=0.01,
                       confirm=True, epochs=2)
    runs = [dict(lr=lr, score=s, diverged=d, steps=200) for lr, s, d in
            zip(plan.candidates, [0.5, 0.4, math.inf], [False, False, True])]
    choice = policy.choose(plan, runs)
    assert choice.peak_lr == pytest.approx(plan.candidates[1], rel=0.01)
    assert any("diverged" in n for n in choice.notes)
    all_bad = [dict(r, diverged=True, score=math.inf) for r in runs]
    low = policy.choose(plan, all_bad).peak_lr
    assert low < min(plan.candidates)


def test_no_usable_curve_falls_back_to_the_users_rate():
    flat = SimpleNamespace(lrs=[1e-3] * 3, smoothed=[1.0] * 3, suggested_lr=None, good_range=None)
    plan = policy.plan(flat, total_steps=4000, optimizer="SGD", current_lr=0.05, confirm=True)
    assert plan.candidates == [] and plan.default_peak == 0.05
    assert "never fell" in policy.choose(plan, []).notes[0]


def test_anchor_from_a_suggestion_alone_is_the_rate_of_the_loss_minimum():
    """No usable curve but a suggestion (a result read back without its curve): the anchor is
    the loss minimum's rate, 10x the minimum method's or edge's / 0.4 (it was edge's x 10, 4x
    too high)."""
    from types import SimpleNamespace

    from lrkit.recommend.policy import anchor_from

    both = SimpleNamespace(lrs=[], smoothed=[], suggested_lr=0.04, method="edge",
                           suggestions={"edge": 0.04, "minimum": 0.01})
    edge_only = SimpleNamespace(lrs=[], smoothed=[], suggested_lr=0.04, method="edge",
                                suggestions={"edge": 0.04})
    assert anchor_from(both, None)[0] == pytest.approx(0.1)
    assert anchor_from(edge_only, None)[0] == pytest.approx(0.1)
