"""Every built-in example builds by name, trains in seconds, and is deterministic by seed."""
import pytest
import torch

import lrkit
from lrkit.training import train

REQUIRED = {"digits-mlp": torch.optim.SGD, "digits-cnn": torch.optim.SGD,
            "regression-mlp": torch.optim.Adam, "tiny-transformer": torch.optim.AdamW}


def test_required_examples_exist_with_their_optimizers():
    for name, cls in REQUIRED.items():
        problem = lrkit.examples.build(name)
        assert type(problem.optimizer) is cls
    assert lrkit.examples.build("digits-mlp").optimizer.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("name", lrkit.examples.names())
def test_example_learns_at_its_default_rate(name):
    problem = lrkit.examples.build(name, seed=0)
    run = train(problem, lr=lrkit.examples.get(name).default_lr, steps=60, seed=0)
    assert not run.diverged
    first, last = sum(run.losses[:10]) / 10, sum(run.losses[-10:]) / 10
    assert last < first


def test_same_seed_same_model_and_batches():
    a, b = lrkit.examples.build("digits-cnn", seed=3), lrkit.examples.build("digits-cnn", seed=3)
    c = lrkit.examples.build("digits-cnn", seed=4)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.model.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    xa, _ = next(iter(a.train_loader))
    xb, _ = next(iter(b.train_loader))
    assert torch.equal(xa, xb)


def test_building_an_example_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    lrkit.examples.build("digits-mlp", seed=5)
    assert torch.equal(torch.rand(1), expected)
