"""The learning-rate range test ("LR finder").

``find_lr`` is the PyTorch entry point; ``range_test`` drives any :class:`lrkit.Trainable`.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from lrkit.errors import LrkitError
from lrkit.find.ramp import check_range
from lrkit.find.range_test import NOISE_BATCHES, range_test
from lrkit.find.result import FinderResult
from lrkit.find.suggest import METHODS, analyse

if TYPE_CHECKING:
    import torch

__all__ = ["find_lr", "range_test", "FinderResult", "METHODS", "analyse"]


def find_lr(
    model: Any,
    optimizer: Any,
    train_loader: Iterable,
    criterion: Callable | None = None,
    *,
    loss_fn: Callable | None = None,
    val_loader: Iterable | None = None,
    val_every: int | None = None,
    val_batches: int = 5,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    ramp: str = "exp",
    smoothing: float = 0.9,
    diverge_threshold: float = 4.0,
    accumulation_steps: int = 1,
    amp: bool | str | torch.dtype = False,
    max_grad_norm: float | None = None,
    device: Any = None,
    method: str = "auto",
    budget_steps: int | None = None,
    noise_batches: int = NOISE_BATCHES,
    snapshot: str = "cpu",
    snapshot_dir: str | None = None,
    progress: bool | None = None,
    sync_ranks: bool | None = None,
) -> FinderResult:
    """Run a learning-rate range test on a PyTorch model and suggest a rate.

    Batches are ``(inputs, targets)`` scored by ``criterion(model(inputs), targets)``, or anything
    at all when ``loss_fn(model, batch)`` is given (it may return a tensor, a dict with ``"loss"``
    or an object with ``.loss``); with neither, the model's own output must carry the loss.

    The model (parameters, buffers, train/eval mode), the optimizer (state and hyperparameters)
    and the torch/numpy/random generators are restored bit for bit afterwards, also when this
    raises or is interrupted. The snapshot lives on the CPU, or in a private file under
    ``snapshot_dir`` with ``snapshot="disk"``, or beside the model with ``snapshot="device"``
    (on a GPU: no copy over the bus, for one more copy of the state in GPU memory).

    Parameter groups keep their ratios to each other; ``result.suggested_lrs`` has one rate per
    group. With an optimizer that maximizes (``maximize=True``) the recorded curve is the
    negation of what the loss function returns: the quantity the optimizer minimises.
    ``budget_steps`` (the planned training length) is recorded in ``result.settings``; a test
    longer than 30% of it gets a warning, and under 100 steps the suggestion skips its rule for
    Adam at a high gradient noise (docs/find.md). ``noise_batches``: before the ramp, that many batches
    are backpropagated with no update to measure the gradient's noise-to-signal ratio
    (``result.gradient_noise``); where it is low, the suggestion sits closer to the loss
    minimum's rate (docs/find.md); 0 skips it. ``amp``: ``True`` (float16 with a GradScaler on
    CUDA, bfloat16 elsewhere), ``"bf16"`` or ``"fp16"``, as the training loop runs. Rprop is
    refused: it reads ``lr`` only as its first step sizes.

    Under torch.distributed (a DDP model, one process per rank), call it on every rank: each
    step's loss is averaged over the ranks (``sync_ranks``, on by default when there is more than
    one), so every rank records the same curve, stops at the same step and gets the same
    suggestion; only rank 0 shows a progress bar.
    """
    from lrkit.adapters.distributed import is_main
    from lrkit.adapters.torch import (TorchTrainable, check_rate_is_swept, rate_caveat,
                                      snapshot_advice)

    if val_every is not None and val_loader is None:
        raise LrkitError("val_every needs a val_loader: pass val_loader=... or drop val_every")
    if criterion is not None and loss_fn is not None:
        raise LrkitError(
            "both a criterion and a loss_fn were given, and only one computes the loss: pass "
            "criterion for (inputs, targets) batches, criterion(model(inputs), targets), or "
            "loss_fn(model, batch) for any other batch format, not both")
    check_range(start_lr, end_lr, num_steps, ramp)  # before any arithmetic on them
    check_rate_is_swept(optimizer, end_lr=end_lr, num_steps=num_steps)
    trainable = TorchTrainable(
        model, optimizer, train_loader, criterion, loss_fn=loss_fn, val_loader=val_loader,
        val_batches=val_batches, accumulation_steps=accumulation_steps, amp=amp,
        max_grad_norm=max_grad_norm, device=device, snapshot=snapshot, snapshot_dir=snapshot_dir,
        sync_ranks=sync_ranks,
    )
    if progress is None and not is_main():
        progress = False  # one bar for the job, not one per rank
    started = time.perf_counter()
    result = range_test(
        trainable, start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, ramp=ramp,
        smoothing=smoothing, diverge_threshold=diverge_threshold, val_every=val_every,
        method=method, budget_steps=budget_steps, noise_batches=noise_batches,
        progress=progress,
    )
    caveat = rate_caveat(optimizer)
    if caveat:
        result.warnings.insert(0, caveat)
    advice = snapshot_advice(trainable.device.type, snapshot, trainable.copy_seconds,
                             time.perf_counter() - started)
    if advice:
        result.warnings.append(advice)
    if val_loader is not None and val_every is None:
        # the validation data was given, and the curve is the training loss's all the same
        result.warnings.append("a val_loader was given without val_every, so no validation "
                               "loss was measured and the curve is the training loss; pass "
                               "val_every=K to evaluate the validation subset every K steps")
    # how each step was taken, for the record (JSON export, reports)
    result.settings.update(accumulation_steps=trainable.accumulation_steps,
                           amp=trainable.precision,
                           max_grad_norm=trainable.max_grad_norm)
    return result
