"""From a review of bad input: values of the wrong kind that were taken silently (a string rate,
a string loss, a fractional step, a truthy string for a flag, a negative seed)."""
import pytest
import torch
from torch import nn

import lrkit
from lrkit.errors import LrkitError


def test_train_refuses_a_string_rate_and_takes_a_tensor_one():
    problem = lrkit.examples.build("wine-logreg", seed=0)
    with pytest.raises(LrkitError, match="lr must be a finite number >= 0 .* got '0.1'"):
        lrkit.train(problem, lr="0.1", steps=5)
    run = lrkit.train(lrkit.examples.build("wine-logreg", seed=0), lr=torch.tensor(0.1), steps=5)
    assert len(run.losses) == 5


def test_the_guard_refuses_a_string_loss():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    guard = lrkit.Guard(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(LrkitError, match="returned str '1.0'"):
        guard.step(lambda: "1.0")


def test_monitor_refuses_a_fractional_or_text_step_and_a_bool_interval():
    monitor = lrkit.Monitor(report_every=0, logger=False)
    for i in range(5):
        monitor.update(2.0 - i * 0.1)
    for step in (2.7, "3"):
        with pytest.raises(LrkitError, match="give the step as a whole number"):
            monitor.update_val(1.0, step=step)
    monitor.update_val(1.0, step=3)
    with pytest.raises(LrkitError, match="report_every must be an integer"):
        lrkit.Monitor(report_every=True)


@pytest.mark.parametrize("options, fragment", [
    (dict(confirm="no"), "confirm must be True or False"),
    (dict(seed=-1), r"seed must be an integer from 0 to 2\*\*32 - 1"),
])
def test_recommend_refuses_a_string_flag_and_a_negative_seed(options, fragment):
    with pytest.raises(LrkitError, match=fragment):
        lrkit.recommend("wine-logreg", steps=100, **options)


def test_what_the_checks_of_this_review_still_take():
    # (a review of the change: each was refused by the first version of the checks)
    import numpy as np

    monitor = lrkit.Monitor(report_every=0, logger=False)
    for i in range(8):
        monitor.update(2.0 - i * 0.1)
    monitor.update_val(1.0, step=5.0)  # a whole number written as a float
    monitor.update_val(1.0, step=np.int64(6))

    for confirm in (np.bool_(False), 0, 1, True):
        recipe = lrkit.recommend("wine-logreg", steps=60, confirm=confirm, progress=False)
        assert recipe.peak_lr > 0


def test_a_log_with_a_nan_rate_cell_reads_it_as_not_logged(tmp_path):
    from lrkit.diagnose.logs import read_log

    path = tmp_path / "log.csv"
    path.write_text("step,loss,lr\n" + "".join(
        f"{i},{2.5 - i / 100},{'nan' if i == 3 else 0.1}\n" for i in range(40)))
    log = read_log(path)
    assert len(log.losses) == 40
