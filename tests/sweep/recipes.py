"""Recipes for the sweep tests (used as ``tests/sweep/recipes.py:NAME``)."""
from __future__ import annotations

import os
import time

from lrkit import examples


class SlowLoader:
    """A loader that sleeps before each batch, so that a test can stop a sweep mid-trial."""

    def __init__(self, loader, delay: float) -> None:
        self.loader = loader
        self.delay = delay

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            time.sleep(self.delay)
            yield batch


def slow_wine(seed: int = 0):
    """wine-logreg, ``LRKIT_TEST_DELAY`` seconds (default 0.003) slower per batch; the numbers are
    exactly those of the built-in example."""
    problem = examples.build("wine-logreg", seed=seed)
    delay = float(os.environ.get("LRKIT_TEST_DELAY", "0.003"))
    if delay > 0:
        problem.train_loader = SlowLoader(problem.train_loader, delay)
    return problem


def broken(seed: int = 0):
    """A recipe whose training raises, to check that a failing trial stops the sweep clearly."""
    problem = examples.build("wine-logreg", seed=seed)

    def loss_fn(model, batch):
        raise RuntimeError("boom from the recipe")

    problem.loss_fn = loss_fn
    return problem


def broken_above(seed: int = 0):
    """wine-logreg whose training raises at rates above 0.05 (a trial that fails at some
    rates only, while the others go on)."""
    problem = examples.build("wine-logreg", seed=seed)

    def loss_fn(model, batch):
        if problem.optimizer.param_groups[0]["lr"] > 0.05:
            raise RuntimeError("boom above 0.05")
        return problem.criterion(model(batch[0]), batch[1])

    problem.loss_fn = loss_fn
    return problem


def seed_one_fails(seed: int = 0):
    """wine-logreg, except that the recipe raises for seed 1 (the seeds stage fails)."""
    if seed == 1:
        raise RuntimeError("seed 1 data missing")
    return examples.build("wine-logreg", seed=seed)


def killing_wine(seed: int = 0):
    """wine-logreg whose training process dies (``os._exit(137)``, as under the kernel's
    out-of-memory killer: no exception, no cleanup) at rates above 0.5."""
    problem = examples.build("wine-logreg", seed=seed)
    batches, optimizer = problem.train_loader, problem.optimizer

    class Killing:
        def __iter__(self):
            if optimizer.param_groups[0]["lr"] > 0.5:
                os._exit(137)
            return iter(batches)

        def __len__(self):
            return len(batches)

    problem.train_loader = Killing()
    return problem
