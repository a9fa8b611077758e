"""Measure the gradient's noise-to-signal ratio of a PyTorch training step (see
:mod:`lrkit.find.noise`) before a range test, without copying any gradient.

``k`` micro-batches are backpropagated at the same parameters, with no optimizer step, and their
gradients pile up in ``.grad`` as they would under gradient accumulation. A hook on every
parameter reads the squared norm of each batch's own gradient ``g_j`` as it arrives, before it
is added; at the end ``.grad`` holds the sum ``S``, and ``|S|² = Σ|g_j|² + 2 Σ_{i<j} g_i . g_j``
gives the sum over pairs. So the estimate needs one norm per parameter and pass and memory stays
at what a training step uses. Costs ``k`` forward and backward passes; the caller restores the
state (``TorchTrainable.preserved``) and the range test's first step clears the gradients.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from lrkit.adapters.distributed import mean_over_ranks, static_graph, world_size
from lrkit.find.noise import noise_ratio

if TYPE_CHECKING:
    from lrkit.adapters.torch import TorchTrainable


def measurable(trainable: TorchTrainable) -> list[torch.Tensor] | None:
    """The parameters to watch, or ``None`` when the measurement does not apply: sharded or
    subclassed parameters (FSDP, DTensor: their hooks see shards), complex ones."""
    params = [p for group in trainable.optimizer.param_groups for p in group["params"]
              if isinstance(p, torch.Tensor) and p.requires_grad]
    if not params:
        return None
    if type(trainable.model).__name__ == "FullyShardedDataParallel":
        return None
    if static_graph(trainable.model):  # its passes would run under no_sync, which it refuses
        return None
    for p in params:
        if type(p.detach()) is not torch.Tensor or p.is_complex() or not p.is_floating_point():
            return None
    return params


#: torch.optim's optimizers of Adam's kind: a step from running first and second moments
ADAM_KIND = frozenset({"Adam", "AdamW", "NAdam", "RAdam", "Adamax"})
SGD_KIND = frozenset({"SGD", "ASGD"})


def optimizer_family(optimizer: torch.optim.Optimizer) -> str:
    """"adam" for Adam's kind (``ADAM_KIND``, their subclasses, and any other optimizer whose
    defaults hold ``betas`` and ``eps``: most third-party Adam variants), "sgd" for SGD's,
    "other" for the rest (RMSprop, Adagrad, a sign rule such as Lion: no betas and eps)."""
    for cls in type(optimizer).__mro__:
        if cls.__module__.startswith("torch.optim"):
            if cls.__name__ in ADAM_KIND:
                return "adam"
            if cls.__name__ in SGD_KIND:
                return "sgd"
    defaults = getattr(optimizer, "defaults", None) or {}
    return "adam" if "betas" in defaults and "eps" in defaults else "other"


#: float32 norms strictly between these are exact; outside, the sum of squares inside the norm
#: may have overflowed (a norm over 1.8e19: inf) or lost digits to subnormal squares (entries
#: under 1e-19), and the norm is read again in float64. A gradient's own norm on an accelerator
#: is not checked (that would wait for the device on every parameter and pass): there an
#: overflow gives inf, so no ratio
_SAFE = (1e-12, 1e18)


def _checked(grads: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    """The norms of the accumulated gradients, those that float32 may have overflowed or
    underflowed read again in float64 (one look at them all, once a measurement)."""
    norms = list(torch._foreach_norm(grads, dtype=dtype))
    if dtype == torch.float64:
        return norms
    values = torch.stack([n.to(norms[0].device) for n in norms]).tolist()
    return [n if _SAFE[0] < v < _SAFE[1] else torch.linalg.vector_norm(g, dtype=torch.float64)
            for n, v, g in zip(norms, values, grads)]


#: times the first noise batch is measured again at half the float16 loss scale, when its
#: gradient overflowed (65536 / 2**16 = 1: a scale below that is not an overflow any more)
SCALE_HALVINGS = 16
#: and then the scale is divided by this much more: the first batch's gradient fitting says
#: little about the others'
SCALE_HEADROOM = 8


def gradient_noise(trainable: TorchTrainable, batches: int) -> float | None:
    """``B_noise / B`` of one optimizer step's batch (all micro-batches and ranks), measured on
    ``batches`` micro-batches; ``None`` when it cannot be measured (see :func:`measurable`, a
    sparse gradient, a non-finite loss or gradient)."""
    params = measurable(trainable)
    if params is None or batches < 2:
        return None
    # the running sum of squared norms: a Python float for parameters on the CPU (reading a
    # norm there costs nothing, and each op less counts on sub-millisecond steps), a tensor per
    # accelerator allocated before any gradient (a small tensor kept from each pass was carved
    # out of the freed gradient's memory, and the next pass's gradient no longer fit there: the
    # wide MLP grew by 16 MB a pass)
    host = [0.0]
    squares_on = {device: torch.zeros((), dtype=torch.float64, device=device)
                  for device in {p.device for p in params} if device.type != "cpu"}
    sparse = False
    # how often the hooks ran: once a parameter and pass at most, unless a gradient came in
    # pieces (torch.autograd.grad on the parameters inside the loss, a gradient penalty; a
    # parameter used inside and outside a reentrant checkpoint): the squared norms are then the
    # pieces', not the batch gradient's, and the ratio would be wrong
    fired = [0]

    def watch(param: torch.Tensor):
        squares = squares_on.get(param.device)
        # float32 at least (a norm in half precision loses the signal), float64 kept
        dtype = torch.float64 if param.dtype == torch.float64 else torch.float32

        def hook(grad: torch.Tensor) -> None:
            nonlocal sparse
            fired[0] += 1
            if grad.is_sparse:
                sparse = True
                return
            if grad.requires_grad:  # a backward with create_graph=True: read it, quietly
                grad = grad.detach()
            norm = torch.linalg.vector_norm(grad, dtype=dtype)
            if squares is None:
                value = float(norm)
                if not _SAFE[0] < value < _SAFE[1]:  # float32's squares over- or underflowed
                    value = float(torch.linalg.vector_norm(grad, dtype=torch.float64))
                host[0] += value * value
            else:
                squares.add_(norm.double().square())
        return hook

    model, optimizer = trainable.model, trainable.optimizer
    if not model.training:
        model.train()
    optimizer.zero_grad(set_to_none=True)
    handles = [p.register_hook(watch(p)) for p in params]
    no_sync = getattr(model, "no_sync", None)  # DDP: each rank's own gradients, no all-reduce

    def micro_step() -> float:
        if no_sync is None:
            return trainable._micro_step()
        with no_sync():
            return trainable._micro_step()

    device = trainable.device

    def total_squares() -> torch.Tensor:
        """The sum of the batches' squared norms so far, on the trainable's device."""
        return sum((part.to(device) for part in squares_on.values()),
                   torch.tensor(host[0], dtype=torch.float64, device=device))

    def first_gradient_finite() -> bool:
        """Whether the first batch's gradient norms are finite, on every rank (one read)."""
        total = total_squares()
        if trainable._sync:
            total = mean_over_ranks(total.reshape(1), device, trainable._group)
        return bool(torch.isfinite(total).all())

    scaler = trainable._scaler
    finite = True
    try:
        for index in range(batches):
            value = micro_step()
            if not math.isfinite(value):
                finite = False
                break
            if index == 0 and scaler is not None:
                # float16's loss scale starts high (65536) and its first steps often overflow;
                # training skips those, as the scaler halves the scale. Here the first batch is
                # measured again at half the scale until its gradient is finite, then once more
                # at an eighth of that, so that the other batches have room (every batch at the
                # same scale: the ratio does not depend on it); the ramp starts from that scale
                fitted = False
                for _ in range(SCALE_HALVINGS):
                    fitted = first_gradient_finite()
                    scaler.update(scaler.get_scale() / (SCALE_HEADROOM if fitted else 2))
                    optimizer.zero_grad(set_to_none=True)
                    host[0] = 0.0
                    for part in squares_on.values():
                        part.zero_()
                    fired[0] = 0
                    value = micro_step()
                    if fitted or not math.isfinite(value):
                        break
                if not math.isfinite(value):
                    finite = False
                    break
        grads = [p.grad for p in params if p.grad is not None]
        sparse = sparse or any(g.is_sparse for g in grads)
        summed = torch.zeros((), dtype=torch.float64, device=device)
        if grads and not sparse:
            wide = [g for g in grads if g.dtype == torch.float64]
            narrow = [g for g in grads if g.dtype != torch.float64]
            for group, dtype in ((wide, torch.float64), (narrow, torch.float32)):
                if group:
                    summed = summed + sum(n.to(device, torch.float64).square()
                                          for n in _checked(group, dtype))
    finally:
        for handle in handles:
            handle.remove()
        optimizer.zero_grad(set_to_none=True)
    # more calls than parameters and passes: a gradient came in pieces (above). Said through the
    # flag that the ranks average, not by returning here: a rank whose batch took another path
    # through the model would leave the others waiting in the all-reduce
    pieces = fired[0] > batches * len(params)
    squares = total_squares()
    # |S|² - Σ|g_j|² is twice the sum of g_i . g_j over the pairs
    sums = torch.stack([squares, (summed - squares) / 2,
                        torch.tensor(0.0 if finite and not (sparse or pieces) else math.nan,
                                     dtype=torch.float64,
                                     device=device)])
    if trainable._sync:  # every rank gets the same ratio, so the same suggestion
        sums = mean_over_ranks(sums, device, trainable._group)
    square, cross, flag = sums.cpu().tolist()
    ratio = noise_ratio(square, cross, batches) if math.isfinite(flag) else None
    if ratio is None:
        return None
    # one step averages accumulation_steps micro-batches on each of the ranks
    return ratio / (trainable.accumulation_steps
                    * (world_size(trainable._group) if trainable._sync else 1))
