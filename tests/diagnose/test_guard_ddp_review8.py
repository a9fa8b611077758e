"""Under DDP the ranks agree on whether the latest snapshot is sound before a rollback: their
buffers differ (BatchNorm statistics of their own batches, broadcast_buffers=False), and a rank
whose copy held an overflowed statistic fell back to the older snapshot alone, restoring other
weights than the other rank's."""
from __future__ import annotations

import json
import math
import os
import warnings

from tests.adapters.test_adapters_review7 import run_two_ranks

NAN_AT = 8  #: the step whose loss is NaN (after the snapshot at step 5)


def _rank(rank: int, directory: str, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    warnings.simplefilter("ignore")
    import torch
    import torch.distributed as dist
    from torch import nn

    import lrkit

    dist.init_process_group("gloo")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    model = nn.parallel.DistributedDataParallel(net, broadcast_buffers=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    guard = lrkit.Guard(model, optimizer, snapshot_every=5, spike_factor=None)
    assert guard._sync
    g = torch.Generator().manual_seed(rank)
    for step in range(NAN_AT + 1):
        x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)

        def closure():
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss * math.nan if step == NAN_AT and rank == 0 else loss

        guard.step(closure)
        if step == 3 and rank == 1:  # an overflowed statistic, on this rank's copy only
            with torch.no_grad():
                net[1].running_var[0] = math.inf
    with open(os.path.join(directory, f"rank{rank}.json"), "w") as handle:
        json.dump({"parameters": [p.detach().flatten().tolist() for p in net.parameters()],
                   "snapshot_step": guard._snapshots.latest_step,
                   "reasons": [i.reason for i in guard.interventions]}, handle)
    dist.barrier()
    dist.destroy_process_group()


def test_every_rank_rolls_back_to_the_same_snapshot(tmp_path):
    run_two_ranks(_rank, tmp_path)
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert first["reasons"] == second["reasons"] == ["nonfinite_loss_rolled_back"]
    assert first["snapshot_step"] == second["snapshot_step"]
    assert first["parameters"] == second["parameters"]
