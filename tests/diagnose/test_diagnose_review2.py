"""Defects found in a review of the diagnosis, the Monitor and the log readers."""
import json
import math
import warnings

import numpy as np
import pytest
import torch

import lrkit
from lrkit.diagnose import diagnose
from lrkit.diagnose.logs import read_log
from lrkit.diagnose.synthetic import curve
from lrkit.errors import LrkitError


def _healthy(n=200):
    return 2.3 * np.exp(-np.linspace(0, 1, n) / 0.1) + 0.1


@pytest.mark.parametrize("family", ["too_slow", "unstable", "diverged", "plateaued"])
def test_a_tiny_loss_scale_is_judged_like_a_unit_one(family):
    # a fixed floor of 1e-12 flattened a loss of 1e-13 into "has not moved"
    rng = np.random.default_rng(3)
    for _ in range(3):
        c = curve(family, rng=rng)
        assert diagnose(c * 1e-20).verdict == diagnose(c).verdict
        assert diagnose(c * 1e-300).verdict == diagnose(c).verdict


def test_a_huge_loss_scale_warns_of_no_overflow():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert diagnose(_healthy() * 1e250).verdict == diagnose(_healthy()).verdict


def test_below_the_start_is_said_without_a_minus_sign():
    t = np.linspace(0, 1, 300)
    d = diagnose(2 * (1 - 0.2 * (1 - np.exp(-t / 0.05))))
    text = " ".join(d.reasons)
    assert "only 19% below" in text and "-19%" not in text


def test_a_negative_loss_is_not_described_by_ratios():
    # -1 -> 17: "blew up to 4.85e+08x its start" was exp() of a difference
    d = diagnose(-1 + np.linspace(0, 1, 200) ** 2 * 20)
    assert d.verdict == "diverged"
    assert "its start + " in d.reasons[0] and "e+08x" not in d.reasons[0]


def test_a_loss_that_reaches_zero_is_not_shown_below_zero():
    d = diagnose(np.maximum(0, 1 - np.linspace(0, 2, 200)))
    assert d.evidence["end"] == 0.0 and "e-18" not in str(d)


def test_val_losses_as_one_number_is_a_clear_error():
    with pytest.raises(LrkitError, match="val_losses must be a sequence"):
        diagnose(_healthy(), val_losses=1.0)


def test_val_pairs_are_read_in_the_order_of_their_steps():
    in_order = diagnose(_healthy(), val_losses=[(0, 1.0), (100, 0.3), (199, 0.1)])
    shuffled = diagnose(_healthy(), val_losses=[(199, 0.1), (0, 1.0), (100, 0.3)])
    assert shuffled.verdict == in_order.verdict == "healthy"
    as_array = diagnose(_healthy(), val_losses=np.array([[199, 0.1], [0, 1.0], [100, 0.3]]))
    assert as_array.evidence["val_best_step"] == 199 and as_array.verdict == "healthy"


@pytest.mark.parametrize("loss", [None, "abc", np.array([1.0, 2.0])])
def test_monitor_update_with_no_number_is_a_clear_error(loss):
    monitor = lrkit.Monitor()
    with pytest.raises(LrkitError, match="monitor.update needs the loss"):
        monitor.update(loss)
    with pytest.raises(LrkitError, match="monitor.update_val needs the"):
        monitor.update_val(loss if loss is not None else torch.ones(2))
    assert monitor.step == 0


@pytest.mark.parametrize("lr", [-0.1, math.inf])
def test_monitor_refuses_a_bad_rate_at_the_update(tmp_path, lr):
    # it was refused only at the next report (losing it), and inf wrote "Infinity" to the JSONL
    monitor = lrkit.Monitor(report_every=0, log_file=tmp_path / "run.jsonl")
    with pytest.raises(LrkitError, match="a rate is a finite number >= 0"):
        monitor.update(1.0, lr=lr)
    for v in _healthy(50):
        monitor.update(float(v), lr=math.nan)  # NaN: not known, as before
    assert monitor.close().verdict == "healthy"
    for line in (tmp_path / "run.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the JSONL"))


def test_monitor_update_after_close_is_an_error(tmp_path):
    monitor = lrkit.Monitor(log_file=tmp_path / "run.jsonl")
    monitor.update(1.0)
    monitor.close()
    with pytest.raises(LrkitError, match="after monitor.close"):
        monitor.update(0.5)
    assert monitor.step == 1


@pytest.mark.parametrize("name,sep", [("log.tsv", "\t"), ("log.csv", ";"), ("log.txt", "\t")])
def test_tab_and_semicolon_separated_logs_are_read(tmp_path, name, sep):
    path = tmp_path / name
    path.write_text(f"step{sep}loss\n" + "".join(f"{i}{sep}{v}\n" for i, v in
                                                 enumerate(_healthy())))
    log = read_log(path)
    assert len(log.losses) == 200 and log.diagnose().verdict == "healthy"


def test_an_unreadable_log_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "run.csv"
    path.write_text("step,loss\n0,1\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("lrkit.diagnose.logs.open", refuse, raising=False)
    with pytest.raises(LrkitError, match="cannot read the loss log .*Permission denied"):
        read_log(path)


def test_a_log_names_its_own_steps(tmp_path):
    # a log written every 50 steps said "spikes (steps 120, 150, 170)": the rows, not the steps
    values = list(math.exp(-i / 40) + 0.05 for i in range(200))
    values[120], values[150], values[170] = 2.0, 2.0, 2.5
    path = tmp_path / "run.csv"
    path.write_text("step,loss,lr\n" + "".join(f"{50 * i},{v},0.1\n"
                                               for i, v in enumerate(values)))
    d = read_log(path).diagnose()
    assert d.verdict == "unstable" and d.evidence["spike_steps"] == [6000, 7500, 8500]
    assert "step 6000" in d.explanation and d.suggested_lr == pytest.approx(0.01)


def test_a_monitor_over_max_points_names_steps_not_bins():
    monitor = lrkit.Monitor(report_every=0, max_points=100)
    values = 2.3 * np.exp(-np.linspace(0, 1, 1000) / 0.1) + 0.1
    values[700:] = values[699] * 5  # it jumped at step 700, and its best was just before
    for v in values:
        monitor.update(float(v), lr=0.1)
    d = monitor.close()
    assert d.verdict == "unstable" and 600 <= d.evidence["best_at"] < 700  # was bin 6x
    with pytest.raises(LrkitError, match="steps has 3 values"):
        diagnose(_healthy(), steps=[0, 1, 2])


def test_step_numbers_must_be_finite():
    # steps=[nan] * n printed "step nan" in the reasons
    with pytest.raises(LrkitError, match=r"steps\[0\] = nan: step numbers must be finite"):
        diagnose(np.linspace(2, 1, 50), steps=[float("nan")] * 50)


def test_a_healthy_run_whose_rates_already_decay_is_not_told_to_decay():
    t = np.arange(400)
    losses = 0.2 + 1.8 * np.exp(-t / 40.0)
    cosine = 0.01 * 0.5 * (1 + np.cos(np.pi * t / 400))
    d = diagnose(losses, lrs=cosine)
    assert d.verdict == "healthy"
    assert "decaying the rate" not in d.explanation and "already decay" in d.explanation
    constant = diagnose(losses, lrs=0.01)
    assert "decaying the rate" in constant.explanation
