"""The small interface the finder, training runs and sweeps drive.

The core of lrkit never touches a model or a data loader: it asks a *trainable* to train one step
at a given rate and report the loss. PyTorch is the first adapter (:mod:`lrkit.adapters.torch`);
a plain function is another (:mod:`lrkit.adapters.function`); Lightning or Hugging Face adapters can
follow without touching the core.

Optional: ``gradient_noise(k) -> float | None``, the gradient's noise-to-signal ratio at the
training batch size measured on ``k`` batches with no update (:mod:`lrkit.find.noise`). The range
test asks for it before its ramp when a trainable has it; the PyTorch adapter does. With it,
``optimizer_family: str``, "adam" for Adam's kind (first and second moments), "sgd" or "other"
(the default): ``edge`` reads a high noise differently under Adam
(:func:`lrkit.find.suggest.edge_fraction`).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol, Sequence, runtime_checkable


@runtime_checkable
class Trainable(Protocol):
    """One thing lrkit can train, a step at a time."""

    #: each parameter group's rate divided by the reference (first non-zero) group's rate
    group_ratios: Sequence[float]

    def train_step(self, lr: float) -> float:
        """Set the reference rate to ``lr`` (other groups keep their ratio), take one optimizer
        step, and return the training loss of that step as a float (NaN/inf allowed)."""
        ...

    def eval_loss(self) -> float | None:
        """Loss on a fixed small validation subset, or ``None`` when there is no validation data."""
        ...

    def preserved(self) -> AbstractContextManager[None]:
        """Context manager that restores every piece of state ``train_step`` changes on exit,
        whether the body returns or raises."""
        ...
