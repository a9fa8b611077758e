"""lrkit.Monitor: floats and tensors, report interval, logging, JSONL, real short runs."""
import json
import logging
import math

import numpy as np
import pytest
import torch

import lrkit
from lrkit import examples
from lrkit.diagnose.logs import read_log
from lrkit.errors import LrkitError
from lrkit.training import train


def _healthy(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return 2.3 * np.exp(-np.linspace(0, 5, n)) * np.exp(rng.normal(0, 0.1, n)) + 0.05


def test_reports_at_the_interval_and_at_the_end(tmp_path, caplog):
    log = tmp_path / "run.jsonl"
    reports = []
    caplog.set_level(logging.INFO, logger="lrkit.diagnose")
    with lrkit.Monitor(report_every=100, log_file=log, on_report=reports.append) as monitor:
        for i, loss in enumerate(_healthy(250)):
            out = monitor.update(float(loss), lr=0.1)
            assert (out is not None) == ((i + 1) % 100 == 0)
    assert [step for step, _ in monitor.reports] == [100, 200, 250]
    assert len(reports) == 3 and monitor.last.verdict == "healthy"
    messages = [r.getMessage() for r in caplog.records if r.name == "lrkit.diagnose"]
    assert len(messages) == 3 and "final: healthy" in messages[-1]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [line for line in lines if "event" not in line]
    events = [line for line in lines if line.get("event") == "report"]
    assert len(steps) == 250 and steps[0] == {"step": 0, "loss": pytest.approx(steps[0]["loss"]),
                                              "lr": 0.1}
    assert [e["step"] for e in events] == [100, 200, 250] and events[-1]["final"] is True
    # the file the monitor wrote reads back as a loss log
    back = read_log(log)
    assert len(back.losses) == 250 and back.lrs == [0.1] * 250
    assert back.diagnose().verdict == "healthy"


def test_close_twice_and_report_every_zero():
    monitor = lrkit.Monitor(report_every=0)
    for loss in _healthy(50):
        assert monitor.update(loss) is None
    first = monitor.close()
    assert monitor.close() is first and len(monitor.reports) == 1


def test_empty_monitor_says_not_enough_data():
    assert lrkit.Monitor().close().verdict == "not_enough_data"


def test_tensor_losses_stay_on_device_until_a_report():
    monitor = lrkit.Monitor(report_every=40)
    values = _healthy(100)
    for i, v in enumerate(values[:39]):
        monitor.update(torch.tensor(v, requires_grad=False) * 1.0)
    # nothing copied to the host yet: the values wait as tensors
    assert len(monitor._pending) == 39 and len(monitor._losses) == 0
    monitor.update(torch.tensor(values[39]))
    assert monitor._pending == [] and len(monitor._losses) == 40
    for v in values[40:]:
        monitor.update(torch.tensor(v))
    assert monitor.losses == pytest.approx(values.tolist(), rel=1e-6)


def test_mixed_floats_and_tensors_keep_their_order():
    monitor = lrkit.Monitor(report_every=0)
    monitor.update(torch.tensor(3.0))
    monitor.update(2.0)
    monitor.update(torch.tensor(1.0))
    assert monitor.losses == [3.0, 2.0, 1.0]


def test_nan_losses_are_kept_and_diagnosed(tmp_path):
    log = tmp_path / "nan.jsonl"
    with lrkit.Monitor(report_every=0, log_file=log) as monitor:
        for v in list(_healthy(40)) + [float("nan")] * 5:
            monitor.update(v)
    assert monitor.last.verdict == "diverged"
    assert '"NaN"' in log.read_text() or '"nan"' in log.read_text()


def test_long_histories_are_downsampled():
    monitor = lrkit.Monitor(report_every=0, max_points=200)
    for v in _healthy(5000):
        monitor.update(v, lr=0.01)
    result = monitor.close()
    assert result.verdict == "healthy" and result.evidence["points"] == 200


def test_validation_values():
    monitor = lrkit.Monitor(report_every=0)
    for i, v in enumerate(_healthy(200)):
        monitor.update(v)
        if (i + 1) % 25 == 0:
            monitor.update_val(torch.tensor(0.3 + 0.1 * (i // 25) ** 1.5))
    result = monitor.close()
    assert result.verdict == "unstable" and "validation" in " ".join(result.reasons)


def test_bad_options():
    with pytest.raises(LrkitError, match="report_every"):
        lrkit.Monitor(report_every=-1)
    with pytest.raises(LrkitError, match="cannot open the monitor log"):
        lrkit.Monitor(log_file="/nonexistent-dir/x/run.jsonl")


def test_a_schedulers_rate_list_is_the_first_groups_rate():
    monitor = lrkit.Monitor(report_every=0)
    for i in range(20):
        monitor.update(1.0 / (i + 1), lr=[0.1, 0.01])  # scheduler.get_last_lr()
    assert monitor.lrs == [0.1] * 20
    with pytest.raises(LrkitError, match="rate as a number"):
        monitor.update(0.5, lr="fast")
    # a refused update records nothing: losses and rates stay paired
    assert len(monitor.losses) == len(monitor.lrs) == 20
    assert monitor.close().verdict != "not_enough_data"
    with pytest.raises(LrkitError, match="min_points"):
        lrkit.Monitor(min_points=1)


def test_on_a_real_run():
    problem = examples.build("digits-mlp", seed=0, lr=0.0003)
    monitor = lrkit.Monitor(report_every=100)
    train(problem, lr=0.0003, steps=200, seed=0,
          on_step=lambda s, loss, lr: monitor.update(loss, lr))
    result = monitor.close()
    assert result.verdict == "too_slow"
    assert result.suggested_lr == pytest.approx(0.0003 * result.lr_factor)


def test_the_log_file_holds_the_validation_curve_and_each_run_apart(tmp_path):
    log = tmp_path / "run.jsonl"
    # a run that diverges, then a healthy one, appended to the same file (steps from 0 again)
    with lrkit.Monitor(report_every=0, log_file=log) as bad:
        for i in range(200):
            bad.update(0.5 * 1.05 ** i if i < 120 else float("inf"), lr=1.0)
    with lrkit.Monitor(report_every=0, log_file=log) as good:
        for i, loss in enumerate(_healthy(300)):
            good.update(float(loss), lr=0.1)
            if (i + 1) % 30 == 0:  # training falls, validation turns up: overfitting
                good.update_val(0.5 + 0.002 * max(0, i - 90) ** 1.2, step=i + 1)
    back = read_log(log)
    assert len(back.losses) == 300 and "last of 2 runs" in back.source
    assert len(back.val_losses) == 10
    assert back.diagnose().verdict == good.last.verdict == "unstable"


def test_told_of_a_guard_the_advice_is_for_the_rate_since_its_last_cut():
    # examples/guarded_training.py: the guard went on at 0.011 after 0.3 blew up, and the
    # monitor said "keep (x1) -> 0.3", the peak of the history, which was the rate that failed
    from types import SimpleNamespace

    from lrkit.diagnose.guard import Intervention

    cut = Intervention(step=5, reason="probe", loss=9.0, reference=1.0, grad_norm=None,
                       lr_before=[0.3], lr_after=[0.011], restored_to=0)
    guard = SimpleNamespace(interventions=[cut])
    losses = [2.0] * 5 + list(0.2 + 1.8 * np.exp(-np.arange(295) / 30.0))
    rates = [0.3] * 5 + [0.011] * 295
    plain, told = lrkit.Monitor(report_every=0), lrkit.Monitor(report_every=0, guard=guard)
    for loss, lr in zip(losses, rates):
        plain.update(loss, lr=lr)
        told.update(loss, lr=lr)
    before, after = plain.close(), told.close()
    assert before.verdict == after.verdict == "healthy"
    assert before.suggested_lr == pytest.approx(0.3)  # what it said without the guard
    assert after.suggested_lr == pytest.approx(0.011)
    assert "guard cut the rate from 0.3 to 0.011 at step 5" in after.explanation
    assert after.evidence["guard_cut_at"] == 5
    with pytest.raises(lrkit.LrkitError, match="guard must be an lrkit.Guard"):
        lrkit.Monitor(guard=object())


def test_with_a_guard_the_probe_ramp_is_never_taken_for_the_new_rate():
    # a report while the guard's probe ramps the rate up (its steps are undone afterwards) took
    # the ramp's current rate for "the rate since the cut"; after the probe, the cut is the
    # probe's own record, not the record of the spike that started it
    from types import SimpleNamespace

    from lrkit.diagnose.guard import Intervention

    def record(step, reason, before, after):
        return Intervention(step=step, reason=reason, loss=9.0, reference=1.0, grad_norm=None,
                            lr_before=[before], lr_after=[after], restored_to=0)

    start = record(4, "spike", 0.3, 0.0003)
    guard = SimpleNamespace(interventions=[start], probing=True)
    monitor = lrkit.Monitor(report_every=0, guard=guard)
    ramp = np.geomspace(0.0003, 0.3, 50)
    for i in range(40):
        monitor.update(2.0 - 0.01 * i, lr=0.3 if i < 4 else float(ramp[i - 4]))
    during = monitor.diagnose()
    assert "guard_cut_at" not in during.evidence
    assert "measuring a new rate right now" in during.explanation
    guard.interventions.append(record(54, "probe", 0.3, 0.011))
    guard.probing = False
    for i in range(40, 54):
        monitor.update(1.5, lr=float(ramp[i - 4]))
    for i in range(54, 300):
        monitor.update(0.2 + 1.8 * np.exp(-(i - 54) / 30.0), lr=0.011)
    after = monitor.close()
    assert after.evidence["guard_cut_at"] == 54
    assert after.suggested_lr == pytest.approx(0.011 * after.lr_factor)
    assert "diagnosis is of the steps since then" in after.explanation


def test_the_log_of_a_monitor_told_of_a_guard_reads_back_to_its_verdict(tmp_path):
    # lrkit diagnose run.jsonl said "unstable x0.1" where the monitor had said "healthy, keep":
    # the file held the blow-up before the guard's cut and the probe's undone steps
    from types import SimpleNamespace

    from lrkit.diagnose.guard import Intervention

    cut = Intervention(step=60, reason="probe", loss=9.0, reference=1.0, grad_norm=None,
                       lr_before=[0.3], lr_after=[0.011], restored_to=0)
    guard = SimpleNamespace(interventions=[cut], probing=False)
    path = tmp_path / "run.jsonl"
    monitor = lrkit.Monitor(report_every=0, guard=guard, log_file=path)
    rng = np.random.default_rng(0)
    for i in range(60):  # a blow-up and a probe's ramp
        monitor.update(float(2.0 * np.exp(rng.normal(0, 1.0))), lr=0.3)
    for i in range(300):
        monitor.update(0.2 + 1.8 * np.exp(-i / 30.0), lr=0.011)
    said = monitor.close()
    log = read_log(path)
    assert log.steps[0] == 60 and "the guard's last cut" in log.source
    read_back = log.diagnose()
    assert read_back.verdict == said.verdict == "healthy"


def test_a_batch_the_guard_rolled_back_at_the_same_rate_is_left_out(tmp_path):
    # one corrupt sample: the guard rolls back at the same rate, and its monitor said
    # "unstable, x0.3: 1 non-finite loss, then it recovered" for that batch (code review)
    from lrkit.adapters.torch import cycle_batches

    problem = examples.build("digits-mlp", seed=0, lr=0.01)
    guard = lrkit.Guard(problem.model, problem.optimizer)
    monitor = lrkit.Monitor(guard=guard, report_every=0, log_file=tmp_path / "run.jsonl")
    batches = cycle_batches(problem.train_loader)
    torch.manual_seed(0)
    for step in range(400):
        x, y = next(batches)
        if step == 200:
            x = x.clone()
            x[0, 0] = float("nan")

        def closure():
            problem.optimizer.zero_grad()
            loss = problem.criterion(problem.model(x), y)
            loss.backward()
            return loss

        monitor.update(guard.step(closure), lr=problem.optimizer.param_groups[0]["lr"])
    assert [i.reason for i in guard.interventions] == ["nonfinite_loss_rolled_back"]
    result = monitor.close()
    assert result.verdict == "healthy" and result.evidence["guard_rolled_back_at"] == [200]
    log = read_log(tmp_path / "run.jsonl")  # the file reads the same
    assert 200 not in log.steps and len(log.losses) == 399
    assert log.diagnose().verdict == "healthy"


def test_tensor_losses_with_no_report_until_the_end_are_stacked_as_they_come():
    """A run with report_every=0 held one tensor object per step until close() (570 bytes a
    step); they are stacked every PENDING_CHUNK steps, where they are, and read once."""
    from lrkit.diagnose.monitor import PENDING_CHUNK

    monitor = lrkit.Monitor(report_every=0)
    values = np.random.default_rng(0).random(2 * PENDING_CHUNK + 5)
    for i, v in enumerate(values):
        monitor.update(torch.tensor(v, dtype=torch.float64) if i % 3 else float(v))
    assert len(monitor._pending) < PENDING_CHUNK
    assert monitor.losses == values.tolist()  # order and float64 values kept
    monitor = lrkit.Monitor(report_every=0)
    for v in values:
        monitor.update(torch.tensor(v, dtype=torch.float64))
    assert len(monitor._chunks) == 2 and len(monitor._pending) == 5
    assert monitor.losses == values.tolist()


def test_the_monitors_history_is_an_array_read_without_copying_the_run_again():
    """A report converted the whole run's Python floats (O(steps) each: quadratic over a run);
    the history now moves into an array as it is read, and a report reads a view of it."""
    from lrkit.diagnose.monitor import _Series

    series = _Series()
    for i in range(3000):
        series.tail.append(float(i))
        if i % 700 == 0:
            assert series.view(i).tolist() == [float(i)]  # what was appended, moved once
    series.extend(np.arange(3000, 3100, dtype=float))
    assert len(series) == 3100 and series.view().tolist() == [float(i) for i in range(3100)]
    assert series.view(10, 13).tolist() == [10.0, 11.0, 12.0] and series.tail == []


def test_lone_nan_batches_in_a_binned_history_are_not_read_as_a_share_of_the_bins():
    # one NaN batch in 150 over 20,000 steps: each made its whole bin NaN, 13% of the bins, and
    # the report said "diverged, non-finite at step 100 (13% of the steps)"
    rng = np.random.default_rng(1)
    steps = np.arange(20000)
    losses = (0.3 + 2.0 * np.exp(-steps / 3000)) * np.exp(rng.normal(0, 0.1, len(steps)))
    losses[100::150] = np.nan
    monitor = lrkit.Monitor(report_every=0)
    for value in losses:
        monitor.update(float(value), lr=0.01)
    result = monitor.close()
    assert result.verdict != "diverged"
    assert result.evidence["nonfinite_steps"] == 133 and result.evidence["first_nonfinite_step"] == 100
    assert result.evidence["steps_per_point"] == 20
    assert "133 step(s) had a non-finite loss" in result.explanation


def test_a_binned_history_that_blows_up_is_still_diverged():
    losses = list(_healthy(15000)) + [math.nan] * 5000
    monitor = lrkit.Monitor(report_every=0)
    for value in losses:
        monitor.update(value, lr=0.01)
    result = monitor.close()
    assert result.verdict == "diverged"
    assert result.evidence["nonfinite_steps"] == 5000


def test_a_loss_tensor_the_loop_reuses_is_recorded_as_it_was_at_each_step():
    # gradient accumulation's running loss, zeroed after each step: kept by reference, every
    # recorded loss read 0.0 at report time ("the loss never changed")
    monitor = lrkit.Monitor(report_every=0)
    running = torch.zeros(())
    truth = []
    for step in range(200):
        running += 2.0 * math.exp(-step / 50) + 0.1
        truth.append(running.item())
        monitor.update(running, lr=0.01)
        running.zero_()
    result = monitor.close()
    assert monitor.losses == pytest.approx(truth)
    assert result.verdict != "not_enough_data"
