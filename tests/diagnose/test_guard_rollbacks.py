"""lrkit.Guard's rollbacks, found in a code review: the target after a "diverged" cut, groups
added mid-run, the snapshot count after a rollback, what a refused cut records, the probe's kept
state, the recorded gradient norm, a cosine's floor, and disk snapshots of a guard never closed."""
import gc
import math
import random

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler

import lrkit
from lrkit.diagnose.guard import GuardError
from lrkit.errors import LrkitError
from lrkit.state import Snapshot


def _linear(lr=0.05, momentum=0.0, seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(4, 1)
    return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


def _data(n=400, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, 4, generator=g)
    y = x @ torch.randn(4, 1, generator=g) + 0.1 * torch.randn(n, 8, 1, generator=g)
    return x, y


def _closure(model, optimizer, x, y, poison=1.0, value=None):
    """One step's closure; ``value`` replaces the loss returned (the gradients stay real)."""
    def closure():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y) * poison
        loss.backward()
        return loss if value is None else torch.tensor(value)
    return closure


def test_after_a_diverged_cut_the_next_rollback_goes_to_the_best_state_not_forward():
    model, optimizer = _linear()
    guard = lrkit.Guard(model, optimizer, probe_steps=0, watch_progress=False, diagnose_every=20,
                        snapshot_every=40, spike_factor=None)
    x, y = _data()
    noise = random.Random(0)
    restored = None
    for i in range(400):
        level = 1.0 - 0.7 * i / 100 if i < 100 else 0.3 + 0.012 * (i - 100)  # falls, then climbs
        count = len(guard.interventions)
        guard.step(_closure(model, optimizer, x[i], y[i],
                            value=level * (1 + 0.03 * noise.uniform(-1, 1))))
        if len(guard.interventions) > count and \
                guard.interventions[-1].reason == "diagnosed_diverged":
            restored = model.weight.detach().clone()
            break
    assert restored is not None, [i.reason for i in guard.interventions]
    assert guard._snapshots.latest_step == guard.interventions[-1].restored_to
    for _ in range(3):
        guard.step(_closure(model, optimizer, x[0], y[0], value=0.35))
    guard.step(_closure(model, optimizer, x[0], y[0], poison=math.nan))
    assert guard.interventions[-1].reason == "nonfinite_loss_rolled_back"
    # back to the state the diverged cut went to, not to a state of the abandoned stretch
    assert torch.equal(model.weight.detach(), restored)


def test_a_rollback_after_add_param_group_restores_both_groups():
    torch.manual_seed(0)
    body, head = nn.Linear(4, 4), nn.Linear(4, 1)
    model = nn.Sequential(body, head)
    body.requires_grad_(False)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05, momentum=0.9)
    guard = lrkit.Guard(model, optimizer)
    x, y = _data()
    for i in range(60):
        guard.step(_closure(model, optimizer, x[i], y[i]))
    body.requires_grad_(True)  # gradual unfreezing
    optimizer.add_param_group({"params": list(body.parameters()), "lr": 0.01})
    for i in range(60, 65):
        guard.step(_closure(model, optimizer, x[i], y[i]))
        if i == 60:  # the guard snapshotted the new layout before this step's update
            after_change = {k: v.clone() for k, v in model.state_dict().items()}
    guard.step(_closure(model, optimizer, x[70], y[70], poison=math.nan))
    assert guard.interventions[-1].reason == "nonfinite_loss_rolled_back"
    assert len(optimizer.param_groups) == 2 and optimizer.param_groups[1]["lr"] == 0.01
    # the rollback went to a state with both groups, no older than the change
    assert guard._snapshots.latest_step >= 60
    guard.step(_closure(model, optimizer, x[71], y[71]))  # and training goes on
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert set(after_change) == set(model.state_dict())


def test_a_snapshot_is_not_restored_into_an_optimizer_whose_groups_changed():
    model, optimizer = _linear()
    snapshot = Snapshot(model, optimizer)
    extra = nn.Parameter(torch.ones(3))
    optimizer.add_param_group({"params": [extra]})
    weight = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(LrkitError, match="parameter groups changed since the snapshot"):
        snapshot.restore()
    # checked before anything was put back: the model was left as it was
    assert torch.equal(model.weight.detach(), weight + 1.0)


def test_steps_undone_by_a_rollback_do_not_count_toward_the_next_snapshot():
    model, optimizer = _linear()
    guard = lrkit.Guard(model, optimizer, snapshot_every=100, max_retries=2, diagnose_every=None,
                        watch_progress=False)
    taken = []
    take = guard._snapshots.take
    guard._snapshots.take = lambda step, level, extra=None: (taken.append(step),
                                                             take(step, level, extra))[1]
    x, y = _data()
    for i in range(565):
        guard.step(_closure(model, optimizer, x[i % 400], y[i % 400]))
    assert taken[-1] == 475
    guard.step(_closure(model, optimizer, x[0], y[0], poison=math.nan))  # back to step 475
    for i in range(30):
        guard.step(_closure(model, optimizer, x[i], y[i]))
    # 90 good steps since 475 were undone: the next snapshot is 100 good steps after the
    # rollback, not 10 (which would also have reset the retry count)
    assert taken[-1] == 475 and guard._retries == 1


def test_a_refused_cut_records_its_incident_and_blames_no_scheduler_without_cause():
    model, optimizer = _linear()
    guard = lrkit.Guard(model, optimizer, probe_steps=0, confirm_spikes=0, min_lr_scale=0.5)
    x, y = _data()
    for i in range(30):
        guard.step(_closure(model, optimizer, x[i], y[i]))
    with pytest.raises(GuardError) as raised:
        guard.step(_closure(model, optimizer, x[30], y[30], poison=math.nan))
    assert "min_lr_scale" in str(raised.value)
    assert "scheduler" not in str(raised.value)  # there were no cuts for one to undo
    assert [i.reason for i in guard.interventions] == ["nonfinite_loss"]
    assert "step 31 nonfinite_loss" in str(raised.value)


def test_a_refused_cut_names_the_scheduler_when_something_undid_the_guards_cut():
    model, optimizer = _linear(lr=0.1)
    guard = lrkit.Guard(model, optimizer, probe_steps=0, confirm_spikes=0, min_lr_scale=0.2,
                        lr_factor=0.5)
    x, y = _data()
    for i in range(30):
        guard.step(_closure(model, optimizer, x[i], y[i]))
    guard.step(_closure(model, optimizer, x[30], y[30], poison=math.nan))  # cut to 0.05
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    for i in range(31, 60):
        optimizer.param_groups[0]["lr"] = 0.1  # a scheduler the guard does not know of
        guard.step(_closure(model, optimizer, x[i], y[i]))
    guard.step(_closure(model, optimizer, x[60], y[60], poison=math.nan))  # cut to 0.05 again
    optimizer.param_groups[0]["lr"] = 0.1
    for i in range(61, 80):
        guard.step(_closure(model, optimizer, x[i], y[i]))
    with pytest.raises(GuardError, match=r"pass it as Guard\(scheduler=\.\.\.\)"):
        guard.step(_closure(model, optimizer, x[80], y[80], poison=math.nan))


def test_the_recorded_gradient_norm_is_the_global_l2_norm():
    model, optimizer = _linear()
    guard = lrkit.Guard(model, optimizer, check_grads=True, warmup=3)
    x, y = _data()
    for i in range(20):
        guard.step(_closure(model, optimizer, x[i], y[i]))
    spike = _closure(model, optimizer, x[20], y[20], poison=1e4)
    spike()  # the same gradients as the guard's step below computes
    expected = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf).item()
    per_parameter = sum(p.grad.norm().item() for p in model.parameters())
    guard.step(spike)  # a lone spike: skipped
    record = guard.interventions[-1]
    assert record.reason == "spike_skipped"
    assert per_parameter > 1.1 * expected  # (the sum of the norms it recorded before)
    assert record.grad_norm == pytest.approx(expected, rel=1e-5)


def test_a_cosine_floor_keeps_the_guards_cut_to_the_end():
    model, optimizer = _linear(lr=0.1)
    scheduler = lr_scheduler.CosineAnnealingLR(optimizer, T_max=100, eta_min=0.05)
    guard = lrkit.Guard(model, optimizer, probe_steps=0, confirm_spikes=0, lr_factor=0.3,
                        scheduler=scheduler)
    plain = [0.05 + 0.025 * (1 + math.cos(math.pi * t / 100)) for t in range(101)]
    x, y = _data()
    for i in range(20):
        guard.step(_closure(model, optimizer, x[i], y[i]))
        scheduler.step()
    guard.step(_closure(model, optimizer, x[20], y[20], poison=math.nan))
    scheduler.step()
    ratios = []
    for i in range(21, 100):
        guard.step(_closure(model, optimizer, x[i], y[i]))
        scheduler.step()
        ratios.append(optimizer.param_groups[0]["lr"] / plain[scheduler.last_epoch])
    assert min(ratios) == pytest.approx(0.3, rel=1e-6)
    assert max(ratios) == pytest.approx(0.3, rel=1e-6)  # it drifted up to 1.0 near the floor


def test_a_probe_that_keeps_its_end_state_gives_that_state_a_level():
    model, optimizer = _linear()
    guard = lrkit.Guard(model, optimizer, probe_steps=10, confirm_spikes=0)
    x, y = _data()
    for i in range(40):
        guard.step(_closure(model, optimizer, x[i], y[i], value=1.0 - 0.005 * i))
    guard.step(_closure(model, optimizer, x[40], y[40], poison=math.nan))  # starts the probe
    assert guard.probing
    for i in range(10):  # a probe whose loss is still falling at its end: its state is kept
        guard.step(_closure(model, optimizer, x[41 + i], y[41 + i], value=0.5 - 0.03 * i))
    assert not guard.probing and guard.interventions[-1].restored_to == -1
    keeper = guard._snapshots
    assert keeper.latest_step == guard.steps
    assert keeper._latest_level == pytest.approx(sorted([0.5 - 0.03 * i for i in range(10)])[5])


def test_disk_snapshots_of_a_guard_never_closed_are_removed(tmp_path):
    model, optimizer = _linear()
    guard = lrkit.Guard(model, optimizer, snapshot="disk", snapshot_dir=tmp_path,
                        snapshot_every=10)
    x, y = _data()
    for i in range(30):
        guard.step(_closure(model, optimizer, x[i], y[i]))
    assert len(list(tmp_path.glob("lrkit-snapshot-*"))) == 2
    del guard
    gc.collect()
    assert list(tmp_path.glob("lrkit-snapshot-*")) == []


def test_the_guard_is_a_context_manager_that_closes(tmp_path):
    model, optimizer = _linear()
    x, y = _data()
    with lrkit.Guard(model, optimizer, snapshot="disk", snapshot_dir=tmp_path) as guard:
        for i in range(15):
            guard.step(_closure(model, optimizer, x[i], y[i]))
        assert list(tmp_path.glob("lrkit-snapshot-*"))
    assert list(tmp_path.glob("lrkit-snapshot-*")) == []
