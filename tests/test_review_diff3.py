"""Review of the changes since 3ae6569: each test failed before its fix."""
import math

import numpy as np
import pytest

from lrkit import diagnose
from lrkit.errors import LrkitError


def test_a_blow_up_after_a_flat_noisy_stretch_starts_where_the_loss_turned_up():
    """A loss flat (with batch noise) for 800 steps of a rising warmup, then growing: the lowest
    smoothed point before the climb fell anywhere in the flat stretch (steps 216-690), and the
    advice was cut from the rate there."""
    n, onset = 1000, 800
    lrs = np.linspace(0.0, 1.0, n)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        losses = [2.3 * math.exp(0.05 * rng.standard_normal())
                  * (1.0 if i < onset else math.exp((i - onset) / 20)) for i in range(n)]
        d = diagnose(losses, lrs=lrs)
        assert d.verdict == "diverged"
        turn = d.evidence["blowup_at"]
        assert onset - 10 <= turn <= onset + 15, turn
        assert d.suggested_lr == pytest.approx(0.1 * lrs[turn])
        assert f"trouble started at step {turn}," in d.explanation


def test_a_json_log_takes_its_one_loss_like_key_as_a_csv_does(tmp_path):
    """docs/diagnose.md: JSONL has "the same keys" as a CSV, whose one column with "loss" in its
    name is the loss; a JSONL or JSON list with ``my_loss`` was refused with no word of --tag."""
    import json

    from lrkit.diagnose.logs import read_log

    records = [{"step": 10 * i, "my_loss": 2.0 * math.exp(-i / 20) + 0.1} for i in range(30)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "b.json").write_text(json.dumps(records))
    (tmp_path / "a.csv").write_text("step,my_loss\n" + "".join(
        f"{r['step']},{r['my_loss']}\n" for r in records))
    expected = read_log(tmp_path / "a.csv")
    for name in ("a.jsonl", "b.json"):
        log = read_log(tmp_path / name)
        assert log.steps == expected.steps and log.losses == pytest.approx(expected.losses)
    two = [{"step": 1, "a_loss": 1.0, "b_loss": 2.0}]
    (tmp_path / "two.jsonl").write_text(json.dumps(two[0]) + "\n")
    with pytest.raises(LrkitError, match=r"several keys could be the training loss "
                                         r"\('a_loss', 'b_loss'\).*--tag KEY"):
        read_log(tmp_path / "two.jsonl")
    (tmp_path / "none.jsonl").write_text(json.dumps({"step": 1, "acc": 0.5}) + "\n")
    with pytest.raises(LrkitError, match=r"no 'loss' .*--tag KEY"):
        read_log(tmp_path / "none.jsonl")
    assert read_log(tmp_path / "two.jsonl", tag="b_loss").losses == [2.0]


def test_guard_bookkeeping_never_runs_more_often_after_the_early_snapshots():
    """The late period was gcd(25, snapshot_every): 5 for snapshot_every 10, 20 or 30, so the
    rounds that were to thin out (10 -> 25 apart) came twice as often instead."""
    import torch
    from torch import nn

    import lrkit

    for every, apart in ((30, 10), (20, 10), (100, 25)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        guard = lrkit.Guard(model, optimizer, snapshot_every=every, probe_steps=0)
        rounds, periodic = [], guard._periodic

        def counted(periodic=periodic, guard=guard, rounds=rounds):
            rounds.append(guard.good_steps)
            periodic()

        guard._periodic = counted
        x, y = torch.randn(32, 4), torch.randn(32, 1)

        def closure():
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        for _ in range(300):
            guard.step(closure)
        late = [r for r in rounds if r > 2 * every]
        assert late and all(b - a == apart for a, b in zip(late, late[1:])), (every, late)


def test_sweep_and_schedule_plots_still_write_to_a_file_object():
    """require_folder took every path for a file name: SweepResult.plot(io.BytesIO()) and
    lrkit.schedules.plot(preview, io.BytesIO()), which matplotlib writes to, raised TypeError
    (both worked before the folder check); a missing folder is still refused."""
    import io

    from lrkit.schedules import plot, preview
    from lrkit.sweep.results import SweepResult, TrialRecord

    records = [TrialRecord(number=i, optimizer="sgd", lr=10.0 ** -i, seed=0, status="finished",
                           loss=1.0 + i, curve=[(0, 2.0), (10, 1.0 + i)]) for i in range(3)]
    result = SweepResult(records, settings={"optimizers": ["sgd"]}, study_name="s")
    buffer = io.BytesIO()
    result.plot(buffer)
    assert buffer.getvalue().startswith(b"\x89PNG")
    buffer = io.BytesIO()
    plot(preview("cosine(100)", 100), buffer)
    assert buffer.getvalue().startswith(b"\x89PNG")
    with pytest.raises(LrkitError, match="is not an existing directory"):
        result.plot("/nonexistent-folder-lrkit/sweep.png")


def test_the_ray_engine_names_the_ray_it_needs(monkeypatch):
    """pyproject asked for ray[tune]>=2.9, but the engine uses ray.tune.RunConfig,
    tune.FailureConfig and tune.report(dict), Ray 2.41's (Tune's own API, split from Train): an
    older Ray failed with an AttributeError deep in the sweep."""
    import re
    from pathlib import Path

    pytest.importorskip("ray.tune")
    from ray import tune

    from lrkit.sweep import ray_engine

    pins = re.findall(r'"ray\[tune\]>=([\d.]+)"',
                      (Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pins and all(tuple(map(int, p.split("."))) >= (2, 41) for p in pins), pins
    monkeypatch.delattr(tune, "RunConfig")
    with pytest.raises(LrkitError, match=r"needs Ray Tune 2\.41 or later.*found Ray"):
        ray_engine.require_ray()


def test_sweep_cli_names_points_per_decade_once(tmp_path, capsys):
    """The refusal says "points_per_decade (--points-per-decade)" for both audiences; the CLI
    turned it into "--points-per-decade (--points-per-decade) 8"."""
    from lrkit.cli import main

    storage = str(tmp_path / "sweeps.journal")
    for lrs, shown in (("0.01,0.1", "--points-per-decade 8 is for a LOW:HIGH range"),
                       ("1e-3:1:4", "and --points-per-decade says 8: give it once")):
        code = main(["sweep", "logreg", "--lrs", lrs, "--points-per-decade", "8", "--budget",
                     "20", "--storage", storage])
        err = capsys.readouterr().err
        assert code == 2 and shown in err, err
        assert "(--points-per-decade)" not in err
