"""Sweep defects found in a review of its storage, search space and results: a file that is not
a journal was cut short by a read, a killed sweep's report blamed the rates, the same optimizer
spelled otherwise was refused, and hand-made inputs failed deep inside."""
import os

import pytest

import lrkit
from lrkit.errors import LrkitError
from lrkit.sweep import load
from lrkit.sweep.results import SweepResult, TrialRecord
from lrkit.sweep.space import RateSpace, parse_optimizers, parse_rates


@pytest.mark.parametrize("content", [b"SQLite format 3\x00" + bytes(range(256)) * 40 + b"\ntail",
                                     b"my notes\nlast line without newline"])
def test_a_file_that_is_not_a_journal_is_refused_untouched(tmp_path, content):
    path = tmp_path / "not_a_journal.db"
    path.write_bytes(content)
    with pytest.raises(LrkitError, match="not an Optuna journal file"):
        load(str(path), "some-study")  # a read (lrkit sweep --report)
    with pytest.raises(LrkitError, match="not an Optuna journal file"):
        lrkit.sweep("logreg", lrs="0.1", budget=10, storage=str(path), progress=False)
    assert path.read_bytes() == content  # the torn-line repair cut it at its last newline
    assert sorted(os.listdir(tmp_path)) == ["not_a_journal.db"]  # no lock file beside it


def _record(number, status, loss=None, lr=0.1):
    return TrialRecord(number=number, optimizer="sgd", lr=lr, seed=0, status=status, loss=loss)


def test_a_sweep_cut_off_in_its_first_trial_is_reported_unfinished_not_diverged():
    summary = SweepResult([_record(0, "running")], settings={}).summary()
    assert "lower the range" not in summary  # "every rate diverged or failed"
    assert "not finished" in summary and "run the same command again" in summary
    partial = SweepResult([_record(0, "finished", 0.5), _record(1, "running", lr=1.0)],
                          settings={}).summary()
    assert "best: lr=0.1" in partial and "not finished" in partial
    diverged = SweepResult([_record(0, "diverged")], settings={}).summary()
    assert "lower the range" in diverged and "not finished" not in diverged


def test_the_same_optimizer_spelled_otherwise_resumes_the_study(tmp_path):
    storage = str(tmp_path / "s.journal")
    first = lrkit.sweep("logreg", lrs="0.1", optimizers="NAdam", budget=10, storage=storage,
                        progress=False)
    again = lrkit.sweep("logreg", lrs="0.1", optimizers="nadam", budget=10, storage=storage,
                        progress=False)  # refused: "optimizer_labels: stored ['NAdam']"
    assert again.best.loss == first.best.loss


def test_a_settings_message_names_the_rates_that_differ():
    from lrkit.sweep.config import setting_differences

    def rates(*values):
        return {"rates": {"values": [str(v) for v in values], "kind": "list"}}

    (line,) = setting_differences(rates(0.001, 0.01, 0.1), rates(0.001, 0.03, 0.1))
    assert "only here: 0.01" in line and "only here: 0.03" in line


@pytest.mark.parametrize("space", [RateSpace((-0.1, 0.1), "list"),
                                   RateSpace((0.1, float("nan")), "list"),
                                   RateSpace((1.0, 0.1, 0.01), "list"), RateSpace((), "list")])
def test_a_hand_made_rate_space_is_checked(space):
    with pytest.raises(LrkitError):
        parse_rates(space)


def test_a_rate_space_and_another_points_per_decade_are_refused():
    space = parse_rates("1e-3:1")
    assert parse_rates(space) is space
    with pytest.raises(LrkitError, match="give it once"):
        parse_rates(space, 16)


@pytest.mark.parametrize("spec, match", [("adam(betas={[0.9]: 0.99})", "Python literal"),
                                         ("sgd(momentum=0.9, momentum=0)", "twice")])
def test_bad_optimizer_specs_get_a_clear_error(spec, match):
    with pytest.raises(LrkitError, match=match):
        parse_optimizers(spec)


def test_a_result_checks_its_band_tolerance_and_leaves_the_callers_records_alone():
    records = [_record(0, "finished", 0.5)]
    records[0].diagnosis = "healthy"
    SweepResult(records, settings={}, diagnose=False)
    assert records[0].diagnosis == "healthy"  # cleared in the caller's records
    for bad in (-1, float("nan"), "5%"):
        with pytest.raises(LrkitError, match="band_tolerance"):
            SweepResult(records, settings={}, band_tolerance=bad)


@pytest.mark.parametrize("spec", ["adam,adam(weight_decay=0)",
                                  "sgd(momentum=0.9),sgd(momentum=0.9, nesterov=False)"])
def test_an_optimizer_given_again_with_its_class_defaults_is_a_duplicate(spec):
    # swept as two rows with identical losses
    with pytest.raises(LrkitError, match="given twice"):
        parse_optimizers(spec)
    assert len(parse_optimizers("adam,adam(weight_decay=0.1)")) == 2


def test_a_retry_running_after_a_failure_is_reported_unfinished():
    summary = SweepResult([_record(0, "failed"), _record(1, "running")], settings={}).summary()
    assert "not finished" in summary  # completed() ranks the failure first


def test_a_rate_space_of_a_numpy_array_and_its_points_per_decade():
    import numpy as np

    space = parse_rates(RateSpace(np.array([1e-3, 1e-2, 1e-1]), "list"))
    assert space.values == (1e-3, 1e-2, 1e-1)
    with pytest.raises(LrkitError, match="points_per_decade"):
        parse_rates(RateSpace((1e-3, 1e-2, 1e-1), "range", -4))


def test_a_rate_space_takes_a_numpy_integer_points_per_decade():
    import numpy as np

    space = parse_rates(RateSpace((1e-3, 1e-2, 1e-1), "range", np.int64(1)))
    assert space.points_per_decade == 1 and type(space.points_per_decade) is int
