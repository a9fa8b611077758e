"""lrkit.diagnose.snapshots.SnapshotKeeper: latest and verified copies, two at most."""
import pytest
import torch
from torch import nn

from lrkit.diagnose.snapshots import SnapshotKeeper


def _model_and_optimizer():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def _set(model, value):
    with torch.no_grad():
        model.weight.fill_(value)


@pytest.mark.parametrize("keep_best", [True, False])
def test_the_verified_copy_is_the_best_or_the_newest(keep_best):
    model, optimizer = _model_and_optimizer()
    keeper = SnapshotKeeper(model, optimizer, keep_best=keep_best)
    levels = [5.0, 1.0, 3.0, 4.0]  # the level of each state when it was snapshotted
    for step, level in enumerate(levels):
        _set(model, float(step))
        keeper.take(step, level)
    # the latest is the last one; the verified ones are all before it
    assert keeper.latest_step == 3
    assert keeper.best_step == (1 if keep_best else 2)
    assert keeper.best is not keeper.latest
    keeper.best.restore()
    assert model.weight[0, 0].item() == keeper.best_step
    keeper.close()
    assert keeper.best is None and keeper.latest is None


def test_a_broken_latest_is_dropped_for_the_verified_one():
    model, optimizer = _model_and_optimizer()
    keeper = SnapshotKeeper(model, optimizer)
    _set(model, 1.0)
    keeper.take(0, 1.0)
    _set(model, 2.0)
    keeper.take(10, 0.5)
    assert keeper.rollback_target() is keeper.latest and keeper.latest_step == 10  # sound
    _set(model, float("nan"))
    keeper.take(20, 0.4)  # an update broke the model just before this snapshot
    target = keeper.rollback_target()
    assert target is keeper.best and keeper.latest_step == 10  # the verified one
    target.restore()
    assert model.weight[0, 0].item() == 2.0


def test_a_new_snapshot_reuses_the_buffers_of_the_one_it_retires():
    model, optimizer = _model_and_optimizer()
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()  # momentum buffers exist from here on: the structure is stable
    keeper = SnapshotKeeper(model, optimizer)
    keeper.take(0, 3.0)
    keeper.take(1, 2.0)
    buffers = {id(t) for s in (keeper.best, keeper.latest) for t in s._payload["tensors"].values()}
    for step in range(2, 6):
        keeper.take(step, 2.0 - step / 10)
        held = {id(t) for s in (keeper.best, keeper.latest) for t in s._payload["tensors"].values()}
        assert held == buffers  # the same two sets of buffers, passed between the roles


@pytest.mark.parametrize("latest_level, expected_step", [(0.5, 2), (3.0, 1)])
def test_lowest_makes_the_lower_level_snapshot_the_rollback_target(latest_level, expected_step):
    model, optimizer = _model_and_optimizer()
    keeper = SnapshotKeeper(model, optimizer)
    for step, level in enumerate([5.0, 1.0, latest_level]):
        _set(model, float(step))
        keeper.take(step, level)
    keeper.lowest()
    assert keeper.latest_step == expected_step and keeper.latest is keeper.best
    keeper.rollback_target().restore()
    assert model.weight[0, 0].item() == expected_step
    keeper.close()
