"""TensorBoard logs: real event files written by torch's SummaryWriter, read by ``read_log`` and
by ``lrkit diagnose`` (text, --json, --tag), and the error without the tensorboard package."""
import builtins
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("tensorboard")
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from lrkit.diagnose.logs import read_log  # noqa: E402
from lrkit.errors import LrkitError  # noqa: E402

FIRST_STEP, EVERY = 5000, 10  #: the run's own steps: 5000, 5010, ... (not 0, 1, 2 ...)
SPIKES = (120, 180, 240)  #: positions of three spikes in the curve below


def _curve(n=300, spikes=SPIKES):
    rng = np.random.default_rng(0)
    loss = 2.3 * np.exp(-np.arange(n) / 40) + 0.2 + 0.01 * rng.standard_normal(n)
    for i in spikes:
        loss[i] = 3.0
    return loss


def _step(i):
    return FIRST_STEP + EVERY * i


def _write_run(directory, *, loss_tag="train/loss", lr_tag="lr", lr_every=1, lr=0.1,
               val_tag="val/loss", extra=("train/acc",), new_style=False, losses=None,
               suffix=""):
    losses = _curve() if losses is None else losses
    writer = SummaryWriter(str(directory), filename_suffix=suffix)
    for i, value in enumerate(losses):
        writer.add_scalar(loss_tag, float(value), _step(i), new_style=new_style)
        if lr_tag and i % lr_every == 0:
            writer.add_scalar(lr_tag, lr, _step(i), new_style=new_style)
        if val_tag and i % 30 == 0:
            writer.add_scalar(val_tag, float(value) + 0.05, _step(i), new_style=new_style)
        for tag in extra:
            writer.add_scalar(tag, 0.5, _step(i), new_style=new_style)
    writer.close()
    return directory


def _cli(argv, capsys):
    from lrkit.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# -- the reader ---------------------------------------------------------------------------------

def test_a_run_directory_gives_the_loss_tag_the_steps_the_rate_and_the_validation(tmp_path):
    run = _write_run(tmp_path / "run")
    log = read_log(run)
    assert len(log.losses) == 300
    assert log.steps[:3] == [5000.0, 5010.0, 5020.0] and log.steps[-1] == _step(299)
    assert log.losses == pytest.approx(_curve().tolist(), rel=1e-6)
    # the rate as written (float32 0.1), not 0.10000000149
    assert log.lrs is not None and set(log.lrs) == {0.1}
    assert [s for s, _ in log.val_losses] == [float(_step(i)) for i in range(0, 300, 30)]
    assert "train/loss" in log.source and "'lr'" in log.source and "val/loss" in log.source


def test_the_diagnosis_names_the_runs_own_steps_and_uses_the_rate(tmp_path):
    log = read_log(_write_run(tmp_path / "run"))
    result = log.diagnose()
    assert result.verdict == "unstable"
    assert result.evidence["spike_steps"] == [_step(i) for i in SPIKES]
    assert f"steps {_step(120)}, {_step(180)}, {_step(240)}" in " ".join(result.reasons)
    assert result.suggested_lr == pytest.approx(0.1 * result.lr_factor)
    assert "(trouble started at step 6200, rate 0.1)" in result.explanation


def test_a_single_event_file_reads_like_its_directory(tmp_path):
    run = _write_run(tmp_path / "run")
    (file,) = [p for p in run.iterdir() if "tfevents" in p.name]
    from_file, from_dir = read_log(file), read_log(run)
    assert from_file.steps == from_dir.steps and from_file.losses == from_dir.losses


def test_a_rate_logged_less_often_than_the_loss_is_held_until_the_next(tmp_path):
    """Lightning's LearningRateMonitor logs once an epoch, the loss every step: the rate used to
    be dropped unless it was logged at every loss step."""
    log = read_log(_write_run(tmp_path / "run", lr_every=25, lr_tag="lr-Adam"))
    assert log.lrs is not None and len(log.lrs) == len(log.losses) and set(log.lrs) == {0.1}
    assert log.diagnose().suggested_lr is not None


def test_a_schedule_logged_sparsely_gives_the_rate_in_force_at_each_step(tmp_path):
    run = tmp_path / "run"
    writer = SummaryWriter(str(run))
    for i in range(40):
        writer.add_scalar("loss", 2.0 - i / 40, i)
    for step, rate in ((0, 0.1), (10, 0.05), (30, 0.01)):
        writer.add_scalar("train/learning_rate", rate, step)  # Hugging Face's tag
    writer.close()
    log = read_log(run)
    assert log.lrs[:10] == [0.1] * 10 and log.lrs[10:30] == [0.05] * 20
    assert log.lrs[30:] == [0.01] * 10


def test_new_style_scalars_are_read(tmp_path):
    """add_scalar(new_style=True) (and tf.summary.scalar) write tensors, which the legacy
    accumulator files under 'tensors', not 'scalars': such a log had "no scalar tag 'loss'"."""
    log = read_log(_write_run(tmp_path / "run", new_style=True))
    assert len(log.losses) == 300 and log.lrs is not None and log.val_losses


def test_images_and_histograms_next_to_the_scalars_are_ignored(tmp_path):
    run = tmp_path / "run"
    writer = SummaryWriter(str(run))
    for i in range(50):
        writer.add_scalar("loss", 2.0 / (1 + i), i)
        writer.add_histogram("weights", np.arange(4.0) + i, i)
    writer.add_text("notes", "hello", 0)
    writer.close()
    log = read_log(run)
    assert len(log.losses) == 50 and log.source.startswith("tensorboard, tag 'loss'")


def test_a_resumed_run_replaces_the_steps_it_logged_again(tmp_path):
    """Two event files in one run directory: the run stopped at step 99 and resumed from a
    checkpoint at step 80. TensorBoard shows the second file's steps 80-99; the reader used to
    keep both, 220 points with the steps going back in the middle."""
    run = tmp_path / "run"
    writer = SummaryWriter(str(run), filename_suffix=".first")
    for step in range(100):
        writer.add_scalar("loss", 5.0, step)
    writer.close()
    time.sleep(1.1)  # the event file's name holds the time in seconds: the second sorts later
    writer = SummaryWriter(str(run), filename_suffix=".second")
    for step in range(80, 200):
        writer.add_scalar("loss", 1.0, step)
    writer.close()
    assert len([p for p in run.iterdir() if "tfevents" in p.name]) == 2
    log = read_log(run)
    assert log.steps == [float(s) for s in range(200)]
    assert log.losses == [5.0] * 80 + [1.0] * 120
    assert "2 event files" in log.source
    # and it says so (a second run from step 0 in the same folder replaced the first unsaid)
    assert "a later event file logs from step 80 again: its values replace 20 earlier ones" \
        in log.source


def test_a_run_continued_in_a_second_file_keeps_both(tmp_path):
    run = tmp_path / "run"
    for part, steps in (("a", range(0, 50)), ("b", range(50, 100))):
        writer = SummaryWriter(str(run), filename_suffix="." + part)
        for step in steps:
            writer.add_scalar("loss", 2.0 - step / 100, step)
        writer.close()
        time.sleep(1.1)
    assert read_log(run).steps == [float(s) for s in range(100)]


def test_a_directory_with_one_run_below_it_reads_that_run(tmp_path):
    _write_run(tmp_path / "logs" / "version_0")
    log = read_log(tmp_path / "logs")
    assert len(log.losses) == 300 and log.steps[0] == 5000.0


def test_a_directory_with_several_runs_lists_them(tmp_path):
    _write_run(tmp_path / "logs" / "lr_0.1", losses=_curve(20, ()))
    _write_run(tmp_path / "logs" / "lr_0.01", losses=_curve(20, ()))
    with pytest.raises(LrkitError) as info:
        read_log(tmp_path / "logs")
    message = str(info.value)
    assert "2 TensorBoard runs" in message and "lr_0.1" in message and "lr_0.01" in message
    assert "give one run directory" in message


# -- choosing the loss tag ----------------------------------------------------------------------

def test_a_known_loss_tag_wins_over_other_scalars(tmp_path):
    log = read_log(_write_run(tmp_path / "run", loss_tag="Loss/train",
                              extra=("train/acc", "grad_norm")))
    assert "tag 'Loss/train'" in log.source and len(log.losses) == 300


def test_the_one_tag_that_says_loss_is_taken(tmp_path):
    """Keras names it epoch_loss; it used to be "no scalar tag 'loss'"."""
    log = read_log(_write_run(tmp_path / "run", loss_tag="epoch_loss", val_tag="epoch_val_loss"))
    assert "tag 'epoch_loss'" in log.source and len(log.losses) == 300


def test_several_loss_like_tags_are_an_error_that_lists_them(tmp_path):
    run = _write_run(tmp_path / "run", loss_tag="loss_a", extra=("loss_b",), val_tag=None)
    with pytest.raises(LrkitError) as info:
        read_log(run)
    message = str(info.value)
    assert "several scalar tags could be the training loss" in message
    assert "'loss_a'" in message and "'loss_b'" in message and "--tag" in message
    assert len(read_log(run, tag="loss_b").losses) == 300


def test_an_event_file_without_a_loss_tag_lists_the_tags_and_says_how_to_pick(tmp_path):
    run = tmp_path / "run"
    writer = SummaryWriter(str(run))
    for i in range(20):
        writer.add_scalar("accuracy", 0.5, i)
        writer.add_scalar("objective", 1.0 / (1 + i), i)
    writer.close()
    with pytest.raises(LrkitError) as info:
        read_log(run)
    message = str(info.value)
    assert "no training loss among the scalar tags" in message
    assert "'accuracy'" in message and "'objective'" in message
    assert "--tag TAG" in message and "read_log(path, tag=TAG)" in message
    log = read_log(run, tag="objective")
    assert len(log.losses) == 20 and "tag 'objective'" in log.source


def test_a_tag_that_is_not_there_lists_the_tags(tmp_path):
    with pytest.raises(LrkitError, match=r"no scalar tag 'train/los'.*'train/loss'"):
        read_log(_write_run(tmp_path / "run"), tag="train/los")


def test_a_validation_loss_is_not_taken_for_the_training_loss(tmp_path):
    run = tmp_path / "run"
    writer = SummaryWriter(str(run))
    for i in range(20):
        writer.add_scalar("eval/loss", 1.0, i)
        writer.add_scalar("objective", 1.0, i)
    writer.close()
    with pytest.raises(LrkitError, match="no training loss among the scalar tags"):
        read_log(run)


# -- empty and damaged files --------------------------------------------------------------------

def test_an_empty_event_file_is_called_empty(tmp_path):
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "events.out.tfevents.1700000000.host"
    path.write_bytes(b"")
    for target in (path, tmp_path / "run"):
        with pytest.raises(LrkitError, match=r"no TensorBoard events could be read: "
                                             r"events\.out\.tfevents\.1700000000\.host \(empty\)"):
            read_log(target)


def test_a_damaged_event_file_is_refused_clearly(tmp_path):
    path = tmp_path / "events.out.tfevents.1700000000.host"
    path.write_bytes(b"not an event file\x00" * 40)
    with pytest.raises(LrkitError, match=r"\(no readable events\).*damaged"):
        read_log(path)


def test_a_truncated_event_file_gives_what_was_written(tmp_path):
    """A run still being written (or cut off) ends in half a record: the steps before it."""
    run = _write_run(tmp_path / "run", lr_tag=None, val_tag=None, extra=())
    (file,) = [p for p in run.iterdir() if "tfevents" in p.name]
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2 + 7])
    log = read_log(file)
    assert 100 < len(log.losses) < 300 and log.steps[0] == 5000.0


def test_a_damaged_file_next_to_a_good_one_is_skipped_and_said(tmp_path):
    run = _write_run(tmp_path / "run")
    (run / "events.out.tfevents.1.broken").write_bytes(b"")
    log = read_log(run)
    assert len(log.losses) == 300 and "skipped events.out.tfevents.1.broken (empty)" in log.source


def test_an_event_file_with_no_scalars_says_so(tmp_path):
    run = tmp_path / "run"
    writer = SummaryWriter(str(run))
    writer.add_histogram("weights", np.arange(4.0), 0)
    writer.close()
    with pytest.raises(LrkitError, match=r"no scalar values.*weights.*add_scalar"):
        read_log(run)


# -- the CLI ------------------------------------------------------------------------------------

def test_cli_text_names_the_tag_and_the_runs_steps(tmp_path, capsys):
    run = _write_run(tmp_path / "run")
    code, out, err = _cli(["diagnose", str(run)], capsys)
    assert code == 0, err
    assert "300 loss values (tensorboard, tag 'train/loss', rate 'lr'" in out
    assert "verdict: unstable" in out and "steps 6200, 6800, 7400" in out
    assert "-> 0.03" in out  # the logged rate 0.1, x0.3


def test_cli_json(tmp_path, capsys):
    run = _write_run(tmp_path / "run")
    code, out, _ = _cli(["diagnose", str(run), "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["points"] == 300 and data["validation_points"] == 10
    assert data["format"].startswith("tensorboard, tag 'train/loss'")
    assert data["evidence"]["spike_steps"] == [6200, 6800, 7400]
    assert data["suggested_lr"] == pytest.approx(0.03)


def test_cli_tag_picks_the_scalar(tmp_path, capsys):
    run = _write_run(tmp_path / "run", loss_tag="loss_a", extra=("loss_b",), val_tag=None)
    code, _, err = _cli(["diagnose", str(run)], capsys)
    assert code == 2 and "several scalar tags" in err and "--tag" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, out, _ = _cli(["diagnose", str(run), "--tag", "loss_b", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["format"].startswith("tensorboard, tag 'loss_b'")
    code, _, err = _cli(["diagnose", str(run), "--tag", "nope"], capsys)
    assert code == 2 and "no scalar tag 'nope'" in err and "'loss_a'" in err


def test_cli_errors_for_empty_damaged_and_several_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "events.out.tfevents.1.host").write_bytes(b"")
    _write_run(tmp_path / "several" / "a", losses=_curve(20, ()))
    _write_run(tmp_path / "several" / "b", losses=_curve(20, ()))
    for target, expected in ((tmp_path / "empty", "(empty)"),
                             (tmp_path / "several", "2 TensorBoard runs")):
        code, _, err = _cli(["diagnose", str(target)], capsys)
        assert code == 2 and expected in err and "Traceback" not in err


# -- without the tensorboard package ------------------------------------------------------------

def _without_tensorboard(monkeypatch):
    """As if tensorboard were not installed: importing it (or any part of it) fails."""
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith("tensorboard.")]:
        monkeypatch.delitem(sys.modules, name)
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_without_tensorboard_one_clear_error(tmp_path, monkeypatch, capsys):
    run = _write_run(tmp_path / "run", losses=_curve(20, ()))
    _without_tensorboard(monkeypatch)
    for target in (run, next(p for p in run.iterdir() if "tfevents" in p.name)):
        with pytest.raises(LrkitError, match=r"pip install lrkit\[tensorboard\]"):
            read_log(target)
        code, out, err = _cli(["diagnose", str(target)], capsys)
        assert code == 2 and out == ""
        assert err.count("pip install lrkit[tensorboard]") == 1
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_tensorboard_import_is_lazy():
    code = ("import sys, lrkit, lrkit.cli, lrkit.cli.diagnose, lrkit.diagnose.logs; "
            "from lrkit.diagnose import read_log; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorboard'))")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert out.strip() == "[]"


def test_curves_written_with_add_scalars_are_read_with_the_run(tmp_path):
    # add_scalars("Loss", {"train": ..., "val": ...}) writes each curve in a folder of its own
    # below the run (run/Loss_train, run/Loss_val): the run had no loss, and --tag Loss could
    # not reach it; the folder above the run listed three runs
    run = tmp_path / "logs" / "exp1"
    writer = SummaryWriter(str(run))
    loss = _curve(120, spikes=())
    for i, value in enumerate(loss):
        writer.add_scalars("Loss", {"train": float(value)}, i)
        writer.add_scalar("lr", 0.05, i)
        if i % 20 == 19:
            writer.add_scalars("Loss", {"val": float(value) * 1.1}, i)
    writer.close()
    for path in (run, tmp_path / "logs"):
        log = read_log(path)
        assert log.losses == pytest.approx(list(loss), rel=1e-6)
        assert log.lrs == [0.05] * 120 and len(log.val_losses) == 6
        assert "tag 'Loss_train'" in log.source and "validation 'Loss_val'" in log.source


def test_a_tag_that_holds_the_rate_is_refused_as_a_csv_rate_column_is(tmp_path):
    # "--tag lr" read the rate as the loss: "the loss is exactly 0.1 at all 300 steps"
    run = _write_run(tmp_path / "run")
    with pytest.raises(LrkitError, match="'lr' holds the learning rate"):
        read_log(run, tag="lr")


def test_a_loss_tag_under_a_group_named_like_a_rate_is_read(tmp_path):
    run = _write_run(tmp_path / "run", loss_tag="lr-finder/loss", lr_tag="lr-finder/lr")
    assert len(read_log(run, tag="lr-finder/loss").losses) == 300
