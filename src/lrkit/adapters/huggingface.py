"""Hugging Face adapter: a configured ``transformers.Trainer`` as an lrkit :class:`~lrkit.problem.Problem`.

The Trainer already knows everything a range test needs: the model, how it builds its optimizer
(``create_optimizer``, with its weight-decay groups), its data loader (collator, batch size) and
its loss (``compute_loss``). So::

    from lrkit.adapters.huggingface import find_lr
    result = find_lr(trainer, update_args=True)   # trainer.args.learning_rate = the suggestion
    trainer.train()

runs lrkit's range test through the Trainer's own pieces, with its gradient accumulation and
clipping, and leaves the Trainer as it was (model restored bit for bit; no optimizer or
scheduler left behind for ``train()`` to reuse). ``MonitorCallback`` watches ``trainer.train()``
in plain words. transformers is imported only by the callback (``pip install transformers``).
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable

from lrkit.diagnose.monitor import MonitorRuns
from lrkit.errors import LrkitError
from lrkit.problem import Problem

__all__ = ["from_trainer", "find_lr", "MonitorCallback"]


def _check_trainer(trainer: Any) -> None:
    needed = ("model", "args", "get_train_dataloader", "create_optimizer", "compute_loss")
    missing = [name for name in needed if not hasattr(trainer, name)]
    if missing:
        raise LrkitError(f"from_trainer needs a transformers.Trainer, got "
                         f"{type(trainer).__name__} (no {', '.join(missing)})")
    if getattr(trainer, "train_dataset", None) is None:
        raise LrkitError("the Trainer has no train_dataset: pass train_dataset=... when building "
                         "it, as trainer.train() would need")


def _fresh_optimizer(trainer: Any) -> Any:
    """The optimizer ``trainer.train()`` would use: the one the Trainer holds (given to it, or
    left by an earlier ``train()``), or the one ``create_optimizer`` builds, which is not left on
    the Trainer (``train()`` would then reuse it, at the old rate)."""
    if trainer.optimizer is not None:
        held = trainer.optimizer
        # after a train(), accelerate's wrapper: the optimizer inside it is the one to name,
        # tune and rebuild (the wrapper shares its param_groups)
        inner = getattr(held, "optimizer", None)
        if type(held).__name__ == "AcceleratedOptimizer" and inner is not None:
            return inner
        return held
    optimizer = trainer.create_optimizer()
    trainer.optimizer = None
    return optimizer


def _planned_steps(trainer: Any, loader: Any) -> int | None:
    """Optimizer steps that ``trainer.train()`` will take, as its arguments say."""
    args = trainer.args
    if getattr(args, "max_steps", -1) and args.max_steps > 0:
        return int(args.max_steps)
    try:
        batches = len(loader)
    except TypeError:
        return None
    per_epoch = max(1, math.ceil(batches / max(1, args.gradient_accumulation_steps)))
    return max(1, math.ceil(per_epoch * float(args.num_train_epochs)))


def _loss_fn(trainer: Any, accumulation: int) -> Callable[[Any, Any], Any]:
    """The loss of one micro-batch as ``Trainer.training_step`` backpropagates it.

    The Trainer passes ``num_items_in_batch`` (the labelled items of the whole accumulation
    window) and divides by the accumulation steps only when the loss is not already a share of
    the window; lrkit always divides. So the window is taken as ``accumulation`` batches like
    this one, and a loss that the Trainer would not divide is multiplied back."""
    import torch

    prepare = getattr(trainer, "_prepare_inputs", None)
    count = getattr(trainer, "_get_num_items_in_batch", None)
    try:
        parameters = inspect.signature(trainer.compute_loss).parameters.values()
    except (TypeError, ValueError):
        parameters = []
    # training_step passes num_items_in_batch= by keyword: an override that takes **kwargs (and
    # hands them to super().compute_loss, as most do) gets it too
    takes_items = any(p.name == "num_items_in_batch" or p.kind is inspect.Parameter.VAR_KEYWORD
                      for p in parameters)

    def loss_fn(model: Any, batch: Any) -> Any:
        inputs = prepare(batch) if prepare is not None else batch
        if not torch.is_grad_enabled():
            # an evaluation: the loss as Trainer.prediction_step computes it (no count of items,
            # no rescaling for accumulation), so the validation loss is the Trainer's eval_loss
            # (it read accumulation times eval_loss)
            return trainer.compute_loss(model, inputs)
        items = None
        if takes_items and count is not None:
            try:
                items = count([inputs], next(model.parameters()).device)
            except (TypeError, AttributeError, StopIteration):
                items = None
        if items is not None:
            items = items * accumulation
            loss = trainer.compute_loss(model, inputs, num_items_in_batch=items)
        else:
            loss = trainer.compute_loss(model, inputs)
        scaled = getattr(trainer, "loss_is_scaled_for_ga", None)
        if scaled is None:
            scaled = ((getattr(trainer, "model_accepts_loss_kwargs", False) and items is not None)
                      or getattr(trainer, "compute_loss_func", None) is not None)
        return loss * accumulation if scaled and accumulation > 1 else loss

    return loss_fn


def _eval_loader(trainer: Any, eval_key: str | None) -> Any:
    data = getattr(trainer, "eval_dataset", None)
    if eval_key is not None and not isinstance(data, dict):
        # (it was ignored: validation ran on another dataset than the one named, or on none)
        raise LrkitError(f"eval_key={eval_key!r} names one of a dict of eval datasets, but the "
                         f"Trainer's eval_dataset is "
                         f"{'None' if data is None else type(data).__name__}: build the Trainer "
                         "with eval_dataset={name: dataset, ...}, or leave eval_key out")
    if data is None:
        return None
    if isinstance(data, dict):
        if eval_key is None:
            eval_key = next(iter(data))
        elif eval_key not in data:
            raise LrkitError(f"eval_key={eval_key!r} is not one of the Trainer's eval datasets "
                             f"{sorted(data)}")
        return trainer.get_eval_dataloader(data[eval_key])
    return trainer.get_eval_dataloader()


def from_trainer(trainer: Any, *, budget_steps: int | None = None,
                 eval_key: str | None = None) -> Problem:
    """An lrkit :class:`Problem` from a ``transformers.Trainer``: its model, the optimizer its
    ``create_optimizer`` builds (or the one it holds), its train and eval data loaders (of a dict
    of eval datasets, ``eval_key``'s, default the first) and its ``compute_loss`` as its
    ``training_step`` calls it. ``budget_steps`` defaults to the steps ``trainer.train()`` will
    take."""
    _check_trainer(trainer)
    loader = trainer.get_train_dataloader()
    accumulation = max(1, int(trainer.args.gradient_accumulation_steps))
    clip = trainer.args.max_grad_norm
    # a step as training_step takes it: the Trainer's accumulation, clipping (<= 0: off) and
    # mixed precision, for the range test, recommend's short runs and sweeps alike
    step_options = {"accumulation_steps": accumulation,
                    "max_grad_norm": clip if clip and clip > 0 else None,
                    "amp": _mixed_precision(trainer)}
    if _several_processes(trainer):
        # under torchrun the Trainer's model is not DDP-wrapped until train(), so a step would
        # not average the ranks' losses by itself: each rank stopped a range test or a short run
        # at its own step (and hung in the gather of _get_num_items_in_batch, or crashed its
        # peer: recommend(from_trainer(trainer))), or chose its own rate
        step_options["sync_ranks"] = True
    return Problem(model=trainer.model, optimizer=_fresh_optimizer(trainer), train_loader=loader,
                   loss_fn=_loss_fn(trainer, accumulation), val_loader=_eval_loader(trainer, eval_key),
                   name=type(trainer.model).__name__,
                   budget_steps=(_planned_steps(trainer, loader) if budget_steps is None
                                 else budget_steps),
                   step_options=step_options)


def find_lr(trainer: Any, *, update_args: bool = False, eval_key: str | None = None,
            **finder_options: Any):
    """:func:`lrkit.find_lr` through a ``transformers.Trainer`` (see :func:`from_trainer`), with
    the Trainer's gradient accumulation, gradient clipping and mixed precision unless given.

    ``update_args``: make ``trainer.train()`` use the suggestion: ``args.learning_rate`` (and
    the ``lr`` of ``optimizer_cls_and_kwargs``, its class's default when it gives none) move by
    the factor the parameter groups' base rates moved by, so that groups built at different
    rates each get their own suggestion, and an optimizer the Trainer already holds has its
    groups (``lr``, ``initial_lr``, and its scheduler's base rates) set too."""
    import torch

    import lrkit
    from lrkit.state import at_base_rates

    for name, instead in (("loss_fn", "compute_loss_func=... to the Trainer (or override "
                                      "its compute_loss)"),
                          ("criterion", "compute_loss_func=... to the Trainer"),
                          ("val_loader", "eval_dataset=... to the Trainer, and val_every=K here")):
        if name in finder_options:
            raise LrkitError(f"find_lr(trainer) takes the Trainer's own {name.replace('_', ' ')}"
                             f": instead of {name}=..., pass {instead}")
    problem = from_trainer(trainer, budget_steps=finder_options.pop("budget_steps", None),
                           eval_key=eval_key)
    args = trainer.args
    optimizer = problem.optimizer
    finder_options = {**problem.step_options, **finder_options}  # sync_ranks too (from_trainer)
    val_loader = problem.val_loader if finder_options.get("val_every") is not None else None
    if finder_options.get("val_every") is not None and val_loader is None:
        raise LrkitError("val_every needs validation data: build the Trainer with eval_dataset=...")
    # schedule-free optimizers step only in train mode (Trainer.training_step switches them)
    was_eval = _schedule_free_mode(optimizer) is False
    # its eval() after train() is not the identity in floating point (each interpolates the
    # weights with z): the eval-mode weights are kept, to come back bit for bit (a copy of the
    # parameters, in this case only)
    params = [p for g in optimizer.param_groups for p in g["params"]] if was_eval else []
    kept = [p.detach().clone() for p in params]
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()
    # a scheduler moved the rates (a train() whose schedule ran out, a warmup from 0): the test
    # runs at the rates train() starts from, and the suggestion is measured against them
    try:
        with at_base_rates(optimizer):
            old_lrs = [float(g["lr"]) for g in optimizer.param_groups]
            result = lrkit.find_lr(problem.model, optimizer, problem.train_loader,
                                   loss_fn=problem.loss_fn, val_loader=val_loader,
                                   budget_steps=problem.budget_steps, **finder_options)
    finally:
        if was_eval:
            optimizer.eval()
            with torch.no_grad():
                for param, value in zip(params, kept):
                    param.copy_(value)
    # measured on the first group with a rate (one held still at 0 keeps its 0)
    reference = next((i for i, lr in enumerate(old_lrs) if lr > 0), None)
    # (the range test measures every group's ratio against that same group: its rate is
    # suggested_lr itself; without a suggestion, nothing to apply)
    if update_args and reference is not None and result.suggested_lr is not None:
        _apply(trainer, optimizer, result.suggested_lr / old_lrs[reference])
    return result


def _several_processes(trainer: Any) -> bool:
    """Whether the Trainer runs as one of several processes (torchrun, accelerate launch)."""
    import torch

    try:
        size = int(getattr(trainer.args, "world_size", 1) or 1)
    except (TypeError, ValueError):
        size = 1
    return (size > 1 and torch.distributed.is_available()
            and torch.distributed.is_initialized())


def _mixed_precision(trainer: Any) -> str | bool:
    """The autocast ``trainer.train()`` runs the forward pass under ("bf16", "fp16" or False):
    accelerate's native mixed precision, which bf16 turns on everywhere but fp16 only off the CPU
    (on the CPU a Trainer with fp16=True trains in float32, and so does the test). bf16 stays
    bf16 on CUDA too (lrkit's ``amp=True`` would be float16 there)."""
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "native_amp"):
        mode = getattr(accelerator, "mixed_precision", "no")
        mode = str(getattr(mode, "value", mode))
        return mode if bool(accelerator.native_amp) and mode in ("fp16", "bf16") else False
    args = trainer.args
    if getattr(args, "bf16", False):
        return "bf16"
    return "fp16" if getattr(args, "fp16", False) else False


def _schedule_free_mode(optimizer: Any) -> bool | None:
    groups = getattr(optimizer, "param_groups", None) or [{}]
    mode = groups[0].get("train_mode")
    return None if mode is None else bool(mode)


def _apply(trainer: Any, optimizer: Any, factor: float) -> None:
    """Move every place ``train()`` reads its rate from by ``factor``."""
    import torch

    args = trainer.args
    args.learning_rate = float(args.learning_rate * factor)
    cls_and_kwargs = getattr(trainer, "optimizer_cls_and_kwargs", None)
    if cls_and_kwargs is not None and isinstance(cls_and_kwargs[1], dict):
        # Trainer(optimizer_cls_and_kwargs=...) builds with these kwargs, not args.learning_rate:
        # their lr, or without one the class's default (the tested optimizer's), moves
        cls, kwargs = cls_and_kwargs
        if "lr" in kwargs:
            kwargs["lr"] = float(kwargs["lr"] * factor)
        elif isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) \
                and "lr" in getattr(optimizer, "defaults", {}):
            kwargs["lr"] = float(optimizer.defaults["lr"] * factor)
    if trainer.optimizer is not None:  # held by the Trainer: train() reuses it
        for group in optimizer.param_groups:
            group["lr"] = float(group["lr"] * factor)
            if "initial_lr" in group:
                group["initial_lr"] = float(group["initial_lr"] * factor)
        scheduler = getattr(trainer, "lr_scheduler", None)
        if scheduler is not None and hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [float(lr * factor) for lr in scheduler.base_lrs]


def _world_zero(state: Any) -> bool:
    """Whether this is the main process, which alone writes the log and logs."""
    return bool(getattr(state, "is_world_process_zero", True))


class _MonitorHooks(MonitorRuns):
    """The callback's behaviour, independent of transformers' base class."""

    def __init__(self, *, val_key: str = "eval_loss", **monitor_options: Any) -> None:
        super().__init__(val_key=val_key, **monitor_options)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Each ``train()`` (a hyperparameter-search trial, say) gets a Monitor of its own;
        under several processes only the main one writes the log file and logs."""
        self._start_run(_world_zero(state))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        logs = logs or {}
        if "loss" in logs:  # the mean training loss since the last log
            loss = float(logs["loss"])
            # with logging_nan_inf_filter (the default) the Trainer logs NaN/inf step losses as
            # the window's mean so far (0.0 once every step is NaN); the gradient norm it logs
            # with clipping is not filtered, and tells. Except under fp16's loss scaler: it skips
            # each step whose scaled gradients overflowed (often the first few of a run) and
            # lowers its scale, and the loss was fine; there a window of NaN losses is the 0.0
            # (accelerate's step_was_skipped cannot tell: fused optimizers skip by themselves)
            grad_norm = logs.get("grad_norm")
            if grad_norm is not None and not math.isfinite(float(grad_norm)):
                scaler = getattr(kwargs.get("optimizer"), "scaler", None)
                if scaler is None or loss == 0.0:
                    loss = math.nan
            self._current(_world_zero(state)).update(loss, lr=logs.get("learning_rate"))
        if self.val_key in logs:
            self._current(_world_zero(state)).update_val(float(logs[self.val_key]))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._end_run()


_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    global _CLASS
    if name == "MonitorCallback":
        if _CLASS is None:
            try:
                from transformers import TrainerCallback
            except ImportError as error:
                raise LrkitError("MonitorCallback needs transformers: pip install "
                                 "'lrkit[huggingface]' (the plain lrkit.Monitor needs nothing)"
                                 ) from error
            _CLASS = type("MonitorCallback", (_MonitorHooks, TrainerCallback), {
                "__doc__": "lrkit's Monitor as a transformers TrainerCallback: one update per "
                           "logged training loss (every ``logging_steps``; a non-finite logged "
                           "grad_norm marks it NaN), ``val_key`` (default eval_loss; "
                           "eval_NAME_loss for a dict of eval datasets) as the validation "
                           "curve, a report at the end of each train().",
                "__module__": __name__,
            })
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
