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

import math
from typing import Any, Callable

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
    """The optimizer ``trainer.train()`` would build, without leaving it on the Trainer (which
    would then reuse it, with the old rate, after ``update_args``)."""
    if trainer.optimizer is not None:
        return trainer.optimizer
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
    per_epoch = max(1, batches // max(1, args.gradient_accumulation_steps))
    return max(1, math.ceil(per_epoch * float(args.num_train_epochs)))


def _loss_fn(trainer: Any) -> Callable[[Any, Any], Any]:
    prepare = getattr(trainer, "_prepare_inputs", None)

    def loss_fn(model: Any, batch: Any) -> Any:
        inputs = prepare(batch) if prepare is not None else batch
        return trainer.compute_loss(model, inputs)

    return loss_fn


def from_trainer(trainer: Any, *, budget_steps: int | None = None) -> Problem:
    """An lrkit :class:`Problem` from a ``transformers.Trainer``: its model, the optimizer its
    ``create_optimizer`` builds (or the one it was given), its train and eval data loaders and
    its ``compute_loss``. ``budget_steps`` defaults to the steps ``trainer.train()`` will take."""
    _check_trainer(trainer)
    loader = trainer.get_train_dataloader()
    val = (trainer.get_eval_dataloader() if getattr(trainer, "eval_dataset", None) is not None
           else None)
    return Problem(model=trainer.model, optimizer=_fresh_optimizer(trainer), train_loader=loader,
                   loss_fn=_loss_fn(trainer), val_loader=val, name=type(trainer.model).__name__,
                   budget_steps=budget_steps or _planned_steps(trainer, loader))


def find_lr(trainer: Any, *, update_args: bool = False, **finder_options: Any):
    """:func:`lrkit.find_lr` through a ``transformers.Trainer`` (see :func:`from_trainer`), with
    the Trainer's gradient accumulation and gradient clipping unless given. ``update_args``:
    set ``trainer.args.learning_rate`` to the suggestion, for ``trainer.train()``."""
    import lrkit

    problem = from_trainer(trainer, budget_steps=finder_options.pop("budget_steps", None))
    args = trainer.args
    finder_options.setdefault("accumulation_steps", max(1, int(args.gradient_accumulation_steps)))
    finder_options.setdefault("max_grad_norm", args.max_grad_norm or None)
    val_loader = problem.val_loader if "val_every" in finder_options else None  # when asked
    result = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                           loss_fn=problem.loss_fn, val_loader=val_loader,
                           budget_steps=problem.budget_steps, **finder_options)
    if update_args and result.suggested_lr is not None:
        args.learning_rate = float(result.suggested_lr)
    return result


class _MonitorHooks:
    """The callback's behaviour, independent of transformers' base class."""

    def __init__(self, **monitor_options: Any) -> None:
        from lrkit.diagnose.monitor import Monitor

        self.monitor = Monitor(**monitor_options)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        logs = logs or {}
        if "loss" in logs:  # the mean training loss since the last log (NaN included)
            self.monitor.update(float(logs["loss"]), lr=logs.get("learning_rate"))
        if "eval_loss" in logs:
            self.monitor.update_val(float(logs["eval_loss"]))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.monitor.close()

    @property
    def diagnosis(self):
        return self.monitor.last


_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    global _CLASS
    if name == "MonitorCallback":
        if _CLASS is None:
            try:
                from transformers import TrainerCallback
            except ImportError as error:
                raise LrkitError("MonitorCallback needs transformers: pip install "
                                 "transformers (the plain lrkit.Monitor needs nothing)") from error
            _CLASS = type("MonitorCallback", (_MonitorHooks, TrainerCallback), {
                "__doc__": "lrkit's Monitor as a transformers TrainerCallback: one update per "
                           "logged training loss (every ``logging_steps``), eval_loss as the "
                           "validation curve, a report at the end of training.",
                "__module__": __name__,
            })
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
