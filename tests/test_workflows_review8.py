"""End-to-end review of the workflows users chain across lrkit's parts (find -> recommend ->
build -> Guard + Monitor -> diagnose/report); each test here failed before its fix."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import lrkit
from lrkit.diagnose.guard import Intervention
from lrkit.diagnose.logs import read_log


def test_monitor_told_of_a_guard_names_the_rate_its_own_log_reads_back(tmp_path):
    # a recipe's warmup+cosine loop under Guard and Monitor(guard=guard): after the guard's cut,
    # spikes on the decay made the run unstable. The Monitor said "x0.3 -> 0.023" (x0.3 of the
    # peak since the cut) while its own explanation said "to about 0.0203" (x0.3 of the rate
    # where the trouble started) and `lrkit diagnose` on its JSONL log said 0.0203
    cut = Intervention(step=20, reason="probe", loss=9.0, reference=1.0, grad_norm=None,
                       lr_before=[1.0], lr_after=[0.05], restored_to=0)
    guard = SimpleNamespace(interventions=[cut], probing=False)
    path = tmp_path / "run.jsonl"
    monitor = lrkit.Monitor(report_every=0, guard=guard, log_file=path)
    rng = np.random.default_rng(0)
    for i in range(20):  # the rate that failed, before the cut
        monitor.update(float(2.0 * np.exp(rng.normal(0, 1.0))), lr=1.0)
    n = 300
    rates = 0.1 * (1 + np.cos(np.pi * np.arange(n) / n)) / 2  # cosine from the cut on
    for i in range(n):
        loss = 0.1 + 1.9 * np.exp(-i / 20.0) + 0.01 * rng.normal()
        if i in (150, 190, 230):  # spikes on the decay, at about half the peak rate
            loss = 2.5
        monitor.update(float(loss), lr=float(rates[i]))
    said = monitor.close()
    read_back = read_log(path).diagnose()
    assert said.verdict == read_back.verdict == "unstable"
    assert said.suggested_lr == pytest.approx(read_back.suggested_lr)
    assert said.suggested_lr < 0.3 * 0.1 * 0.9  # the rate at the first spike, not the peak's
    assert f"{said.suggested_lr:.3g}" in said.explanation.rpartition("The guard cut")[2]


def test_a_reused_range_test_counts_its_time_in_the_recipes_tuning_cost():
    # its steps counted in the cost, its time did not: "tuning 89 steps (30%), 0.0 s"
    import lrkit

    problem = lrkit.examples.build("wine-logreg", seed=0)
    result = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                           problem.criterion, num_steps=40, progress=False)
    assert result.seconds > 0
    recipe = lrkit.recommend(problem, steps=300, finder=result, confirm=False, progress=False)
    assert recipe.evidence["cost"]["seconds"] >= result.seconds
