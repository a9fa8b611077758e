"""A review of diagnose on runs shaped like users' runs: decaying schedules (cosine, step,
one-cycle, warmup-stable-decay) and a rebound read at the last point of a flat, noisy curve.

The runs are real, short trainings of the built-in examples (one thread, a second or two in all),
labelled by their outcome against a grid of peak rates (benchmarks/diagnose_accuracy.py's rule):
digits-mlp at a peak of 0.0032 gets 58-60% of the best run's improvement (too low), hastie-mlp
under WSD at 0.01 is the best of its grid, logreg at 0.316 is a healthy run of the benchmark.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lrkit
from lrkit import examples
from lrkit.schedules import cosine, multistep, warmup, wsd
from lrkit.training import train


def _run(name, peak, schedule, steps=400, seed=0):
    torch.set_num_threads(1)
    problem = examples.build(name, seed=seed, lr=peak)
    return train(problem, lr=lambda t: peak * float(schedule(t)), steps=steps, seed=seed,
                 eval_every=steps // 10)


@pytest.fixture(scope="module")
def slow_cosine():
    return _run("digits-mlp", 0.0032, warmup(20) >> cosine(380))


def test_a_too_low_peak_under_cosine_is_too_slow_not_healthy(slow_cosine):
    # the loss flattens at the end because the rate decays to 0, not because it converged: at
    # its peak rate it was still falling steadily (it read "healthy, keep", x1)
    run = slow_cosine
    d = lrkit.diagnose(run.losses, run.lrs, val_losses=run.val_curve)
    assert d.verdict == "too_slow" and d.lr_factor == 3.0
    assert d.suggested_lr == pytest.approx(3 * 0.0032)  # the peak times 3, not the last rate
    assert "while the rate was at 70% of its peak" in d.reasons[0]
    assert d.evidence["peak_stretch_end"] == 160
    assert lrkit.diagnose(run.losses, run.lrs).verdict == "too_slow"  # training losses alone
    # without the rates there is no schedule to read: the curve alone looks settled
    assert lrkit.diagnose(run.losses, val_losses=run.val_curve).verdict == "healthy"
    # the Monitor passes the rates, and says the same
    monitor = lrkit.Monitor(report_every=0, logger=False)
    for loss, lr in zip(run.losses, run.lrs):
        monitor.update(loss, lr=lr)
    monitor.close()
    assert monitor.last.verdict == "too_slow"


def test_a_good_peak_under_cosine_and_step_decay_keeps_its_verdicts(slow_cosine):
    good = _run("digits-mlp", 0.1, warmup(20) >> cosine(380))
    d = lrkit.diagnose(good.losses, good.lrs, val_losses=good.val_curve)
    assert d.verdict == "healthy" and "peak_stretch_still_falling" not in d.evidence
    slow = _run("digits-mlp", 0.0032, multistep([200, 300]))
    d = lrkit.diagnose(slow.losses, slow.lrs, val_losses=slow.val_curve)
    assert d.verdict == "too_slow"  # x0.1 at 50% and 75%: it read "healthy"
    assert d.evidence["peak_stretch_end"] == 199


def test_the_fall_a_wsd_decay_brings_is_no_sign_of_a_slow_rate():
    # warmup-stable-decay at the best peak of its grid: flat through the stable phase, then the
    # decay drops the loss (annealing); "the last 30% made 15% of the improvement" read too_slow
    run = _run("hastie-mlp", 0.01, wsd(400, 80, warmup=20))
    d = lrkit.diagnose(run.losses, run.lrs, val_losses=run.val_curve)
    assert d.verdict == "healthy" and d.lr_factor == 1.0
    assert "late fall came as the schedule lowered the rate" in d.reasons[0]
    assert d.evidence["peak_stretch_still_falling"] is False


def test_the_schedule_rule_on_a_log_written_every_10_steps_with_plain_validation_numbers():
    # a too-low rate under a cosine: loss = 2.3 exp(-progress), progress proportional to the
    # rate summed so far, logged as 10-step means; the validation curve as 10 plain numbers
    rng = np.random.default_rng(0)
    schedule = warmup(100) >> cosine(1900)
    rates = np.array([3e-3 * float(schedule(t)) for t in range(2000)])
    done = np.cumsum(rates) / rates.sum()
    losses = 2.3 * np.exp(-1.2 * done) * np.exp(rng.normal(0, 0.05, 2000))
    logged = losses.reshape(200, 10).mean(axis=1)
    steps = np.arange(200) * 10 + 9
    val = list(2.3 * np.exp(-1.2 * done[199::200]) * 1.02)
    d = lrkit.diagnose(logged, rates[steps], val_losses=val, steps=steps)
    assert d.verdict == "too_slow"
    assert d.evidence["peak_stretch_end"] % 10 == 9  # named by the log's own steps
    # the same curve with one constant rate: no schedule, the verdict as before
    assert lrkit.diagnose(logged, 3e-3, val_losses=val).verdict == lrkit.diagnose(
        logged, val_losses=val).verdict


def test_a_rebound_at_the_last_point_is_weighed_against_the_edge_window_noise():
    # logreg at 0.316 (a healthy run of benchmarks/diagnose_accuracy.py, seed 0): the coarse
    # median's window is half as wide at the last point, and its wander there read "bounced back
    # up by 35% of its progress (at step 399)", unstable x0.3; a cosine to 0 the same
    torch.set_num_threads(1)
    problem = examples.build("logreg", seed=0, lr=0.316)
    run = train(problem, lr=0.316, steps=400, seed=0, eval_every=40)
    d = lrkit.diagnose(run.losses, run.lrs, val_losses=run.val_curve)
    assert d.verdict == "healthy"
    assert d.evidence["rebound_at"] == 399
    assert d.evidence["rebound_noise"] == pytest.approx(
        d.evidence["coarse_noise"] * np.sqrt(41 / 21))
    decayed = _run("logreg", 0.316, warmup(20) >> cosine(380))
    assert lrkit.diagnose(decayed.losses, decayed.lrs).verdict == "healthy"
