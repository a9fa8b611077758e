"""What a review of the built-in examples found (each failed before its fix)."""
import math

import numpy as np
import pytest
import torch

import lrkit
from lrkit.errors import LrkitError


def test_a_name_that_is_not_a_string_gets_the_list_of_names():
    for name in (["digits-mlp"], {"name": "digits-mlp"}):  # unhashable: was a TypeError
        with pytest.raises(LrkitError, match="unknown example .*built-in examples: digits-mlp, "):
            lrkit.examples.build(name)


@pytest.mark.parametrize("seed", [1.5, "1", None, True, 2 ** 64, -2 ** 63 - 1])
def test_a_seed_that_is_not_an_integer_torch_takes_is_refused_by_name(seed):
    with pytest.raises(LrkitError, match=r"seed must be an integer from -2\*\*63 to 2\*\*64 - 1"):
        lrkit.examples.build("wine-logreg", seed=seed)


def test_every_seed_torch_takes_builds_and_shuffles():
    # large seeds overflowed the loader's shuffle seed at the first batch (lrkit find --seed ...)
    for seed in (2 ** 60, 2 ** 64 - 1, -2 ** 63, -1):
        problem = lrkit.examples.build("wine-logreg", seed=seed)
        x, _ = next(iter(problem.train_loader))
        again, _ = next(iter(lrkit.examples.build("wine-logreg", seed=seed).train_loader))
        assert torch.equal(x, again)
    # numpy's and torch's integers are seeds as well, and the same seeds as Python's
    a = lrkit.examples.build("wine-logreg", seed=np.int64(3))
    b = lrkit.examples.build("wine-logreg", seed=torch.tensor(3))
    first, _ = next(iter(lrkit.examples.build("wine-logreg", seed=3).train_loader))
    assert all(torch.equal(next(iter(p.train_loader))[0], first) for p in (a, b))
    # the shuffles of the seeds that worked before are unchanged (modulo 2**64 changes none)
    loader = lrkit.examples.build("wine-logreg", seed=-1).train_loader
    order = torch.randperm(len(loader.tensors[0]), generator=torch.Generator().manual_seed(
        -100_003))
    assert torch.equal(next(iter(loader))[0], loader.tensors[0][order[:16]])


@pytest.mark.parametrize("lr", [0, -1e-3, math.nan, math.inf, "0.1", True, torch.tensor(0.1)])
def test_a_rate_that_is_not_a_finite_positive_number_is_refused_by_name(lr):
    # nan and inf built an optimizer that trained to NaN, "0.1" a TypeError from torch
    with pytest.raises(LrkitError, match="lr must be a finite number > 0"):
        lrkit.examples.build("digits-mlp", lr=lr)


def test_a_numpy_rate_is_a_rate():
    problem = lrkit.examples.build("regression-mlp", lr=np.float32(0.5))
    assert problem.optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
    assert type(problem.optimizer.param_groups[0]["lr"]) is float
