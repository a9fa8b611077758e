"""The finder and the guard under DistributedDataParallel: two CPU processes (gloo) whose data
differ, where rank 1 alone meets the bad batches (tests/adapters/ddp_worker.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from lrkit.adapters import distributed
from tests.adapters import ddp_worker


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    directory = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.start_processes(ddp_worker.main, args=(str(directory),), nprocs=2,
                                          join=True, start_method="spawn")
    return [torch.load(directory / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_not_distributed_means_one_rank_and_no_sync():
    assert distributed.world_size() == 1
    assert distributed.rank() == 0 and distributed.is_main()
    assert not distributed.should_sync(None) and not distributed.should_sync(True)


def test_a_model_with_dtensor_parameters_is_snapshotted_and_restored(ranks):
    assert ranks[0]["dtensor"] and ranks[1]["dtensor"]


def test_every_rank_records_the_same_curve_and_suggestion(ranks):
    first, second = ranks[0]["find"], ranks[1]["find"]
    assert len(first["lrs"]) >= 30
    assert first["lrs"] == second["lrs"]
    assert first["losses"] == second["losses"]  # the mean over the ranks, not each one's own
    assert first["suggested_lr"] is not None
    assert first["suggested_lr"] == second["suggested_lr"]
    # the gradient noise was measured on each rank's own batches and averaged: one ratio
    assert first["gradient_noise"] is not None and first["gradient_noise"] > 0
    assert first["gradient_noise"] == second["gradient_noise"]


def test_every_rank_gets_its_model_and_optimizer_back(ranks):
    assert ranks[0]["find"]["restored"] and ranks[1]["find"]["restored"]


def test_validation_mode_and_accumulation_agree_across_ranks(ranks):
    first, second = ranks[0]["val_accumulated"], ranks[1]["val_accumulated"]
    assert first["curve"] == "validation" and len(first["val_losses"]) >= 5
    # each rank scores its own validation batches: the curve is their mean, the same on both
    assert first["val_losses"] == second["val_losses"]
    assert first["losses"] == second["losses"]
    assert first["suggested_lr"] == second["suggested_lr"]
    assert first["restored"] and second["restored"]


def test_training_steps_keep_the_replicas_identical(ranks):
    first, second = ranks[0]["replicas"], ranks[1]["replicas"]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_a_plain_model_on_one_rank_is_not_synced(ranks):
    assert ranks[0]["rank0_alone"] >= 20 and "rank0_alone" not in ranks[1]


def test_a_nan_on_one_rank_stops_every_rank_at_that_step(ranks):
    for rank in ranks:
        # (the first 16 batches measured the gradient noise, before the ramp)
        assert rank["nan"]["steps"] == ddp_worker.NAN_AT - 16 + 1
        assert "nan" in rank["nan"]["stop_reason"]
    first, second = ranks[0]["nan_measuring"], ranks[1]["nan_measuring"]
    assert first["noise"] is None and second["noise"] is None
    assert len(first["losses"]) >= 20 and first["losses"] == second["losses"]


def test_the_guard_acts_alike_on_every_rank_and_replicas_stay_identical(ranks):
    first, second = ranks[0]["guard"], ranks[1]["guard"]
    # the spikes came on rank 1 alone; both ranks saw them in the mean and acted together
    assert [step for step, _ in first["interventions"]] == [s + 1 for s in ddp_worker.SPIKE_AT]
    assert first["interventions"] == second["interventions"]
    assert all(torch.equal(a, b) for a, b in zip(first["parameters"], second["parameters"]))
    assert all(torch.isfinite(p).all() for p in first["parameters"])


RECIPE = '''
import atexit

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def _tear_down():
    # every rank done with every collective before any tears its connections down: left to the
    # exit, or destroyed while the other rank still exchanged, gloo's threads sometimes aborted
    # a rank ("terminate called without an active exception", exit -6) after its work
    dist.barrier()
    dist.destroy_process_group()


def make(seed=0):
    dist.init_process_group("gloo")  # from torchrun's environment
    atexit.register(_tear_down)
    g = torch.Generator().manual_seed(100 + dist.get_rank())  # each rank its own data
    x = torch.randn(256, 10, generator=g)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(256, 1, generator=g)
    torch.manual_seed(seed)
    model = DistributedDataParallel(torch.nn.Sequential(
        torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    return model, optimizer, batches, torch.nn.MSELoss()
'''


def _torchrun(tmp_path, *arguments: str) -> subprocess.CompletedProcess:
    (tmp_path / "recipe.py").write_text(RECIPE)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "lrkit", *arguments],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_cli_find_under_torchrun_reports_once(tmp_path):
    done = _torchrun(tmp_path, "find", "recipe.py:make", "--steps", "40", "--no-progress",
                     "--json", "result.json")
    assert done.stdout.count("lrkit find: recipe.py:make") == 1  # rank 0 alone reports
    result = json.loads((tmp_path / "result.json").read_text())
    assert len(result["lrs"]) >= 20 and result["suggested_lr"] > 0


def test_cli_recommend_under_torchrun_reports_once(tmp_path):
    done = _torchrun(tmp_path, "recommend", "recipe.py:make", "--steps", "2000", "--no-progress")
    assert done.stdout.count("Recipe for recipe.py:make") == 1  # named as find names it
    assert "peak lr" in done.stdout


def test_a_fresh_static_graph_model_is_tested_and_trains_afterwards(ranks):
    """DDP(static_graph=True) needs its first backward synced: the noise passes and
    accumulation ran it under no_sync ("expect_autograd_hooks_ INTERNAL ASSERT FAILED"), and the
    model could not train afterwards."""
    for rank in ranks:
        runs = rank["static_graph"]
        assert all(run["steps"] >= 20 for run in runs.values())
        assert all(run["noise"] is None for run in runs.values())  # not measurable there
    assert ranks[0]["static_graph"] == ranks[1]["static_graph"]


def test_a_model_over_a_sub_group_averages_its_loss_over_that_group(ranks):
    """Two one-rank DDP models read one curve mixed from both (the default group's mean)."""
    assert ranks[0]["subgroup"] and ranks[1]["subgroup"]


def test_ranks_with_loaders_of_different_lengths_reach_the_same_recipe(ranks):
    """Each rank planned from its own len(loader): different peaks, or run lengths and a hang."""
    assert ranks[0]["recipe"] == ranks[1]["recipe"]
    assert ranks[0]["recipe"]["total_steps"] == 2 * 100


def test_a_plain_models_fields_named_like_ddps_change_nothing():
    """A model with a `process_group` field crashed the finder in a distributed job, and one
    with `static_graph = True` lost its noise measurement."""
    model = torch.nn.Linear(2, 1)
    model.process_group, model.static_graph = "tensor", True
    assert distributed.group_of(model) is None and not distributed.static_graph(model)
