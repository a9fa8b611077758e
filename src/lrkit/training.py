"""Plain training runs at a given rate (constant or a schedule), shared by the benchmarks, sweeps,
diagnosis examples and recipe checks, so that every part trains the same way."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch

from lrkit.adapters.torch import batch_loss, maximizes, model_device, move_to, moves_batches
from lrkit.errors import LrkitError, one_number, plain_int, require
from lrkit.problem import Problem


@dataclasses.dataclass
class TrainingRun:
    """What one training run produced: the per-step losses and rates, and the final evaluation."""

    losses: list[float]
    lrs: list[float]
    val_loss: float  #: without a validation loader: the mean training loss of the last 5% of steps
    metric: float | None
    diverged: bool
    val_curve: list[tuple[int, float]] = dataclasses.field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.losses)

    def to_dict(self) -> dict:
        """The run as strict JSON-ready data: NaN and infinity (a diverged run's last loss and
        its ``val_loss``) as ``None``, as the other results write them (``diverged`` says why)."""
        return _json_ready(dataclasses.asdict(self))


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, tuple):  # (val_curve's (step, loss) pairs stay pairs, as asdict keeps)
        return tuple(_json_ready(v) for v in value)
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


@torch.no_grad()
def evaluate(problem: Problem, loader: Iterable | None = None) -> float:
    """Mean loss over a full pass of ``loader`` (default: the problem's validation loader).

    With an optimizer that maximizes (``maximize=True``) it is the negated value, as the range
    test and the training losses record it: lower is better everywhere. Each module's own
    train/eval flag comes back afterwards (a submodule kept in eval stays so)."""
    loader = problem.val_loader if loader is None else loader
    if loader is None:
        return math.nan
    model = problem.model
    sign = -1.0 if problem.optimizer is not None and maximizes(problem.optimizer) else 1.0
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    device = model_device(model)
    total = count = 0.0
    batches = 0
    try:
        move = not moves_batches(problem.loss_fn)
        for batch in loader:
            moved = move_to(batch, device) if move else batch
            value = float(batch_loss(model, moved, problem.criterion, problem.loss_fn))
            # each batch's mean weighted by its samples: the mean over the validation set (a
            # last batch of 1 sample weighed as much as 64, and 65 samples read 50 for 1.54)
            size = _batch_size(batch)
            total += value * size
            count += size
            batches += 1
    finally:
        for module, training in modes:
            module.training = training
    if not batches:
        if isinstance(loader, Iterator):  # (one read already was said to be empty)
            raise LrkitError("the validation loader yielded no batch: it is a one-shot iterator "
                             f"({type(loader).__name__}), read already by an earlier "
                             "evaluation, or empty; pass one that can be read again (a list of "
                             "batches or a DataLoader)")
        raise LrkitError("the validation loader yielded no batch (empty, or smaller than one "
                         "batch with drop_last=True), so there is no validation loss; give it "
                         "data or leave val_loader out")
    return sign * total / count


def _batch_size(batch: Any) -> int:
    """Samples in a batch: for ``(inputs, ..., targets)`` the targets' first dimension where
    another item agrees with it (not a class-weight vector or a scalar at the end); else the
    first dimension of its inputs (a dict's or a dataclass's first field, walked down), a list
    of sequences or plain items (strings, ids) counting one sample an item; 1 when nothing
    tells. (The walk went into the first sequence of such a list and took its length, and
    weighed a batch of strings or a dataclass as one sample.)"""
    if isinstance(batch, (list, tuple)) and len(batch) >= 2 and isinstance(batch[-1], torch.Tensor) \
            and batch[-1].dim():
        targets = int(batch[-1].shape[0])
        if any(_leading(item) == targets for item in batch[:-1]):
            return targets
    top = True
    while True:
        if isinstance(batch, torch.Tensor):
            return int(batch.shape[0]) if batch.dim() else 1
        if isinstance(batch, Mapping) and batch:
            batch = next(iter(batch.values()))
        elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
            fields = dataclasses.fields(batch)
            if not fields:
                return 1
            batch = getattr(batch, fields[0].name)
        elif isinstance(batch, (list, tuple)) and batch:
            # a batch's own fields at the top ((inputs, targets)); below it, a list holds one
            # sample an item (sequences of their own lengths, strings, ids)
            if not top or all(isinstance(item, (str, bytes, int, float)) for item in batch):
                return len(batch)
            batch = batch[0]
        else:
            return 1
        top = False


def _leading(item: Any) -> int | None:
    """An item's count of samples as it stands: a tensor's first dimension, a list's length."""
    if isinstance(item, torch.Tensor):
        return int(item.shape[0]) if item.dim() else None
    if isinstance(item, (list, tuple)):
        return len(item)
    return None


def tail_mean(losses: list[float], share: float = 0.05) -> float:
    """The mean of the last ``share`` of the losses (at least one): a run's final training loss,
    the stand-in for a validation loss when a problem has no validation loader."""
    tail = losses[-max(1, int(len(losses) * share)):]
    return math.fsum(tail) / len(tail) if tail else math.nan


def train(
    problem: Problem,
    *,
    lr: float | Callable[[int], float],
    steps: int,
    seed: int | None = None,
    eval_every: int | None = None,
    on_step: Callable[[int, float, float], bool | None] | None = None,
    **trainable_options,
) -> TrainingRun:
    """Train ``problem`` for ``steps`` optimizer steps at ``lr`` (a float, or a function of the
    step returning the rate). Stops at the first non-finite loss and reports ``diverged``.

    ``on_step(step, loss, lr)`` is called after every step; returning ``True`` stops the run
    early (sweeps use it to prune). ``eval_every`` records the validation loss every k steps
    (it needs the problem's ``val_loader``; ``None`` or 0: none)."""
    steps = plain_int(steps)
    require(isinstance(steps, int) and steps >= 1, f"steps must be an integer >= 1, got {steps!r}")
    if eval_every is not None:  # (None and 0: no evaluations)
        eval_every = plain_int(eval_every)
        # ("2" failed in %, -1 evaluated after every step, 2.5 at odd steps)
        require(isinstance(eval_every, int) and not isinstance(eval_every, bool)
                and eval_every >= 0, f"eval_every must be an integer >= 1 (or None), got "
                f"{eval_every!r}")
        # (without validation data it recorded a curve of NaN)
        require(not eval_every or problem.val_loader is not None,
                f"eval_every={eval_every} records the validation loss every {eval_every} steps, "
                "and the problem has no val_loader; give it one or leave eval_every out")
    if seed is not None:
        torch.manual_seed(seed)
    trainable = problem.trainable(**trainable_options)
    if not callable(lr):  # (a string "0.1" was taken as the rate)
        value = one_number(lr)  # (a negative or NaN one: the check of each step's rate names it)
        require(value is not None,
                f"lr must be a finite number >= 0 or a function of the step, got {lr!r}")
        lr = value
    rate = lr if callable(lr) else (lambda _step, _lr=lr: _lr)
    losses: list[float] = []
    lrs: list[float] = []
    val_curve: list[tuple[int, float]] = []
    diverged = False
    for step in range(steps):
        given = rate(step)
        # (a float, a numpy number, a one-number tensor; a float checked without a call)
        current = given if type(given) is float else one_number(given)
        require(current is not None and math.isfinite(current) and current >= 0,
                f"the rate at step {step} is {given!r}; give a finite rate >= 0 (a negative "
                "one ascends the loss)")
        loss = trainable.train_step(current)
        losses.append(loss)
        lrs.append(current)
        if not math.isfinite(loss):
            diverged = True
            break
        if eval_every and (step + 1) % eval_every == 0:
            val_curve.append((step + 1, evaluate(problem)))
        if on_step is not None and on_step(step, loss, current):
            break
    if diverged:
        val_loss = math.inf
    elif problem.val_loader is None:  # no validation data: the mean loss of the last 5% of steps
        val_loss = tail_mean(losses)
    else:
        val_loss = evaluate(problem)
    if not math.isfinite(val_loss):
        diverged = True
        val_loss = math.inf
    metric = None
    if problem.metric_fn is not None and not diverged and problem.val_loader is not None:
        metric = float(problem.metric_fn(problem.model, problem.val_loader))
    return TrainingRun(losses, lrs, val_loss, metric, diverged, val_curve)
