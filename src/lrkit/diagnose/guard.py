"""Guard a training loop's optimizer step against spikes and non-finite losses or gradients.

::

    guard = lrkit.Guard(model, optimizer)
    for inputs, targets in loader:
        def closure():
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            return loss
        loss = guard.step(closure)      # instead of loss = closure(); optimizer.step()

Each step it checks the loss and the gradient norm (one host sync for both). A non-finite loss or
gradient, or a loss more than ``spike_factor`` times the median of the recent good losses, is an
incident: the guard restores the last good snapshot of the model and optimizer (an exact
:class:`lrkit.state.Snapshot`, RNG included), multiplies every group's rate by ``lr_factor``,
skips the batch and returns. After ``max_retries`` incidents with no new snapshot in between it
raises :class:`GuardError`. Every intervention is recorded in ``guard.interventions`` and logged.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
from typing import Any, Callable

import torch

from lrkit.errors import LrkitError, require
from lrkit.state import Snapshot

LOGGER = logging.getLogger("lrkit.diagnose")


class GuardError(LrkitError):
    """The guard ran out of retries: lowering the rate and rolling back did not help."""


@dataclasses.dataclass
class Intervention:
    step: int  #: the guard's step count when it happened
    reason: str  #: "nonfinite_loss", "nonfinite_grad" or "spike"
    loss: float
    reference: float | None  #: the median of the recent good losses
    grad_norm: float | None
    lr_before: list[float]
    lr_after: list[float]
    restored_to: int  #: the step the snapshot was taken at

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in data.items()}


class Guard:
    """Wrap the optimizer step (see the module docstring).

    ``spike_factor``: a loss this many times the median of the last ``window`` good losses is a
    spike (``None``: only non-finite values are incidents); spikes are only judged after
    ``warmup`` good steps. ``lr_factor``: rate multiplier per incident. ``snapshot_every``: good
    steps between snapshots (one snapshot is kept; its size is one copy of the parameters, buffers,
    gradients and optimizer state). ``snapshot``: ``"cpu"`` (host memory) or ``"disk"`` (a private
    temporary file in ``snapshot_dir``). ``max_retries``: incidents allowed since the last
    snapshot. ``check_grads``: also check the gradient norm. ``scheduler``: an LR scheduler whose
    ``base_lrs`` should be lowered too, so that it does not undo the guard's change.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        spike_factor: float | None = 5.0,
        window: int = 50,
        warmup: int = 10,
        lr_factor: float = 0.5,
        snapshot_every: int = 50,
        snapshot: str = "cpu",
        snapshot_dir: str | os.PathLike | None = None,
        max_retries: int = 5,
        check_grads: bool = True,
        scheduler: Any = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise LrkitError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise LrkitError(f"optimizer must be a torch.optim.Optimizer, got "
                             f"{type(optimizer).__name__}")
        require(spike_factor is None or spike_factor > 1,
                f"spike_factor must be > 1 (or None to ignore spikes), got {spike_factor!r}")
        require(0 < lr_factor < 1, f"lr_factor must be in (0, 1), got {lr_factor!r}")
        require(isinstance(snapshot_every, int) and snapshot_every >= 1,
                f"snapshot_every must be an integer >= 1, got {snapshot_every!r}")
        require(isinstance(max_retries, int) and max_retries >= 0,
                f"max_retries must be an integer >= 0, got {max_retries!r}")
        require(isinstance(window, int) and window >= 3, f"window must be >= 3, got {window!r}")
        require(snapshot in ("cpu", "disk"), f"snapshot must be 'cpu' or 'disk', got {snapshot!r}")
        self.model = model
        self.optimizer = optimizer
        self.spike_factor = spike_factor
        self.warmup = warmup
        self.lr_factor = lr_factor
        self.snapshot_every = snapshot_every
        self.snapshot_where = snapshot
        self.snapshot_dir = snapshot_dir
        self.max_retries = max_retries
        self.check_grads = check_grads
        self.scheduler = scheduler
        self.logger = logger or LOGGER
        self.interventions: list[Intervention] = []
        self.steps = 0  #: steps attempted
        self.good_steps = 0
        self.skipped = False  #: whether the last step was skipped
        self._recent: collections.deque[float] = collections.deque(maxlen=window)
        self._snapshot: Snapshot | None = None
        self._snapshot_step = 0
        self._since_snapshot = 0
        self._retries = 0
        self._scale_since_snapshot = 1.0

    # -- snapshots ----------------------------------------------------------------------------
    def take_snapshot(self) -> None:
        """Snapshot the current state now (also done automatically every ``snapshot_every``)."""
        if self._snapshot is not None:
            self._snapshot.discard()
        self._snapshot = Snapshot(self.model, self.optimizer, where=self.snapshot_where,
                                  directory=self.snapshot_dir)
        self._snapshot_step = self.steps
        self._since_snapshot = 0
        self._retries = 0
        self._scale_since_snapshot = 1.0

    @property
    def lrs(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def _grad_norm(self) -> torch.Tensor | None:
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"]
                 if p.grad is not None]
        if not grads:
            return None
        norms = torch._foreach_norm(grads)
        return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))

    # -- the step -----------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any]) -> float:
        """Run ``closure`` (zero_grad, forward, backward, return the loss), check the loss and the
        gradients, and take the optimizer step or roll back. Returns the loss as a float (the
        offending value when the step was skipped; see ``skipped``)."""
        if self._snapshot is None:
            self.take_snapshot()
        self.steps += 1
        loss = closure()
        if loss is None:
            raise LrkitError("the guarded closure returned None; return the loss tensor "
                             "(after calling loss.backward())")
        if isinstance(loss, torch.Tensor):
            values = [loss.detach().reshape(()).float()]
            norm = self._grad_norm() if self.check_grads else None
            if norm is not None:
                values.append(norm.to(values[0].device))
            host = torch.stack(values).cpu().tolist()  # one sync for loss and gradient norm
            loss_value = host[0]
            grad_norm = host[1] if len(host) > 1 else None
        else:
            loss_value = float(loss)
            norm = self._grad_norm() if self.check_grads else None
            grad_norm = float(norm) if norm is not None else None

        reason = None
        reference = None
        if not math.isfinite(loss_value):
            reason = "nonfinite_loss"
        elif grad_norm is not None and not math.isfinite(grad_norm):
            reason = "nonfinite_grad"
        elif (self.spike_factor is not None and len(self._recent) >= self.warmup):
            reference = sorted(self._recent)[len(self._recent) // 2]
            if reference > 0 and loss_value > self.spike_factor * reference:
                reason = "spike"
        if reason is not None:
            self._intervene(reason, loss_value, reference, grad_norm)
            return loss_value

        self.optimizer.step()
        self.skipped = False
        self.good_steps += 1
        self._recent.append(loss_value)
        self._since_snapshot += 1
        if self._since_snapshot >= self.snapshot_every:
            self.take_snapshot()
        return loss_value

    def _intervene(self, reason: str, loss: float, reference: float | None,
                   grad_norm: float | None) -> None:
        self.skipped = True
        lr_before = self.lrs
        self.optimizer.zero_grad(set_to_none=True)
        if self._retries >= self.max_retries:
            record = Intervention(self.steps, reason, loss, reference, grad_norm, lr_before,
                                  lr_before, self._snapshot_step)
            self.interventions.append(record)
            raise GuardError(
                f"training is still failing ({reason.replace('_', ' ')}, loss {loss:.4g}) after "
                f"{self.max_retries} rollbacks and rate cuts to {lr_before[0]:.3g} since step "
                f"{self._snapshot_step}; the problem is probably not the rate alone (check the "
                "data, the loss and the model) -- or raise max_retries. Interventions: "
                + ", ".join(f"step {i.step} {i.reason}" for i in self.interventions[-6:]))
        assert self._snapshot is not None
        self._snapshot.restore()
        self._retries += 1
        self._scale_since_snapshot *= self.lr_factor
        # the snapshot brought back the rates of its time: apply every cut made since
        for group in self.optimizer.param_groups:
            value = group["lr"] * self._scale_since_snapshot
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value
        if self.scheduler is not None and hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [lr * self.lr_factor for lr in self.scheduler.base_lrs]
        self.optimizer.zero_grad(set_to_none=True)
        record = Intervention(self.steps, reason, loss, reference, grad_norm, lr_before, self.lrs,
                              self._snapshot_step)
        self.interventions.append(record)
        self.logger.warning(
            "lrkit guard step %d: %s (loss %.4g%s); restored the snapshot of step %d, rate %s -> "
            "%s, batch skipped (retry %d of %d)", self.steps, reason.replace("_", " "), loss,
            f", {loss / reference:.1f}x the recent median" if reference else "",
            self._snapshot_step, _fmt(lr_before), _fmt(self.lrs), self._retries, self.max_retries)

    def summary(self) -> dict:
        return {"steps": self.steps, "good_steps": self.good_steps,
                "interventions": [i.to_dict() for i in self.interventions], "lrs": self.lrs}

    def close(self) -> None:
        """Free the snapshot (and its file when on disk)."""
        if self._snapshot is not None:
            self._snapshot.discard()
            self._snapshot = None


def _fmt(lrs: list[float]) -> str:
    return ", ".join(f"{lr:.3g}" for lr in lrs)
