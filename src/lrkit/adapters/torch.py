"""PyTorch adapter: any model, any ``torch.optim`` optimizer, any batch format.

The loss of a batch comes from, in order of precedence:

* ``loss_fn(model, batch)`` given by the user (dict batches, GANs, anything), or
* ``criterion(model(inputs), targets)`` for ``(inputs, targets)`` batches, or
* the model's own output when it carries the loss, as Hugging Face models do
  (``model(**batch)`` for dict batches, ``model(batch)`` otherwise).

Whatever returns the loss may return a scalar tensor, a dict with a ``"loss"`` entry or an object
with a ``.loss`` attribute.
"""
from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import time
from typing import Any, Callable, Iterable, Iterator

import torch

from lrkit.adapters.distributed import mean_over_ranks, should_sync, start_mean_over_ranks
from lrkit.errors import LrkitError, require
from lrkit.state import Snapshot

LossFn = Callable[[torch.nn.Module, Any], Any]


def move_to(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor in a nested batch (tuple, list, dict, dataclass-like mapping) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return type(batch)({k: move_to(v, device, non_blocking) for k, v in batch.items()})
    if isinstance(batch, (list, tuple)):
        moved = [move_to(v, device, non_blocking) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def on_device(batch: Any, device: torch.device) -> bool:
    """Whether every tensor in a nested batch already lives on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.device == device
    if isinstance(batch, dict):
        return all(on_device(v, device) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return all(on_device(v, device) for v in batch)
    return True


def extract_loss(output: Any) -> torch.Tensor:
    """The scalar loss tensor inside whatever a loss function or model returned."""
    loss = output
    if isinstance(output, dict):
        if "loss" not in output:
            raise LrkitError(
                f"the loss output is a dict without a 'loss' key (keys: {sorted(output)}); "
                "return the loss tensor, or pass loss_fn=lambda model, batch: ..."
            )
        loss = output["loss"]
    elif not isinstance(output, torch.Tensor) and hasattr(output, "loss"):
        loss = output.loss
    if not isinstance(loss, torch.Tensor):
        raise LrkitError(
            f"the loss must be a tensor, got {type(loss).__name__}; "
            "return a scalar tensor (or a dict/object holding one under 'loss')"
        )
    if loss.numel() != 1:
        raise LrkitError(
            f"the loss must be a scalar, got a tensor of shape {tuple(loss.shape)}; "
            "reduce it (for example with .mean()) or use a criterion with reduction='mean'"
        )
    return loss if loss.dim() == 0 else loss.reshape(())


def batch_loss(
    model: torch.nn.Module,
    batch: Any,
    criterion: Callable | None = None,
    loss_fn: LossFn | None = None,
) -> torch.Tensor:
    """The scalar loss of one batch, by the precedence described in the module docstring."""
    if loss_fn is not None:
        return extract_loss(loss_fn(model, batch))
    if criterion is not None:
        if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
            raise LrkitError(
                f"with a criterion, batches must be (inputs, targets) pairs, got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else "")
                + "; pass loss_fn=lambda model, batch: ... for other batch formats"
            )
        inputs, targets = batch
        return extract_loss(criterion(model(inputs), targets))
    output = model(**batch) if isinstance(batch, dict) else model(batch)
    return extract_loss(output)


def cycle_batches(loader: Iterable, name: str = "train_loader") -> Iterator[Any]:
    """Iterate ``loader`` forever, starting a new pass when one ends; refuse an empty loader."""
    if not isinstance(loader, Iterable):
        raise LrkitError(f"{name} must be iterable (a DataLoader or any iterable of batches)")
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise LrkitError(f"{name} is empty: it yielded no batch; give it at least one batch")
        if iter(loader) is loader:  # a one-shot iterator cannot be restarted: cycle what we saw
            raise LrkitError(
                f"{name} is a one-shot iterator and ran out; pass a re-iterable loader "
                "(a DataLoader or a list of batches)"
            )


def closure_required(cls: type) -> str | None:
    """Why an optimizer class cannot be driven one plain step at a time (``None`` if it can):
    LBFGS-like optimizers need a closure that re-evaluates the loss within one step."""
    try:
        param = inspect.signature(cls.step).parameters.get("closure")
    except (TypeError, ValueError):
        return None
    if param is None or param.default is not inspect.Parameter.empty:
        return None
    return (f"{cls.__name__}.step() needs a closure that re-evaluates the loss several times "
            "within one step (a line search); lrkit trains one step per rate, so measure the "
            "rate with a first-order optimizer (SGD, Adam, ...)")


def _check_optimizer(optimizer: Any) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise LrkitError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    reason = closure_required(type(optimizer))
    if reason:
        raise LrkitError(reason)
    for i, group in enumerate(optimizer.param_groups):
        if "lr" not in group:
            raise LrkitError(
                f"{type(optimizer).__name__} parameter group {i} has no 'lr': the finder needs an "
                "optimizer whose rate is set through param_groups[i]['lr']"
            )


class TorchTrainable:
    """Train a PyTorch model one optimizer step at a time (see the module docstring).

    Options: ``accumulation_steps`` micro-batches per optimizer step; ``amp`` runs the forward
    pass under autocast (float16 with a GradScaler on CUDA, bfloat16 elsewhere) on devices that
    support it; ``max_grad_norm`` clips gradients; ``val_loader`` with ``val_batches`` defines the
    fixed small validation subset ``eval_loss`` averages over. ``sync_ranks``: under
    torch.distributed (DDP), report every loss averaged over the ranks, so that all of them see
    the same curve and stop at the same step (default: when there is more than one rank and the
    model is a DDP/FSDP replica; see :mod:`lrkit.adapters.distributed`); with gradient
    accumulation, the micro-batches before the last skip DDP's gradient all-reduce (``no_sync``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: Iterable,
        criterion: Callable | None = None,
        *,
        loss_fn: LossFn | None = None,
        val_loader: Iterable | None = None,
        val_batches: int = 5,
        accumulation_steps: int = 1,
        amp: bool = False,
        max_grad_norm: float | None = None,
        device: str | torch.device | None = None,
        snapshot: str = "cpu",
        snapshot_dir: str | None = None,
        sync_ranks: bool | None = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise LrkitError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_optimizer(optimizer)
        require(
            isinstance(accumulation_steps, int) and accumulation_steps >= 1,
            f"accumulation_steps must be an integer >= 1, got {accumulation_steps!r}",
        )
        require(isinstance(val_batches, int) and val_batches >= 1,
                f"val_batches must be an integer >= 1, got {val_batches!r}")
        require(max_grad_norm is None or max_grad_norm > 0,
                f"max_grad_norm must be positive or None, got {max_grad_norm!r}")
        self.model = model
        self.optimizer = optimizer
        self.criterion = criterion
        self.loss_fn = loss_fn
        self.accumulation_steps = accumulation_steps
        self.max_grad_norm = max_grad_norm
        self.snapshot_where = snapshot
        self.snapshot_dir = snapshot_dir
        self.copy_seconds = 0.0  #: the last test's snapshot and restore, together
        if device is None:
            first = next(itertools.chain(model.parameters(), model.buffers()), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        self._train_loader = train_loader
        self._batches: Iterator[Any] | None = None
        self._move: bool | None = None  #: whether batches need moving to the device
        self._val_loader = val_loader
        self._val_batches = val_batches
        self._val_cache: list[Any] | None = None
        self._sync = should_sync(sync_ranks, model)
        #: DDP's no_sync() for the micro-batches before the last one
        self._no_sync = getattr(model, "no_sync", None) if accumulation_steps > 1 else None

        base = [float(g["lr"]) for g in optimizer.param_groups]
        reference = next((lr for lr in base if lr > 0), 0.0)
        self.group_ratios = [lr / reference if reference > 0 else 1.0 for lr in base]

        self.amp = bool(amp) and self.device.type in ("cuda", "cpu", "xpu", "mps")
        self._amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self._scaler = (
            torch.amp.GradScaler(self.device.type) if self.amp and self.device.type == "cuda" else None
        )

    # -- Trainable -------------------------------------------------------------------------------
    def set_lr(self, lr: float) -> None:
        for group, ratio in zip(self.optimizer.param_groups, self.group_ratios):
            value = lr * ratio
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._amp_dtype)

    def train_step(self, lr: float) -> float:
        if self._batches is None:
            self._batches = cycle_batches(self._train_loader)
        self.set_lr(lr)
        if not self.model.training:  # as a training loop would; cheap when already training
            self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        last = self.accumulation_steps - 1
        for index in range(self.accumulation_steps):
            if index == last or self._no_sync is None:
                value = self._micro_step()
            else:  # DDP: gradients summed locally, all-reduced once with the last micro-batch's
                with self._no_sync():
                    value = self._micro_step()
            total += value
            if not math.isfinite(value):
                # no update from a non-finite loss: the run is over, the caller records it
                self.optimizer.zero_grad(set_to_none=True)
                return value
        if self._scaler is not None:
            if self.max_grad_norm is not None:
                self._scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self._scaler.step(self.optimizer)
            self._scaler.update()
        else:
            if self.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
        return total / self.accumulation_steps

    def _micro_step(self) -> float:
        """Forward and backward of one micro-batch; its loss as a float (averaged over the ranks
        when synced). A non-finite loss is not backpropagated, except under DDP (below)."""
        batch = next(self._batches)
        if self._move is None:  # decided on the first batch: loaders keep their device
            self._move = not on_device(batch, self.device)
        if self._move:
            batch = move_to(batch, self.device)
        if self.amp:
            with self._autocast():
                loss = batch_loss(self.model, batch, self.criterion, self.loss_fn)
        else:
            loss = batch_loss(self.model, batch, self.criterion, self.loss_fn)
        # no division node in the graph when there is nothing to accumulate: on models with
        # sub-millisecond steps it and a detached copy cost a few percent of the step
        scaled = loss / self.accumulation_steps if self.accumulation_steps > 1 else loss
        if self._sync:
            # every rank backpropagates, a non-finite loss too (one that skipped it would leave
            # the others waiting in DDP's gradient all-reduce); the loss's own all-reduce runs
            # meanwhile, and train_step drops the update when the mean is not finite
            mean = start_mean_over_ranks(loss, self.device)
            self._backward(scaled)
            return mean().item()
        value = loss.item()
        if math.isfinite(value):
            self._backward(scaled)
        return value

    def _backward(self, scaled: torch.Tensor) -> None:
        if self._scaler is not None:
            self._scaler.scale(scaled).backward()
        else:
            scaled.backward()

    def _validation_subset(self) -> list[Any]:
        if self._val_cache is None:
            assert self._val_loader is not None
            self._val_cache = list(itertools.islice(iter(self._val_loader), self._val_batches))
            if not self._val_cache:
                raise LrkitError("val_loader is empty: it yielded no batch")
        return self._val_cache

    @torch.no_grad()
    def eval_loss(self) -> float | None:
        if self._val_loader is None:
            return None
        was_training = self.model.training
        self.model.eval()
        try:
            losses = []
            for batch in self._validation_subset():
                with self._autocast():
                    losses.append(float(batch_loss(
                        self.model, move_to(batch, self.device), self.criterion, self.loss_fn)))
            local = sum(losses) / len(losses)
            if self._sync:  # every rank scores its own subset: the mean over all of them
                return float(mean_over_ranks(torch.tensor([local], device=self.device)).item())
            return local
        finally:
            self.model.train(was_training)

    @contextlib.contextmanager
    def preserved(self) -> Iterator[None]:
        from lrkit.schedules.torch_scheduler import paused

        start = time.perf_counter()
        snapshot = Snapshot(self.model, self.optimizer, where=self.snapshot_where,
                            directory=self.snapshot_dir)
        # the loaders' own generators (DataLoader(generator=...), the usual way to make the
        # order of batches reproducible) draw the shuffles of the batches taken here
        generators = _loader_generators(self._train_loader, self._val_loader)
        generator_states = [g.get_state() for g in generators]
        self.copy_seconds = time.perf_counter() - start  #: snapshot and restore, together
        try:
            with paused(self.optimizer):  # lrkit schedulers do not count these steps
                yield
        finally:
            start = time.perf_counter()
            try:
                snapshot.restore(last=True)
            finally:
                snapshot.discard()
                for generator, state in zip(generators, generator_states):
                    generator.set_state(state)
                self._batches = None
                self.copy_seconds += time.perf_counter() - start


def _loader_generators(*loaders: Any) -> list[torch.Generator]:
    """The distinct torch generators of data loaders and their samplers."""
    found: dict[int, torch.Generator] = {}
    for loader in loaders:
        for owner in (loader, getattr(loader, "sampler", None),
                      getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator):
                found.setdefault(id(generator), generator)
    return list(found.values())


def snapshot_advice(device_type: str, where: str, copy_seconds: float,
                    total_seconds: float) -> str | None:
    """A warning when copying an accelerator's state to host memory and back was a large part of
    the test (on one H200, 605 MB of state: 0.67 s against 0.46 s of steps)."""
    if device_type == "cpu" or where != "cpu" or total_seconds <= 0:
        return None
    share = copy_seconds / total_seconds
    if share < 0.1:
        return None
    return (f"copying the state to host memory and back took {copy_seconds:.2g} s, {share:.0%} "
            f"of the test; snapshot='device' keeps the copy in {device_type} memory instead (one "
            "more copy of the state there)")
