"""What the ranks of a ``torch.distributed`` job (DDP) must agree on.

Under DistributedDataParallel every rank trains on its own shard of the data, so each sees its own
loss. A finder or a guard that decides on its local loss stops, skips or rolls back on one rank
and not on another: the ranks then wait forever for each other in the gradient all-reduce (the
deadlock of fastai #2485 and Lightning's early finder) or, worse, go on with different weights.
lrkit decides on the loss averaged over the ranks instead: one all-reduce of a scalar per step,
taken together with the read-back the decision needs anyway, so every rank sees the same curve
and makes the same decision at the same step.
"""
from __future__ import annotations

from typing import Any, Callable

import torch


def _in_use() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size(group: Any = None) -> int:
    """Processes in ``group`` (default: the default process group); 1 when torch.distributed is
    not in use."""
    return torch.distributed.get_world_size(group) if _in_use() else 1


def group_of(model: Any) -> Any:
    """The process group a DistributedDataParallel ``model`` averages its gradients over (its
    ``process_group``); None, the default group, for anything else. A DDP model over a
    sub-group must average its loss over that group, not over every process of the job (it
    mixed two models' curves, and a sub-group's finder waited for ranks outside it). Not FSDP's
    ``process_group``: under hybrid sharding that is the node's shard group, while gradients
    are averaged over every rank."""
    from torch.nn.parallel import DistributedDataParallel

    if not isinstance(model, DistributedDataParallel):
        return None
    group = getattr(model, "process_group", None)
    return group if isinstance(group, torch.distributed.ProcessGroup) else None


def rank() -> int:
    """This process's rank in the default process group; 0 when not distributed."""
    return torch.distributed.get_rank() if _in_use() else 0


def is_main() -> bool:
    """Whether this process should print, plot and show progress (rank 0, or no group)."""
    return rank() == 0


def is_data_parallel(model: Any) -> bool:
    """Whether ``model`` trains as one replica of a data-parallel job: wrapped in
    DistributedDataParallel or FSDP (which have ``no_sync``), or an FSDP2 ``fully_shard`` module
    (``set_requires_gradient_sync``). A plain model in a distributed job (the finder run on rank 0
    alone, or one model per rank) is not: its ranks must not wait for each other."""
    return hasattr(model, "no_sync") or hasattr(model, "set_requires_gradient_sync")


def static_graph(model: Any) -> bool:
    """Whether ``model`` is ``DistributedDataParallel(static_graph=True)``, whose first backward
    pass must be synced: ``no_sync`` before it fails inside DDP's reducer and leaves the model
    unable to train."""
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel) and bool(getattr(model, "static_graph",
                                                                       False))


def should_sync(sync_ranks: bool | None, model: Any = None) -> bool:
    """``sync_ranks`` resolved: ``None`` means "when the model's group (:func:`group_of`) has
    more than one rank and the model is a data-parallel replica" (:func:`is_data_parallel`);
    ``True`` forces it with several ranks."""
    size = world_size(group_of(model))
    if sync_ranks is None:
        return size > 1 and is_data_parallel(model)
    return bool(sync_ranks) and size > 1


def start_mean_over_ranks(values: torch.Tensor, device: torch.device | None = None,
                          group: Any = None) -> Callable[[], torch.Tensor]:
    """Start :func:`mean_over_ranks` without waiting for it; the returned function waits and
    gives the mean. The finder overlaps it with the backward pass (which queues DDP's gradient
    all-reduces after it, in the same order on every rank): a scalar all-reduce costs ~0.3 ms
    over gloo on one machine, as much as a whole step of a small model."""
    dist = torch.distributed
    reduced = _collective_copy(values, device, group)
    work = dist.all_reduce(reduced, op=dist.ReduceOp.SUM, group=group, async_op=True)
    size = dist.get_world_size(group)

    def wait() -> torch.Tensor:
        work.wait()
        return reduced / size

    return wait


def _collective_copy(values: torch.Tensor, device: torch.device | None,
                     group: Any = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A flat copy of ``values`` in ``dtype`` on a device the group's backend supports (for NCCL
    a CPU value goes to ``device``, the model's, else to the current CUDA device)."""
    reduced = values.detach().to(dtype).reshape(-1).clone()
    backend = torch.distributed.get_backend(group)
    if backend == "nccl" and reduced.device.type != "cuda":
        target = device if device is not None and device.type == "cuda" else \
            torch.device("cuda", torch.cuda.current_device())
        reduced = reduced.to(target)
    elif backend == "gloo" and reduced.device.type not in ("cpu", "cuda"):
        reduced = reduced.cpu()
    return reduced


def mean_over_ranks(values: torch.Tensor, device: torch.device | None = None,
                    group: Any = None) -> torch.Tensor:
    """The element-wise mean of ``values`` over the ranks of ``group`` (default: all; a new
    float tensor; NaN or inf on any rank makes the mean non-finite on every rank). The
    collective runs on a device the backend supports: the tensor's own, or for NCCL ``device``
    (the model's) or the current CUDA one."""
    dist = torch.distributed
    reduced = _collective_copy(values, device, group)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM, group=group)
    return reduced / dist.get_world_size(group)


def min_over_ranks(value: int, device: torch.device | None = None, group: Any = None) -> int:
    """The smallest of an integer over the ranks of ``group``: what every rank can agree to
    plan with (a recipe planned from each rank's own loader length ran its confirmation runs
    at different rates on different ranks, or for different lengths, until a rank hung). The
    collective runs where :func:`mean_over_ranks`'s does (for NCCL, ``device``, the model's)."""
    dist = torch.distributed
    # as an integer (through float32, 16_777_217 came back as 16_777_216)
    tensor = _collective_copy(torch.tensor([value]), device, group, dtype=torch.int64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN, group=group)
    return int(tensor.item())
