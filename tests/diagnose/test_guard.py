"""lrkit.Guard: exact restore, rate cut, skipped batch, retry bound, real diverging run."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import lrkit
from lrkit import examples
from lrkit.adapters.torch import cycle_batches
from lrkit.diagnose.guard import GuardError
from lrkit.errors import LrkitError
from lrkit.training import evaluate
from tests.diagnose.levels import level_loss


def _setup(lr=0.1, **options):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    options.setdefault("lr_factor", 0.5)
    options.setdefault("probe_steps", 0)  # plain cuts; the probe has its own tests
    # every non-finite value an incident (a lone one only rolls back: its own tests below)
    options.setdefault("confirm_spikes", 0)
    guard = lrkit.Guard(model, optimizer, **options)
    return model, optimizer, guard


def _closure(model, optimizer, x, y, poison=None):
    def closure():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        if poison is not None:
            loss = loss * poison
        loss.backward()
        return loss
    return closure


def _inf_gradient(model, optimizer, x, y):
    """A closure whose loss is finite and whose gradient holds an inf (in the first layer)."""
    def closure():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        model[0].weight.grad[0, 0] = float("inf")
        return loss
    return closure


def _state(model, optimizer):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in s.items()}
             for k, s in optimizer.state_dict()["state"].items()})


def test_nonfinite_loss_restores_the_snapshot_exactly_and_cuts_the_rate():
    model, optimizer, guard = _setup(snapshot_every=5)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for _ in range(5):
        guard.step(_closure(model, optimizer, x, y))
    # a snapshot was just taken (5 good steps); remember the state it holds
    params, opt_state = _state(model, optimizer)
    rng = torch.get_rng_state()
    for _ in range(2):
        guard.step(_closure(model, optimizer, x, y))
    assert not torch.equal(model[0].weight, params["0.weight"])
    value = guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
    assert math.isnan(value) and guard.skipped
    new_params, new_opt = _state(model, optimizer)
    for key in params:
        assert torch.equal(new_params[key], params[key]), key  # bit for bit, BatchNorm included
    for key in opt_state:
        for name, tensor in opt_state[key].items():
            assert torch.equal(torch.as_tensor(new_opt[key][name]), torch.as_tensor(tensor))
    assert torch.equal(torch.get_rng_state(), rng)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    (record,) = guard.interventions
    assert record.reason == "nonfinite_loss" and record.lr_before == [0.1]
    assert record.lr_after == [pytest.approx(0.05)] and record.restored_to == 5
    assert all(p.grad is None for p in model.parameters())
    # and training goes on
    assert math.isfinite(guard.step(_closure(model, optimizer, x, y))) and not guard.skipped


def test_nonfinite_gradient_and_spike():
    model, optimizer, guard = _setup(warmup=5, spike_factor=5.0, check_grads=True,
                                     confirm_spikes=20)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for _ in range(6):
        guard.step(_closure(model, optimizer, x, y))
    # a lone one: back to the snapshot, the rate as it was
    guard.step(_inf_gradient(model, optimizer, x, y))
    assert guard.interventions[-1].reason == "nonfinite_grad_rolled_back"
    assert optimizer.param_groups[0]["lr"] == 0.1
    for _ in range(6):
        guard.step(_closure(model, optimizer, x, y))
    # a second within confirm_spikes steps: the rate's
    guard.step(_inf_gradient(model, optimizer, x, y))
    assert guard.interventions[-1].reason == "nonfinite_grad"
    before = {k: v.clone() for k, v in model.named_parameters()}
    # a lone spike: the batch is skipped, the parameters and the rate stay as they were
    guard.step(_closure(model, optimizer, x, y, poison=100.0))
    assert guard.skipped and guard.interventions[-1].reason == "spike_skipped"
    assert guard.interventions[-1].reference is not None
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5)
    assert all(torch.equal(v, before[k]) for k, v in model.named_parameters())
    # the same parameters spike again on the next batch: now it is an incident
    guard.step(_closure(model, optimizer, x, y, poison=100.0))
    assert guard.interventions[-1].reason == "spike"
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.25)


def _spike_after_warmup(confirm_spikes):
    """Six ordinary steps, then one whose loss is 100x: (model, optimizer, guard, x, y)."""
    model, optimizer, guard = _setup(warmup=5, confirm_spikes=confirm_spikes)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for _ in range(6):
        guard.step(_closure(model, optimizer, x, y))
    guard.step(_closure(model, optimizer, x, y, poison=100.0))
    return model, optimizer, guard, x, y


def test_a_lone_spike_is_skipped_and_training_goes_on():
    model, optimizer, guard, x, y = _spike_after_warmup(confirm_spikes=20)
    (record,) = guard.interventions
    assert record.reason == "spike_skipped" and record.restored_to == -1
    assert record.lr_before == record.lr_after == [0.1]
    for _ in range(25):  # ordinary batches: no further intervention
        assert math.isfinite(guard.step(_closure(model, optimizer, x, y))) and not guard.skipped
    guard.step(_closure(model, optimizer, x, y, poison=100.0))  # 26 steps later: lone again
    assert [i.reason for i in guard.interventions] == ["spike_skipped"] * 2
    assert optimizer.param_groups[0]["lr"] == 0.1


def _levels_guard():
    """A guard fed chosen losses (each closure returns its level; the gradients are real)."""
    model, optimizer, guard = _setup(confirm_spikes=20, warmup=10)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    noise = np.random.default_rng(0)

    def step(level):
        def closure():
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            return torch.tensor(float(level))
        return guard.step(closure)

    for _ in range(60):
        step(0.05 * (1 + 0.2 * noise.standard_normal()))
    return guard, step, noise


@pytest.mark.parametrize("between, confirmed", [(14, False), (3, True)])
def test_a_second_spike_after_ordinary_batches_is_another_lone_one(between, confirmed):
    # a small last batch of each epoch, confidently wrong near convergence, spiked once an epoch
    # (15 steps): two spikes 15 steps apart were "confirmed", and the rate was cut 8x on a
    # healthy run; the ordinary batches between them cleared the parameters
    guard, step, noise = _levels_guard()
    step(1.0)
    for _ in range(between):
        step(0.05 * (1 + 0.2 * noise.standard_normal()))
    step(1.0)
    reasons = [i.reason for i in guard.interventions]
    assert reasons == (["spike_skipped", "spike"] if confirmed else ["spike_skipped"] * 2)


def test_a_second_spike_after_raised_losses_confirms_the_first():
    # the parameters the first spike was skipped with are bad: the losses after it stay high
    guard, step, noise = _levels_guard()
    step(1.0)
    for _ in range(10):
        step(0.12 * (1 + 0.1 * noise.standard_normal()))
    step(1.0)
    assert [i.reason for i in guard.interventions] == ["spike_skipped", "spike"]


def test_confirm_spikes_zero_acts_on_the_first_spike():
    _, optimizer, guard, _, _ = _spike_after_warmup(confirm_spikes=0)
    assert guard.interventions[-1].reason == "spike"
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_retry_bound_raises_a_clear_error():
    model, optimizer, guard = _setup(max_retries=3)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    guard.step(_closure(model, optimizer, x, y))
    for _ in range(3):
        guard.step(_closure(model, optimizer, x, y, poison=float("inf")))
    with pytest.raises(GuardError, match="after 3 rollbacks") as info:
        guard.step(_closure(model, optimizer, x, y, poison=float("inf")))
    assert isinstance(info.value, LrkitError)
    assert len(guard.interventions) == 4
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)


def test_retries_reset_after_a_new_snapshot():
    model, optimizer, guard = _setup(max_retries=1, snapshot_every=3)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for _ in range(5):
        guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
        for _ in range(3):
            guard.step(_closure(model, optimizer, x, y))
    assert len(guard.interventions) == 5


def test_disk_snapshot_and_scheduler(tmp_path):
    model, optimizer, _ = _setup()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    guard = lrkit.Guard(model, optimizer, snapshot="disk", snapshot_dir=tmp_path,
                        confirm_spikes=0,
                        scheduler=scheduler, lr_factor=0.5, probe_steps=0)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    guard.step(_closure(model, optimizer, x, y))
    assert list(tmp_path.glob("lrkit-snapshot-*"))
    guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)  # the scheduler kept the cut
    guard.close()
    assert not list(tmp_path.glob("lrkit-snapshot-*"))


def test_bad_arguments():
    model, optimizer, _ = _setup()
    with pytest.raises(LrkitError, match="lr_factor"):
        lrkit.Guard(model, optimizer, lr_factor=2.0)
    with pytest.raises(LrkitError, match="optimizer"):
        lrkit.Guard(model, "sgd")
    with pytest.raises(LrkitError, match="returned None"):
        lrkit.Guard(model, optimizer).step(lambda: None)
    with pytest.raises(LrkitError, match=r"tensor of shape \(2,\); return the scalar loss"):
        lrkit.Guard(model, optimizer).step(lambda: torch.ones(2))
    with pytest.raises(LrkitError, match="returned str"):
        lrkit.Guard(model, optimizer).step(lambda: "loss")
    with pytest.raises(LrkitError, match="probe_steps must be 0"):
        lrkit.Guard(model, optimizer, probe_steps=3)
    with pytest.raises(LrkitError, match="probe_decades"):
        lrkit.Guard(model, optimizer, probe_decades=0)
    with pytest.raises(LrkitError, match="confirm_spikes must be an integer >= 0"):
        lrkit.Guard(model, optimizer, confirm_spikes=-1)


def test_the_probe_ramps_from_the_snapshot_then_rolls_back_to_a_measured_rate():
    model, optimizer, guard = _setup(lr=0.5, probe_steps=20, probe_decades=2.0, snapshot_every=5)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    for _ in range(5):
        guard.step(_closure(model, optimizer, x, y))
    params, opt_state = _state(model, optimizer)  # the snapshot just taken
    guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
    assert guard.probing and guard.skipped
    assert guard.interventions[0].reason == "nonfinite_loss"
    assert guard.interventions[0].lr_after == [pytest.approx(0.005)]  # 2 decades below
    seen = []
    # the probe sees a loss that falls, then explodes at 20x its scale: it stops there
    for i in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        poison = 1.0 if i < 14 else 50.0 ** (i - 13)
        guard.step(_closure(model, optimizer, x, y, poison=poison))
        if not guard.probing:
            break
    assert seen[0] == pytest.approx(0.005) and all(b > a for a, b in zip(seen, seen[1:]))
    assert not guard.probing and 15 <= len(seen) < 20
    record = guard.interventions[-1]
    assert record.reason == "probe" and record.lr_before == [0.5] and record.restored_to == 5
    # the rate now is measured (below a plain cut), and the state is the snapshot's, bit for bit
    assert 0.005 <= optimizer.param_groups[0]["lr"] <= 0.5 * 0.5
    new_params, new_opt = _state(model, optimizer)
    for key in params:
        assert torch.equal(new_params[key], params[key]), key
    for key in opt_state:
        for name, tensor in opt_state[key].items():
            assert torch.equal(torch.as_tensor(new_opt[key][name]), torch.as_tensor(tensor))
    # a later incident is a plain cut: one probe per guard
    guard.step(_closure(model, optimizer, x, y, poison=float("inf")))
    assert guard.interventions[-1].reason == "nonfinite_loss" and not guard.probing


def test_a_probe_that_never_sees_the_loss_fall_goes_on_a_cut_below_the_failed_rate():
    model, optimizer, guard = _setup(lr=0.4, probe_steps=10, snapshot_every=5)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    guard.step(_closure(model, optimizer, x, y))
    guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
    for _ in range(10):
        # a constant loss whatever the rate: the probe learns nothing
        guard.step(level_loss(model, 1.0))
    assert not guard.probing
    # the failed rate is past the turning point, taken to be a cut (x0.3) lower: 0.4 x 0.3
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.4 * 0.4 * 0.3)


def _guarded_run(name, lr, steps, seed=0, guard_options=None, guard_class=lrkit.Guard,
                 losses=None):
    """A built-in example trained under a guard; ``losses``: a list to append each step's to."""
    problem = examples.build(name, seed=seed, lr=lr)
    guard = guard_class(problem.model, problem.optimizer, **(guard_options or {}))
    batches = cycle_batches(problem.train_loader)
    torch.manual_seed(seed)
    for _ in range(steps):
        x, y = next(batches)

        def closure():
            problem.optimizer.zero_grad()
            loss = problem.criterion(problem.model(x), y)
            loss.backward()
            return loss

        value = guard.step(closure)
        if losses is not None:
            losses.append(value)
    return evaluate(problem), guard


def test_a_run_that_diverges_without_the_guard_finishes_with_it():
    from lrkit.training import train

    plain = train(examples.build("friedman-deep", seed=0, lr=0.3), lr=0.3, steps=200, seed=0)
    assert plain.diverged
    val, guard = _guarded_run("friedman-deep", 0.3, 200)
    assert math.isfinite(val) and val < 0.5
    assert guard.interventions and guard.lrs[0] < 0.3


def test_no_incidents_on_a_healthy_run():
    val, guard = _guarded_run("digits-mlp", 0.01, 150)
    assert guard.interventions == [] and guard.good_steps == 150


def test_heavy_tailed_batches_near_convergence_are_not_spikes():
    model, optimizer, guard = _setup(lr=1e-6, diagnose_every=None)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    rng = torch.Generator().manual_seed(0)
    # a run that fell from ~2 to ~0.02, with occasional batches 5-10x the median
    levels = [2.0 * 0.9 ** i + 0.02 for i in range(60)]
    levels += [0.02 * (8.0 if torch.rand((), generator=rng) < 0.05 else 1.0) for _ in range(300)]
    for level in levels:
        guard.step(_closure(model, optimizer, x, y, poison=level / 1.0))
    assert guard.interventions == []


def test_the_rate_is_never_cut_below_min_lr_scale():
    model, optimizer, guard = _setup(min_lr_scale=0.2, max_retries=100)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    guard.step(_closure(model, optimizer, x, y))
    guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
    guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    with pytest.raises(GuardError, match="below 0.2 x the rate it started with") as raised:
        guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
    # the rate was the guard's own: no scheduler undid a cut, and the message blames none (one
    # that did is named: test_guard_rollbacks.py)
    assert "scheduler" not in str(raised.value)


def test_a_run_that_stays_unstable_is_slowed_down_by_the_course_check():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = lrkit.Guard(model, optimizer, diagnose_every=100, spike_factor=None, probe_steps=0)
    rng = torch.Generator().manual_seed(1)
    for i in range(100):
        # a loss that fell, then bounces back up far above its best (but below where it started:
        # progress is not all lost): an unstable course
        level = 2.0 * 0.8 ** i if i < 50 else 0.5 * float(torch.rand((), generator=rng)) + 0.1
        guard.step(level_loss(model, level))
    (record,) = guard.interventions
    assert record.reason in ("diagnosed_unstable", "diagnosed_diverged")
    assert optimizer.param_groups[0]["lr"] < 0.1


def test_course_checks_that_find_nothing_back_off(monkeypatch):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    guard = lrkit.Guard(model, optimizer, diagnose_every=100, probe_steps=0)
    calls = []
    real = guard._check_course
    monkeypatch.setattr(guard, "_check_course",
                        lambda **kw: calls.append(guard.steps) or real(**kw))
    # a healthy run with heavy-tailed batches: the cheap look (a batch 5x the median) passes at
    # every check, the diagnosis finds nothing to do
    levels = [2.0 * 0.9 ** i + 0.1 for i in range(60)]
    levels += [0.6 if i % 20 == 0 else 0.1 for i in range(1940)]
    for level in levels:
        guard.step(level_loss(model, level))
    assert guard.interventions == []
    assert 3 <= len(calls) <= 6  # 100, 200, 400, 800, 800 steps apart instead of every 100
    assert guard._check_interval == 800


def _snapshot_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_close_during_a_probe_undoes_it_and_cuts_the_rate():
    model, optimizer, guard = _setup(lr=0.2, probe_steps=20, snapshot_every=5)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    for _ in range(5):
        guard.step(_closure(model, optimizer, x, y))
    saved = _snapshot_state(model)
    guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
    for _ in range(6):  # the loop ends mid-probe
        guard.step(_closure(model, optimizer, x, y))
    assert guard.probing
    guard.close()
    assert not guard.probing and guard.interventions[-1].reason == "probe_cut_short"
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * 0.5)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_a_guard_error_at_the_end_of_a_probe_leaves_the_snapshot_state():
    # the probe's verdict would take the rate below min_lr_scale: the error comes with the
    # model back at the snapshot, not in the probe's half-ramped state
    model, optimizer, guard = _setup(lr=0.2, probe_steps=20, probe_decades=4.0, snapshot_every=5,
                                     min_lr_scale=0.2)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    for _ in range(5):
        guard.step(_closure(model, optimizer, x, y))
    saved = _snapshot_state(model)
    guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
    with pytest.raises(GuardError, match="below 0.2 x"):
        for i in range(20):  # falls early in the ramp, explodes soon after: a low verdict
            guard.step(_closure(model, optimizer, x, y, poison=1.0 if i < 8 else 50.0 ** (i - 7)))
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_no_snapshot_is_taken_of_non_finite_parameters():
    model, optimizer, guard = _setup(snapshot_every=2)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    guard.step(_closure(model, optimizer, x, y))
    guard.take_snapshot()
    good = _snapshot_state(model)
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")  # as an update from a non-finite gradient would
    guard.take_snapshot()
    guard.step(_closure(model, optimizer, x, y))  # non-finite loss: roll back
    assert guard.interventions and guard.interventions[-1].reason == "nonfinite_loss"
    assert torch.isfinite(model[0].weight).all()
    assert torch.equal(model[0].weight, good["0.weight"])


def test_a_non_finite_loss_while_the_probe_still_falls_is_not_read_as_its_turning_point():
    model, optimizer, guard = _setup(lr=0.2, probe_steps=20, snapshot_every=5)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    for _ in range(5):
        guard.step(_closure(model, optimizer, x, y))
    guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
    for i in range(12):  # the loss falls through the ramp, then one batch is NaN
        guard.step(_closure(model, optimizer, x, y, poison=float("nan") if i == 11 else 1.0))
    assert not guard.probing and guard.interventions[-1].reason == "probe"
    # not 0.4 x the scale where the NaN came (about 0.03 x), but the inconclusive 0.4 x 0.3
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * 0.4 * 0.3)


def test_outlier_batches_alone_do_not_get_an_unstable_run_cut(monkeypatch):
    """With the recent level at its lowest, a check prompted by outlier batches acts on a
    'diverged' verdict only: 'unstable' on a falling heavy-tailed curve is a common miss."""
    from lrkit.diagnose import classify

    verdicts = []

    def fake_diagnose(history, *args, **kwargs):
        verdicts.append(len(history))
        return classify.Diagnosis("unstable", 0.95, {}, 0.3, "rate too high", reasons=["spikes"])

    monkeypatch.setattr(classify, "diagnose", fake_diagnose)
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    guard = lrkit.Guard(model, optimizer, diagnose_every=100, probe_steps=0)
    levels = [2.0 * 0.97 ** i + 0.1 for i in range(300)]  # falling: the level is at its lowest
    levels = [v * (6.0 if i % 25 == 0 and i > 50 else 1.0) for i, v in enumerate(levels)]
    for level in levels:
        guard.step(level_loss(model, level))
    assert verdicts  # the outliers did prompt a diagnosis
    assert not any(i.reason.startswith("diagnosed") for i in guard.interventions)
    assert optimizer.param_groups[0]["lr"] == 1e-6


@pytest.mark.parametrize("where", ["cpu", "disk"])
def test_a_snapshot_taken_after_an_update_that_broke_the_parameters_is_not_restored(where,
                                                                                     tmp_path):
    """Snapshots are not checked when taken; the rollback checks the latest and, when an
    update just before it broke a parameter, goes back to the verified snapshot instead."""
    model, optimizer, guard = _setup(snapshot_every=5, snapshot=where, snapshot_dir=tmp_path)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    initial = {k: v.clone() for k, v in model.named_parameters()}
    for _ in range(4):
        guard.step(_closure(model, optimizer, x, y))
    # a finite loss, an infinite gradient: the update breaks the model
    guard.step(_inf_gradient(model, optimizer, x, y))  # the fifth good step: its snapshot broken
    assert not torch.isfinite(model[0].weight).all()
    assert guard._snapshots.latest_step == 5 and not guard._snapshots.latest.parameters_finite()
    value = guard.step(_closure(model, optimizer, x, y))
    assert math.isnan(value) and guard.interventions[-1].reason == "nonfinite_loss"
    for name, tensor in model.named_parameters():  # back to the verified (first) snapshot
        assert torch.equal(tensor, initial[name]), name
    assert guard.interventions[-1].restored_to == 0
    for _ in range(60):  # training goes on; snapshots come and go, two copies at most
        assert math.isfinite(guard.step(_closure(model, optimizer, x, y)))
        assert len(list(tmp_path.glob("lrkit-snapshot-*"))) <= (2 if where == "disk" else 0)
    assert guard._snapshots.latest_step > 5 and guard._snapshots.best is not None
    guard.close()
    assert not list(tmp_path.glob("lrkit-snapshot-*"))


def test_the_course_check_history_keeps_at_most_500_bin_means():
    model, optimizer, guard = _setup()
    values = [float(i) for i in range(2000)]
    for start in range(0, 2000, 10):  # fed in batches, as the bookkeeping does
        guard._record(values[start:start + 10])
    history = guard._history
    assert len(history) == 250 and guard._stride == 8  # merged at 500 bins, three times
    # every bin is the mean of `stride` consecutive values, in order
    assert history[:3] == [3.5, 11.5, 19.5]
    assert all(b > a for a, b in zip(history, history[1:]))


def test_a_model_that_is_not_finite_before_the_first_step_gets_a_clear_error():
    model, optimizer, guard = _setup()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    with pytest.raises(LrkitError, match="not finite .* before the guard's first step"):
        guard.step(_closure(model, optimizer, x, y))


def _synthetic_run(levels, **options):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = lrkit.Guard(model, optimizer, diagnose_every=None, probe_steps=0, **options)
    for level in levels:
        guard.step(level_loss(model, level))
    return guard, optimizer


def test_a_run_that_slides_back_to_its_start_goes_back_to_its_best_state():
    # down from 2 to 0.5 in 60 steps, then smoothly back up: no batch is a spike, no course
    # check runs (diagnose_every=None); the recent median returns to the start level
    levels = [2.0 - 1.5 * i / 60 for i in range(60)] + [0.5 + 0.025 * i for i in range(1, 121)]
    guard, optimizer = _synthetic_run(levels)
    (record,) = [i for i in guard.interventions if i.reason == "progress_lost"]
    assert 110 <= record.step <= 150
    # the best verified snapshot (step 80, near the bottom), not the latest one (step 100)
    assert record.restored_to == 80
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * guard.lr_factor)


def test_a_run_that_never_made_progress_has_none_to_lose():
    rng = torch.Generator().manual_seed(0)
    levels = [2.0 + 0.3 * float(torch.rand((), generator=rng)) for _ in range(400)]
    guard, _ = _synthetic_run(levels)
    assert guard.interventions == []


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_flat_runs_with_heavy_batch_noise_have_no_progress_to_lose(seed):
    # a start level of 10 losses and a lowest median over many windows made these look like a
    # fall and a rise (a first version fired 11 times on 10 such runs)
    gen = torch.Generator().manual_seed(seed)
    levels = (torch.randn(1500, generator=gen) * 0.5).exp().tolist()
    guard, _ = _synthetic_run(levels, spike_factor=None)
    assert "progress_lost" not in [i.reason for i in guard.interventions]


def test_watch_progress_false_turns_the_progress_check_off():
    levels = [2.0 - 1.5 * i / 60 for i in range(60)] + [0.5 + 0.025 * i for i in range(1, 121)]
    guard, _ = _synthetic_run(levels, watch_progress=False)
    assert guard.interventions == []


# -- mixed precision: a GradScaler ------------------------------------------------------------------
def _scaled_closure(model, optimizer, scaler, x, y, factor=1.0):
    def closure():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y) * factor
        scaler.scale(loss).backward()
        return loss
    return closure


def test_with_a_grad_scaler_the_guard_steps_exactly_as_a_scaler_loop():
    data = [(torch.randn(16, 4), torch.randn(16, 1)) for _ in range(30)]
    finals = []
    for guarded in (False, True):
        model, optimizer, _ = _setup(lr=0.01)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
        guard = lrkit.Guard(model, optimizer, scaler=scaler, check_grads=True, probe_steps=0,
                        confirm_spikes=0)
        for x, y in data:
            closure = _scaled_closure(model, optimizer, scaler, x, y)
            if guarded:
                guard.step(closure)
            else:
                closure()
                scaler.step(optimizer)
                scaler.update()
        finals.append(_state(model, optimizer)[0])
        assert not guard.interventions
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
    # without scaler= the guard would step on gradients 1024x too large
    model, optimizer, _ = _setup(lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    guard = lrkit.Guard(model, optimizer, probe_steps=0)
    for x, y in data[:3]:
        guard.step(_scaled_closure(model, optimizer, scaler, x, y))
    moved = _state(model, optimizer)[0]
    assert not all(torch.allclose(finals[0][k].float(), moved[k].float(), atol=1e-2)
                   for k in moved if moved[k].is_floating_point())


def test_a_scaler_overflow_is_not_an_incident_and_skipped_batches_release_the_scaler():
    model, optimizer, _ = _setup(lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    guard = lrkit.Guard(model, optimizer, scaler=scaler, check_grads=True, probe_steps=0,
                        confirm_spikes=20)
    weight = next(model.parameters())
    torch.manual_seed(1)
    for step in range(40):
        x, y = torch.randn(16, 4), torch.randn(16, 1)
        hook = weight.register_hook(lambda g: g * math.inf) if step == 15 else None
        factor = 50.0 if step == 25 else 1.0  # a lone spike: skipped after unscale_
        before = weight.detach().clone()
        guard.step(_scaled_closure(model, optimizer, scaler, x, y, factor))
        if hook is not None:
            hook.remove()
            assert torch.equal(before, weight)  # the scaler skipped the overflowing update
            assert scaler.get_scale() == 2.0 ** 9
    assert [i.reason for i in guard.interventions] == ["spike_skipped"]
    with pytest.raises(LrkitError, match="scaler must be a torch.amp.GradScaler"):
        lrkit.Guard(model, optimizer, scaler=object())


def test_a_progress_lost_rollback_with_a_scaler_updates_it_once():
    # the rollback comes from the bookkeeping after a good step (scaler.step and update done)
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    guard = lrkit.Guard(model, optimizer, diagnose_every=None, probe_steps=0, scaler=scaler,
                        check_grads=True)
    x = torch.randn(8, 4)
    levels = [2.0 - 1.5 * i / 60 for i in range(60)] + [0.5 + 0.025 * i for i in range(1, 121)]
    for level in levels:
        def closure(level=level):
            optimizer.zero_grad()
            loss = torch.tensor(level) + 0.0 * model(x).sum()
            scaler.scale(loss).backward()
            return loss
        guard.step(closure)
    assert "progress_lost" in [i.reason for i in guard.interventions]


@pytest.mark.parametrize("check_grads", [True, False])
def test_a_closure_that_unscales_to_clip_works_with_the_guard(check_grads):
    # the usual AMP recipe with clipping: scaler.unscale_ then clip_grad_norm_ in the closure
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    guard = lrkit.Guard(model, optimizer, scaler=scaler, check_grads=check_grads, probe_steps=0,
                        confirm_spikes=20)
    for step in range(40):
        x, y = torch.randn(16, 4), torch.randn(16, 1)
        factor = 50.0 if step == 25 else 1.0  # a lone spike: its batch is skipped

        def closure(x=x, y=y, factor=factor):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y) * factor
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            return loss
        guard.step(closure)
    assert [i.reason for i in guard.interventions] == ["spike_skipped"]


def test_a_disabled_scaler_is_no_scaler_and_an_inf_gradient_is_still_an_incident():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", enabled=False)  # GradScaler(enabled=use_amp), amp off
    guard = lrkit.Guard(model, optimizer, scaler=scaler, check_grads=True, probe_steps=0,
                        confirm_spikes=0)
    assert guard.scaler is None
    for step in range(12):
        x, y = torch.randn(16, 4), torch.randn(16, 1)
        hook = model.weight.register_hook(lambda g: g * math.inf) if step == 5 else None
        guard.step(_scaled_closure(model, optimizer, scaler, x, y))
        if hook is not None:
            hook.remove()
            assert bool(model.weight.isfinite().all())  # never stepped on the inf gradient
    assert [i.reason for i in guard.interventions] == ["nonfinite_grad"]


def test_a_probe_minimum_inside_the_noise_is_not_a_turning_point():
    # falls, then scatters around a flat bottom to the top of the probe: the lowest point is a
    # dip of the noise, so the verdict is the cut for an unseen turning point, not edge x it
    from lrkit.diagnose.probe import INCONCLUSIVE_CUT, RateProbe
    from lrkit.find.suggest import EDGE_FRACTION

    rng = np.random.default_rng(0)
    steps = 50
    flat = RateProbe(steps, 3.0)
    for i in range(steps):
        level = max(2.0 - 0.08 * i, 0.4)  # the fall ends about halfway up the ramp
        flat.record(level * (1 + 0.3 * math.sin(2.1 * i)))  # batch-to-batch scatter of +-30%
    scale, how = flat.verdict()
    assert "did not clearly rise" in how
    assert scale == pytest.approx(EDGE_FRACTION * INCONCLUSIVE_CUT)
    # the same fall with a clear rise after it is measured
    rising = RateProbe(steps, 3.0)
    for i in range(steps):
        level = 2.0 - 0.08 * i if i < 20 else 0.4 * 1.15 ** (i - 20)
        rising.record(level * float(np.exp(rng.normal(0, 0.05))))
        if rising.done:
            break
    scale, how = rising.verdict()
    assert how == "measured" and scale < 1.0


def test_the_closure_may_return_what_find_lr_accepts():
    # a dict with "loss" and a model output with .loss, as find_lr takes them
    class Output:
        def __init__(self, loss):
            self.loss = loss

    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for wrap in (lambda t: {"loss": t, "logits": None}, Output, lambda t: float(t.detach())):
        model, optimizer, guard = _setup()
        closure = _closure(model, optimizer, x, y)
        before = [p.clone() for p in model.parameters()]
        value = guard.step(lambda: wrap(closure()))
        assert isinstance(value, float) and math.isfinite(value)
        assert not guard.skipped and guard.good_steps == 1
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("probe_steps", [0, 20])
def test_an_lrkit_schedulers_rates_keep_the_guards_cut(probe_steps):
    from lrkit.schedules import to_torch

    model, optimizer, _ = _setup(lr=0.05)
    scheduler = to_torch(optimizer, "constant()")
    guard = lrkit.Guard(model, optimizer, scheduler=scheduler, lr_factor=0.3,
                        confirm_spikes=0,
                        probe_steps=probe_steps, snapshot_every=5)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for _ in range(10):
        guard.step(_closure(model, optimizer, x, y))
        scheduler.step()
    guard.step(_closure(model, optimizer, x, y, poison=float("nan")))
    for _ in range(probe_steps + 5):
        guard.step(_closure(model, optimizer, x, y))
        scheduler.step()
    cut = optimizer.param_groups[0]["lr"]
    assert cut <= 0.05 * 0.3 + 1e-12  # the cut (or the probe's lower rate) held
    assert scheduler.current_step == 15  # the probe's undone steps were not counted
    guard.close()


def test_a_probe_stopped_by_divergence_has_seen_its_turning_point():
    from lrkit.diagnose.probe import RateProbe

    probe = RateProbe(100, 2.0)
    losses = [2.0 - i / 40 for i in range(40)] + [3.0, 9.0, 27.0, 81.0, 243.0]
    for value in losses:
        probe.record(value)
        if probe.done:
            break
    assert probe.done and len(probe.losses) < 100
    scale, how = probe.verdict()
    assert how == "measured"
    assert scale < probe.scales[39]  # below where the loss turned up


def test_numpy_integers_are_the_integers_they_stand_for():
    from lrkit.training import train

    model, optimizer, _ = _setup()
    guard = lrkit.Guard(model, optimizer, snapshot_every=np.int64(50), window=np.int32(20),
                        diagnose_every=np.int64(100), probe_steps=np.int64(0))
    assert type(guard.snapshot_every) is int and guard._recent.maxlen == 20
    assert lrkit.Monitor(report_every=np.int64(10)).report_every == 10
    values = list(np.linspace(2.0, 0.5, 30))
    assert lrkit.diagnose(values, min_points=np.int64(8)).verdict == lrkit.diagnose(values).verdict
    assert train(examples.build("wine-logreg"), lr=0.1, steps=np.int64(5)).steps == 5
    with pytest.raises(LrkitError, match="steps must be an integer"):
        train(examples.build("wine-logreg"), lr=0.1, steps=5.0)


def test_bookkeeping_rounds_thin_out_after_the_early_snapshots():
    """A round (spike threshold, progress and course checks, snapshot due?) costs ~1 us a step at
    10 steps apart on a 0.15 ms step: after the first snapshot_every steps it runs every 25, and
    snapshots still come every snapshot_every steps."""
    model, optimizer, guard = _setup(lr=1e-3, snapshot_every=100)
    rounds, snapshots = [], []
    periodic, store = guard._periodic, guard._store_snapshot

    def counted_periodic():
        rounds.append(guard.good_steps)
        periodic()

    def counted_store(*args):
        snapshots.append(guard.good_steps)
        store(*args)

    guard._periodic, guard._store_snapshot = counted_periodic, counted_store
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)
    for _ in range(600):
        guard.step(_closure(model, optimizer, x, y))
    assert not guard.interventions
    early = [r for r in rounds if r <= 100]
    assert early == list(range(10, 101, 10))
    late = [r for r in rounds if r > 100]
    assert late == list(range(125, 601, 25))
    assert all(b - a <= 100 for a, b in zip(snapshots, snapshots[1:])) and snapshots[-1] >= 500


class _FullChecksGuard(lrkit.Guard):
    """A guard that never takes step()'s short path: every step through the full checks."""

    def _fast_path_holds(self):
        return False


@pytest.mark.parametrize("name, lr", [("friedman-deep", 0.3), ("digits-mlp", 0.3),
                                      ("wine-logreg", 0.01)])
def test_the_short_path_decides_every_step_as_the_full_checks_do(name, lr, monkeypatch):
    # a diverging run (spikes, rollbacks, a probe, course checks) and a healthy one: the same
    # losses, interventions and final parameters, bit for bit, with and without the short path
    taken = []
    original = lrkit.Guard._fast_path_holds

    def spy(self):
        holds = original(self)
        taken.append(holds)
        return holds

    monkeypatch.setattr(lrkit.Guard, "_fast_path_holds", spy)
    runs = []
    for cls in (lrkit.Guard, _FullChecksGuard):
        losses = []
        _, guard = _guarded_run(name, lr, 300, guard_class=cls, losses=losses)
        runs.append((losses, [i.to_dict() for i in guard.interventions],
                     [p.detach().clone() for p in guard.model.parameters()]))
    assert any(taken)  # the short path was open in the first run
    (fast_losses, fast_events, fast_params), (full_losses, full_events, full_params) = runs
    np.testing.assert_array_equal(fast_losses, full_losses)
    assert fast_events == full_events
    assert all(torch.equal(a, b) for a, b in zip(fast_params, full_params))
    if lr >= 0.3:
        assert fast_events  # the diverging runs did exercise the incident paths


def test_a_lone_non_finite_loss_rolls_back_at_the_same_rate():
    # one bad batch (a NaN in the data) says nothing about the rate: back to the snapshot, whose
    # BatchNorm statistics the NaN forward pass had not touched, and on at the same rate (it
    # was probed and cut to ~0.12x for the rest of the run: the fifth review)
    model, optimizer, guard = _setup(confirm_spikes=20, snapshot_every=5)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for _ in range(5):
        guard.step(_closure(model, optimizer, x, y))
    params, _ = _state(model, optimizer)
    bad = x.clone()
    bad[0, 0] = float("nan")
    assert math.isnan(guard.step(_closure(model, optimizer, bad, y))) and guard.skipped
    (record,) = guard.interventions
    assert record.reason == "nonfinite_loss_rolled_back" and record.lr_after == [0.1]
    assert record.restored_to == 5
    after, _ = _state(model, optimizer)
    assert all(torch.equal(after[k], params[k]) for k in params)  # running stats finite again
    for _ in range(3):
        assert math.isfinite(guard.step(_closure(model, optimizer, x, y)))
    guard.step(_closure(model, optimizer, bad, y))  # a second within 20 steps: the rate's
    assert guard.interventions[-1].reason == "nonfinite_loss"
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_a_gradient_check_switched_on_mid_run_applies_at_the_next_step():
    # the short path through step() is closed when check_grads changes (it ignored the switch
    # for up to 25 steps, and an inf gradient reached the weights: code review)
    model, optimizer, guard = _setup(confirm_spikes=20)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for _ in range(31):
        guard.step(_closure(model, optimizer, x, y))
    assert guard._fast  # the short path is open
    guard.check_grads = True
    guard.step(_inf_gradient(model, optimizer, x, y))
    assert guard.skipped and guard.interventions[-1].reason == "nonfinite_grad_rolled_back"
    assert all(torch.isfinite(p).all() for p in model.parameters())
