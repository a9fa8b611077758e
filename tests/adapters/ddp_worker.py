"""One rank of a 2-process DDP job on the CPU (gloo), run by tests/adapters/test_distributed.py.

Every rank trains on its own data; rank 1 alone gets the bad batches, which is what breaks a
finder or a guard that decides on its local loss. Each rank saves what it saw to ``rank{r}.pt``.
"""
from __future__ import annotations

import datetime
import os

import torch

NAN_AT = 20  #: the finder batch that is NaN on rank 1 only
NAN_MEASURING = 3  #: a batch among the 16 that measure the gradient noise, NaN on rank 1 only
SPIKE_AT = (60, 61)  #: guarded steps whose batch is a spike on rank 1 only
GUARD_STEPS = 100


def _data(rank: int, n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(n, 10, generator=g)
    y = x @ torch.linspace(-1, 1, 10).unsqueeze(1) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def _batches(rank: int, nan_at: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = _data(rank)
    batches = [(x[i:i + 32].clone(), y[i:i + 32].clone()) for i in range(0, len(x), 32)]
    batches = batches * 20  # longer than any test here: no restarts
    if nan_at is not None and rank == 1:
        inputs, targets = batches[nan_at]
        batches[nan_at] = (torch.full_like(inputs, float("nan")), targets)
    return batches


def _model_and_optimizer():
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.BatchNorm1d(32),
                                torch.nn.ReLU(), torch.nn.Linear(32, 1))
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    return ddp, optimizer


def _state(model, optimizer) -> dict:
    return {"model": {k: v.clone() for k, v in model.state_dict().items()},
            "optimizer": repr(optimizer.state_dict())}


def _same_state(a: dict, b: dict) -> bool:
    return (a["model"].keys() == b["model"].keys()
            and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
            and a["optimizer"] == b["optimizer"])


def main(rank: int, directory: str) -> None:
    import lrkit

    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{os.path.join(directory, 'rendezvous')}", rank=rank,
        world_size=2, timeout=datetime.timedelta(seconds=60))
    out: dict = {}
    try:
        # 0. a model whose parameters are DTensors (FSDP2, tensor parallel): the snapshot copies
        # them alone (a plain block and a DTensor do not mix in copy_) and restores them exactly
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Shard, distribute_tensor

        from lrkit.state import Snapshot

        mesh = init_device_mesh("cpu", (2,))
        torch.manual_seed(0)
        layer = torch.nn.Linear(4, 4)
        layer.weight = torch.nn.Parameter(distribute_tensor(layer.weight.detach(), mesh,
                                                            [Shard(0)]))
        saved = layer.weight.detach().full_tensor().clone()
        snapshot = Snapshot(layer, torch.optim.SGD(layer.parameters(), lr=0.1))
        with torch.no_grad():
            layer.weight.mul_(3.0)
        snapshot.restore(last=True)
        out["dtensor"] = bool(torch.equal(layer.weight.detach().full_tensor(), saved))

        # 1. a finder run: every rank the same curve, the same suggestion, its state restored
        model, optimizer = _model_and_optimizer()
        optimizer.step()  # an optimizer with state of its own to restore (momentum buffers)
        before = _state(model, optimizer)
        result = lrkit.find_lr(model, optimizer, _batches(rank), torch.nn.MSELoss(),
                               num_steps=60, progress=False)
        out["find"] = {"lrs": result.lrs, "losses": result.losses,
                       "suggested_lr": result.suggested_lr,
                       "gradient_noise": result.gradient_noise,
                       "restored": _same_state(before, _state(model, optimizer))}

        # 1b. validation mode and gradient accumulation (DDP's no_sync for the first of each
        # step's two micro-batches): still one curve, one suggestion
        model, optimizer = _model_and_optimizer()
        before = _state(model, optimizer)
        result = lrkit.find_lr(model, optimizer, _batches(rank), torch.nn.MSELoss(),
                               val_loader=_batches(1 - rank)[:4], val_every=5,
                               accumulation_steps=2, num_steps=60, progress=False)
        out["val_accumulated"] = {
            "losses": result.losses, "val_losses": result.val_losses,
            "curve": result.settings["curve"], "suggested_lr": result.suggested_lr,
            "restored": _same_state(before, _state(model, optimizer))}

        # 1c. the steps themselves keep the replicas identical (the losses agree by construction,
        # so this is what shows that the gradients were all-reduced, accumulation included)
        model, optimizer = _model_and_optimizer()
        trainable = lrkit.TorchTrainable(model, optimizer, _batches(rank), torch.nn.MSELoss(),
                                         accumulation_steps=2)
        for _ in range(5):
            trainable.train_step(0.01)
        out["replicas"] = [p.detach().clone() for p in model.parameters()]

        # 1d. a plain model (not DDP) in a distributed job, the finder on rank 0 alone: nothing
        # waits for rank 1
        if rank == 0:
            torch.manual_seed(0)
            plain = torch.nn.Linear(10, 1)
            result = lrkit.find_lr(plain, torch.optim.SGD(plain.parameters(), lr=0.01),
                                   _batches(0), torch.nn.MSELoss(), num_steps=30,
                                   progress=False)
            out["rank0_alone"] = len(result.lrs)
        torch.distributed.barrier()

        # 2. a NaN batch on rank 1 only: both ranks stop at that step (a local decision would
        # leave rank 0 waiting forever in the gradient all-reduce)
        model, optimizer = _model_and_optimizer()
        result = lrkit.find_lr(model, optimizer, _batches(rank, nan_at=NAN_AT),
                               torch.nn.MSELoss(), num_steps=60, progress=False)
        out["nan"] = {"steps": len(result.lrs), "stop_reason": result.stop_reason}
        # 2b. ... and in a batch that measures the gradient noise: no ratio on either rank, the
        # same curve on both, and nothing waits
        model, optimizer = _model_and_optimizer()
        result = lrkit.find_lr(model, optimizer, _batches(rank, nan_at=NAN_MEASURING),
                               torch.nn.MSELoss(), num_steps=30, progress=False)
        out["nan_measuring"] = {"noise": result.gradient_noise, "losses": result.losses}

        # 3. a guarded run with two spiking batches on rank 1 only: every rank makes the same
        # interventions, and the replicas stay identical
        model, optimizer = _model_and_optimizer()
        guard = lrkit.Guard(model, optimizer, probe_steps=0)
        batches = _batches(rank)
        criterion = torch.nn.MSELoss()
        for step in range(GUARD_STEPS):
            inputs, targets = batches[step]
            if rank == 1 and step in SPIKE_AT:
                targets = targets * 1000.0

            def closure(inputs=inputs, targets=targets):
                optimizer.zero_grad()
                loss = criterion(model(inputs), targets)
                loss.backward()
                return loss

            guard.step(closure)
        out["guard"] = {"interventions": [(i.step, i.reason) for i in guard.interventions],
                        "parameters": [p.detach().clone() for p in model.parameters()]}

        # 4. a fresh DDP(static_graph=True): its first backward must be synced; the noise
        # measurement and accumulation ran it under no_sync, which broke its reducer for good
        from torch.nn.parallel import DistributedDataParallel

        static = {}
        for options in ({}, {"accumulation_steps": 2, "noise_batches": 0}):
            torch.manual_seed(0)
            plain = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(),
                                        torch.nn.Linear(32, 1))
            model = DistributedDataParallel(plain, static_graph=True)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            result = lrkit.find_lr(model, optimizer, _batches(rank), torch.nn.MSELoss(),
                                   num_steps=30, progress=False, **options)
            inputs, targets = _batches(rank)[0]
            torch.nn.MSELoss()(model(inputs), targets).backward()  # trains afterwards
            optimizer.step()
            static[str(sorted(options))] = {"steps": len(result.lrs),
                                           "noise": result.gradient_noise}
        out["static_graph"] = static

        # 5. a DDP model over a sub-group (each rank its own group here): its loss is averaged
        # over that group, not over every process of the job (both ranks read one mixed curve)
        own = [torch.distributed.new_group([0]), torch.distributed.new_group([1])][rank]
        torch.manual_seed(0)
        plain = torch.nn.Linear(10, 1)
        model = DistributedDataParallel(plain, process_group=own)
        x, y = _data(rank)
        scaled = [(x[i:i + 32], (1 + 99 * rank) * y[i:i + 32]) for i in range(0, 256, 32)]
        result = lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.01), scaled,
                               torch.nn.MSELoss(), num_steps=30, noise_batches=0,
                               progress=False)
        torch.manual_seed(0)
        alone = torch.nn.Linear(10, 1)
        reference = lrkit.find_lr(alone, torch.optim.SGD(alone.parameters(), lr=0.01), scaled,
                                  torch.nn.MSELoss(), num_steps=30, noise_batches=0,
                                  progress=False)
        out["subgroup"] = result.losses == reference.losses

        # 6. a recipe from loaders of different lengths (150 batches on rank 0, 100 on rank 1):
        # every rank plans from the shortest, so every rank reaches the same recipe
        model, optimizer = _model_and_optimizer()
        loader = _batches(rank)[:150 - 50 * rank]
        problem = lrkit.Problem(model, optimizer, loader, torch.nn.MSELoss())
        recipe = lrkit.recommend(problem, epochs=2, progress=False)
        out["recipe"] = {"peak_lr": recipe.peak_lr, "total_steps": recipe.total_steps}
        # every rank done with every collective before any tears its connections down (a rank
        # destroyed while the other still exchanged sometimes aborted it: SIGABRT)
        torch.distributed.barrier()
    finally:
        torch.save(out, os.path.join(directory, f"rank{rank}.pt"))
        torch.distributed.destroy_process_group()
