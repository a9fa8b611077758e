"""An adversarial-input review of diagnose, Monitor and the log readers: steps out of order,
validation points outside the run, rates missing on some steps, values that are no losses."""
import math

import numpy as np
import pytest
import torch

import lrkit
from lrkit.cli import main
from lrkit.diagnose import diagnose
from lrkit.errors import LrkitError


def _healthy(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return 2.0 * np.exp(-np.arange(n) / 40) + 0.1 + 0.01 * rng.standard_normal(n)


def test_steps_out_of_order_read_as_the_dict_of_the_same_pairs():
    """A log appended out of order: steps= in reverse was read backwards ("diverged x0.1")."""
    losses, steps = _healthy(), list(range(0, 2000, 10))
    forward = diagnose(dict(zip(steps, losses)))
    backward = diagnose(list(losses[::-1]), steps=steps[::-1], lrs=list(np.full(200, 0.1)))
    assert forward.verdict == backward.verdict == "healthy"


def test_steps_going_back_to_a_step_seen_are_two_runs():
    losses = np.concatenate([_healthy(100), _healthy(100, seed=1)])
    steps = list(range(100)) + list(range(100))
    with pytest.raises(LrkitError, match="go back to step 0 at position 100.*two runs"):
        diagnose(losses, steps=steps)
    # several losses at one step in a row (micro-batches under accumulation) are kept
    repeated = [i // 2 for i in range(200)]
    assert diagnose(_healthy(), steps=repeated).verdict == "healthy"


def test_validation_points_outside_the_training_steps_are_refused():
    """20 training steps given a validation curve to step 199 were called healthy, "bending
    over", from the validation curve's shape."""
    train = list(_healthy(20))
    val = [(s, float(v)) for s, v in zip(range(0, 200, 10), _healthy(20, seed=2))]
    with pytest.raises(LrkitError, match="val_losses has a point at step 30, outside the "
                                         "training losses' steps 0..19"):
        diagnose(train, val_losses=val)
    with pytest.raises(LrkitError, match="outside"):
        diagnose(train, val_losses=[(-50, 1.0), (10, 0.9)])
    # one logging interval past the end (an evaluation after the last step) is the same run
    assert diagnose(train, val_losses=[(10, 1.0), (20, 0.9)]).verdict != "not_enough_data"
    logged = dict(zip(range(0, 2000, 10), _healthy()))
    assert diagnose(logged, val_losses=[(1000, 0.5), (2000, 0.3)]).verdict == "healthy"


@pytest.mark.parametrize("values", [
    np.array([1.0 + 1j] * 20), [True, False] * 10, torch.ones(20, dtype=torch.bool),
    [1.0] * 10 + [torch.tensor(1 + 1j)] * 10,
])
def test_values_that_are_no_losses_are_refused(values):
    with pytest.raises(LrkitError, match="pass real numbers"):
        diagnose(values)


def test_a_rate_tensor_that_requires_grad_gives_no_warning(recwarn):
    diagnose(list(_healthy()), lrs=torch.tensor(0.1, requires_grad=True))
    monitor = lrkit.Monitor(report_every=0)
    monitor.update(1.0, lr=torch.tensor(0.1, requires_grad=True))
    assert not [w for w in recwarn if "requires_grad" in str(w.message)]


def test_a_monitor_step_without_a_rate_keeps_the_others(tmp_path):
    """One step with lr=None (or NaN) dropped every rate: the Monitor named no rate where a
    diagnosis of its own log file named 0.1."""
    monitor = lrkit.Monitor(report_every=0, log_file=tmp_path / "run.jsonl")
    for i, value in enumerate(_healthy(100)):
        monitor.update(float(value), lr=None if i in (0, 50) else (math.nan if i == 60 else 0.1))
    result = monitor.close()
    assert result.suggested_lr == pytest.approx(0.1)
    assert lrkit.diagnose.read_log(tmp_path / "run.jsonl").diagnose().suggested_lr \
        == pytest.approx(0.1)


@pytest.mark.parametrize("lr", ["0.1", b"0.1"])
def test_a_monitor_refuses_a_rate_given_as_text(lr):
    with pytest.raises(LrkitError, match="rate as a number"):
        lrkit.Monitor().update(1.0, lr=lr)


def test_a_monitor_refuses_an_on_report_that_cannot_be_called():
    with pytest.raises(LrkitError, match="on_report must be a function"):
        lrkit.Monitor(on_report=5)


def test_a_csv_log_written_twice_from_step_0_is_read_as_its_last_run(tmp_path, capsys):
    first, second = _healthy(100, seed=1) * 3, _healthy(100)
    rows = ["step,loss,lr"] + [f"{i},{v},0.1" for i, v in enumerate(first)] \
        + [f"{i},{v},0.1" for i, v in enumerate(second)]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    log = lrkit.diagnose.read_log(path)
    assert log.losses == pytest.approx(list(second))
    assert "logged again (a restart)" in log.source
    # a run resumed from a checkpoint at step 60: its rows from 60 on replace the first's
    resumed = ["step,loss"] + [f"{i},{v}" for i, v in enumerate(first)] \
        + [f"{i},{v}" for i, v in zip(range(60, 100), second[60:])]
    path.write_text("\n".join(resumed) + "\n")
    log = lrkit.diagnose.read_log(path)
    assert log.steps == list(map(float, range(100)))
    assert log.losses == pytest.approx(list(first[:60]) + list(second[60:]))
    assert main(["diagnose", str(path)]) == 0
    assert "a restart" in capsys.readouterr().out


def _model_and_optimizer():
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


@pytest.mark.parametrize("options,message", [
    ({"scheduler": 5}, "scheduler must be the torch scheduler"),
    ({"scheduler": "cosine(100)"}, "scheduler must be the torch scheduler"),
    ({"min_confidence": 2}, "min_confidence must be between 0 and 1"),
    ({"min_confidence": -1}, "min_confidence must be between 0 and 1"),
    ({"min_lr_scale": 0}, r"min_lr_scale must be in \(0, 1\]"),
    ({"min_lr_scale": 2}, r"min_lr_scale must be in \(0, 1\]"),
])
def test_the_guard_checks_its_options(options, message):
    """They were accepted: a scheduler string was ignored, min_confidence=2 turned the
    diagnosis's cuts off, min_lr_scale=2 failed at the second incident."""
    model, optimizer = _model_and_optimizer()
    with pytest.raises(LrkitError, match=message):
        lrkit.Guard(model, optimizer, **options)


def test_the_guard_takes_a_scheduler_of_its_own_optimizer_only():
    model, optimizer = _model_and_optimizer()
    other = torch.optim.SGD(torch.nn.Linear(3, 1).parameters(), lr=0.1)
    with pytest.raises(LrkitError, match="built on the same optimizer"):
        lrkit.Guard(model, optimizer,
                    scheduler=torch.optim.lr_scheduler.StepLR(other, step_size=10))
    from lrkit.schedules import parse, to_torch
    for scheduler in (torch.optim.lr_scheduler.StepLR(optimizer, step_size=10),
                      torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer),
                      to_torch(optimizer, parse("cosine(100)"))):
        assert lrkit.Guard(model, optimizer, scheduler=scheduler).scheduler is scheduler
    lrkit.Guard(model, optimizer, min_confidence=np.float32(0.5), min_lr_scale=np.float64(0.1))


def test_a_guard_step_without_a_closure_says_so():
    model, optimizer = _model_and_optimizer()
    with pytest.raises(LrkitError, match="guard.step needs the closure"):
        lrkit.Guard(model, optimizer).step(None)


def _write_jsonl(path, losses):
    import json
    path.write_text("".join(json.dumps({"step": i, "loss": v, "lr": 0.1}) + "\n"
                            for i, v in enumerate(losses)))


def test_null_losses_in_jsonl_are_left_out_inside_and_nan_at_the_end(tmp_path):
    """JSON has no NaN, and strict writers write it as null: a run whose losses turn null for
    good diverged; a null with real losses after it is a step without a loss, left out, and
    both are said (one was dropped silently, a divergence vanished)."""
    losses = [float(v) for v in _healthy(100)]
    inner = losses[:50] + [None] + losses[51:]
    _write_jsonl(tmp_path / "inner.jsonl", inner)
    log = lrkit.diagnose.read_log(tmp_path / "inner.jsonl")
    assert len(log.losses) == 99 and 50.0 not in log.steps
    assert "1 null loss(es) with losses after them left out (line 51)" in log.source
    _write_jsonl(tmp_path / "tail.jsonl", losses[:80] + [None] * 20)
    log = lrkit.diagnose.read_log(tmp_path / "tail.jsonl")
    assert len(log.losses) == 100 and all(math.isnan(v) for v in log.losses[80:])
    assert "20 null loss(es) at the end read as NaN" in log.source
    assert log.diagnose().verdict == "diverged"


@pytest.mark.parametrize("args,message", [
    (["--tag", "step"], "holds the step numbers, not the training loss"),
    (["--tag", "lr"], "holds the learning rate, not the training loss"),
    (["--steps", "10"], "--steps sets the length of --example's training runs"),
])
def test_the_cli_refuses_flags_that_do_not_fit_a_log_file(tmp_path, capsys, args, message):
    path = tmp_path / "log.csv"
    path.write_text("step,loss,lr\n" + "".join(f"{i},{v},0.1\n"
                                                for i, v in enumerate(_healthy(100))))
    assert main(["diagnose", str(path), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_a_compressed_log_is_named_as_such(tmp_path, capsys, suffix):
    import gzip
    path = tmp_path / f"log.{suffix}.gz"
    path.write_bytes(gzip.compress(b"step,loss\n0,1.0\n"))
    assert main(["diagnose", str(path)]) == 2
    assert "is gzip-compressed" in capsys.readouterr().err


def test_a_log_resumed_many_times_keeps_each_steps_last_row(tmp_path):
    """A run preempted every 100 steps and resumed 30 steps back, 60 times: each step's loss is
    the one logged last (the reader cut at every restart: minutes for 1,000 restarts)."""
    rows, last, step, done = ["step,loss"], {}, 0, 0
    while step < 3000:
        value = 1.0 + step / 1000 + done * 1e-6  # which row of a step it was, in the value
        rows.append(f"{step},{value!r}")
        last[step] = value
        step, done = step + 1, done + 1
        if done % 100 == 0:
            step -= 30
    path = tmp_path / "resumed.csv"
    path.write_text("\n".join(rows) + "\n")
    log = lrkit.diagnose.read_log(path)
    assert log.steps == [float(s) for s in range(3000)]
    assert log.losses == [last[s] for s in range(3000)]
    assert "restarts)" in log.source


def test_a_pandas_style_log_with_null_metric_columns_is_not_diverged(tmp_path):
    """pandas writes every column on every row, null where the row logged none: Lightning's
    epoch rows (train_loss_epoch set, train_loss_step null) at the last step read as a NaN
    divergence ("diverged x0.1" for a healthy run; a code review)."""
    import json
    lines, step = [], 0
    losses = _healthy(300)
    for epoch in range(3):
        for _ in range(100):
            lines.append({"step": step, "epoch": epoch, "train_loss_step": float(losses[step]),
                          "val_loss": None, "train_loss_epoch": None})
            step += 1
        lines.append({"step": step - 1, "epoch": epoch, "train_loss_step": None,
                      "val_loss": 0.5, "train_loss_epoch": None})
        lines.append({"step": step - 1, "epoch": epoch, "train_loss_step": None,
                      "val_loss": None, "train_loss_epoch": 0.4})
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    log = lrkit.diagnose.read_log(path)
    assert len(log.losses) == 300 and "null" not in log.source
    assert log.diagnose().verdict == "healthy"


@pytest.mark.parametrize("steps", [1500, 3100])
def test_a_monitors_validation_at_the_end_fits_its_binned_history(steps):
    """Past max_points the history is in bins whose last starts before the last step: a
    validation loss at the end was refused as outside the run (a code review)."""
    monitor = lrkit.Monitor(report_every=0)
    for value in _healthy(steps):
        monitor.update(float(value), lr=0.1)
    monitor.update_val(0.3)
    assert monitor.close().verdict == "healthy"
    with pytest.raises(LrkitError, match="step=5000.*0..0"):
        lrkit.Monitor().update_val(0.3, step=5000)


def test_a_guard_rollback_keeps_the_groups_current_objects_and_values():
    """Tensor betas annealed in place after the snapshot: a rollback puts the current values
    back in the same objects (the snapshot's restore refills the objects it saw)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    b1 = torch.tensor(0.9)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(b1, torch.tensor(0.999)))
    guard = lrkit.Guard(model, optimizer, confirm_spikes=0)
    x, y = torch.randn(8, 3), torch.randn(8, 1)

    def closure(scale=1.0):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y) * scale
        loss.backward()
        return loss

    for _ in range(30):
        guard.step(closure)
    b1.fill_(0.5)  # the user anneals beta1 after the last snapshot
    guard.step(lambda: closure(float("nan")))
    assert guard.interventions and optimizer.param_groups[0]["betas"][0] is b1
    assert b1.item() == pytest.approx(0.5)


# -- real framework logs (a review that wrote them with Lightning, Transformers, TensorBoard) ----

#: a Trainer at rate 3 (3x too high, clipped): it learned for 50 steps, then went back to the
#: chance level (ln 10 = 2.303) for good; logged every 10 steps
_THROWN_BACK = [2.442, 2.44, 2.185, 2.131, 2.116, 2.245, 2.382, 2.308, 2.329, 2.336, 2.342,
                2.328, 2.358, 2.338, 2.329, 2.315, 2.334, 2.328, 2.343, 2.328, 2.337, 2.303,
                2.324, 2.333, 2.326, 2.331, 2.333, 2.333, 2.346, 2.359, 2.326, 2.341, 2.309,
                2.329, 2.334, 2.334, 2.344, 2.33, 2.337, 2.331, 2.328, 2.323, 2.334, 2.333]


def test_a_small_fall_undone_far_out_of_the_noise_is_a_rate_too_high():
    """It was "too_slow, x10 -> 30" ("the loss has not moved"): a rate too high that threw the
    model back to where it started."""
    d = diagnose(_THROWN_BACK, lrs=3.0)
    assert d.verdict == "unstable" and d.lr_factor < 1
    assert "bounced back up" in " ".join(d.reasons)
    # the same level without the fall is still a loss that has not moved
    assert diagnose(_THROWN_BACK[6:], lrs=3.0).verdict == "too_slow"


def test_a_monitors_validation_lines_come_after_its_tensor_losses(tmp_path):
    """Tensor losses wait on their device until a report, and update_val wrote its line before
    them: in a second run appended to the file, the validation lines of steps 40 and 80 came
    before step 0, and the reader took the step going back for a third run, losing them."""
    path = tmp_path / "run.jsonl"
    for seed in (0, 1):
        with lrkit.Monitor(report_every=100, log_file=path) as monitor:
            for i, value in enumerate(_healthy(200, seed=seed)):
                monitor.update(torch.tensor(float(value)), lr=0.1)
                if (i + 1) % 40 == 0:
                    monitor.update_val(float(value) + 0.1)
    log = lrkit.diagnose.read_log(path)
    assert "the last of 2 runs" in log.source
    assert len(log.losses) == 200 and [s for s, _ in log.val_losses] == [40, 80, 120, 160, 200]


def test_a_checkpoint_further_than_the_output_directorys_state_is_read(tmp_path):
    """A resumed Trainer run that saved checkpoints, not yet its final state: the output
    directory's own trainer_state.json (step 250) was read over checkpoint-440's."""
    import json

    def state(steps):
        history = [{"step": s, "loss": 2.0 * math.exp(-s / 200), "learning_rate": 0.1}
                   for s in range(10, steps + 1, 10)]
        return json.dumps({"global_step": steps, "log_history": history})

    (tmp_path / "trainer_state.json").write_text(state(250))
    for steps in (200, 440):
        (tmp_path / f"checkpoint-{steps}").mkdir()
        (tmp_path / f"checkpoint-{steps}" / "trainer_state.json").write_text(state(steps))
    log = lrkit.diagnose.read_log(tmp_path)
    assert len(log.losses) == 44 and "checkpoint-440" in log.source
    (tmp_path / "trainer_state.json").write_text(state(500))  # the directory's own is further
    assert len(lrkit.diagnose.read_log(tmp_path).losses) == 50


def test_null_losses_beside_a_loggers_prefixed_bookkeeping_still_read_as_nan(tmp_path):
    """W&B's export writes train/epoch and train/global_step on every row: those are no metric,
    and the run's null losses at the end are its divergence (a code review: 'too_slow')."""
    import json
    rows = [{"_step": i, "train/loss": float(v) if i < 60 else None, "train/epoch": i / 20,
             "train/global_step": i, "train/learning_rate": 0.1}
            for i, v in enumerate(_healthy(65))]
    path = tmp_path / "wandb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = lrkit.diagnose.read_log(path)
    assert sum(math.isnan(v) for v in log.losses) == 5 and log.diagnose().verdict == "diverged"


def test_a_checkpoint_an_earlier_run_left_behind_is_not_read(tmp_path):
    """Its global_step is higher, but it was written before the output directory's own state:
    an output directory reused by a shorter run (a code review)."""
    import json
    import os

    def state(steps, start):
        return json.dumps({"global_step": steps, "log_history": [
            {"step": s, "loss": start * math.exp(-s / 200)} for s in range(10, steps + 1, 10)]})

    (tmp_path / "checkpoint-1000").mkdir()
    old = tmp_path / "checkpoint-1000" / "trainer_state.json"
    old.write_text(state(1000, 9.0))
    os.utime(old, (1_000_000, 1_000_000))
    (tmp_path / "trainer_state.json").write_text(state(500, 2.0))
    log = lrkit.diagnose.read_log(tmp_path)
    assert len(log.losses) == 50 and log.losses[0] < 2.0
