"""A schedule-free optimizer's own warmup in a recipe (a review of find_lr on third-party
optimizers: the range test now runs without it; recommend had warmed up twice)."""
from __future__ import annotations

import pytest

import lrkit

schedulefree = pytest.importorskip("schedulefree")


class Recording(schedulefree.AdamWScheduleFree):
    """Records the warmup_steps each step was taken with."""

    seen: list = []

    def step(self, closure=None):
        Recording.seen.append(self.param_groups[0]["warmup_steps"])
        return super().step(closure)


def test_a_schedule_free_optimizers_own_warmup_becomes_the_recipes_warmup():
    problem = lrkit.examples.build("moons-mlp", seed=0)
    problem.optimizer = Recording(problem.model.parameters(), lr=1e-3, warmup_steps=150)
    Recording.seen.clear()
    recipe = lrkit.recommend(problem, steps=2000, progress=False)
    # one warmup, the schedule's, as long as the optimizer's own; none in the optimizer
    assert recipe.warmup_steps == 150
    assert recipe.schedule.startswith("warmup(150")
    assert "warmup_steps" not in recipe.optimizer_options
    assert any("warmup_steps=150" in note and "not two warmups" in note for note in recipe.notes)
    # the range test and the short runs stepped without it (it scaled their rates down)
    assert Recording.seen and set(Recording.seen) == {0}
    assert recipe.evidence["confirmations"]  # (short runs were made)
    # and the user's optimizer has it back
    assert problem.optimizer.param_groups[0]["warmup_steps"] == 150
    optimizer, _ = recipe.build(problem.model.parameters())
    assert optimizer.param_groups[0]["warmup_steps"] == 0


def test_a_schedule_free_optimizer_without_its_own_warmup_keeps_the_usual_recipe():
    problem = lrkit.examples.build("moons-mlp", seed=0)
    problem.optimizer = schedulefree.AdamWScheduleFree(problem.model.parameters(), lr=1e-3)
    recipe = lrkit.recommend(problem, steps=2000, progress=False)
    assert recipe.warmup_steps == 100  # 5% of the run, as for any optimizer
    assert not any("not two warmups" in note for note in recipe.notes)
