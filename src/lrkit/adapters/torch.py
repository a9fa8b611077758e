"""PyTorch adapter: any model, any ``torch.optim`` optimizer, any batch format.

The loss of a batch comes from, in order of precedence (``find_lr`` refuses the first two
together):

* ``loss_fn(model, batch)`` given by the user (dict batches, GANs, anything), or
* ``criterion(model(inputs), targets)`` for ``(inputs, targets)`` batches, or
* the model's own output when it carries the loss, as Hugging Face models do
  (``model(**batch)`` for dict batches and other mappings, such as a tokenizer's
  ``BatchEncoding``; ``model(batch)`` otherwise).

Whatever returns the loss may return a scalar tensor, a dict with a ``"loss"`` entry or an object
with a ``.loss`` attribute.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import inspect
import itertools
import math
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.nn.utils.rnn import PackedSequence

from lrkit.adapters.distributed import (group_of, mean_over_ranks, should_sync,
                                        start_mean_over_ranks, static_graph)
from lrkit.errors import LrkitError, blame_user_code, is_real, one_number, plain_int, require
from lrkit.state import Snapshot, base_rates, metrics_preserved

LossFn = Callable[[torch.nn.Module, Any], Any]


def move_to(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor in a nested batch (tuples, named tuples, lists, dicts and other mappings
    such as a tokenizer's ``BatchEncoding``, dataclasses, packed sequences) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, PackedSequence):  # its batch_sizes must stay on the CPU
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return _rebuilt_mapping(batch, {k: move_to(v, device, non_blocking)
                                        for k, v in batch.items()})
    if isinstance(batch, (list, tuple)):
        moved = [move_to(v, device, non_blocking) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        # a copy with its fields moved (the user's batch is left as it is; no __init__ or
        # __post_init__ runs again, frozen dataclasses too)
        moved = copy.copy(batch)
        for field in dataclasses.fields(batch):
            if hasattr(batch, field.name):
                object.__setattr__(moved, field.name,
                                   move_to(getattr(batch, field.name), device, non_blocking))
        return moved
    return batch


def _rebuilt_mapping(batch: Mapping, moved: dict) -> Mapping:
    """A mapping of ``batch``'s type holding ``moved``: built from it as dicts are, else a copy
    updated item by item (a ``defaultdict``, whose constructor wants a factory first, or a
    ``BatchEncoding``, which keeps its other attributes), else a plain dict."""
    if isinstance(batch, dict):
        try:
            return type(batch)(moved)
        except TypeError:
            pass
    if isinstance(batch, MutableMapping):
        try:
            rebuilt = copy.copy(batch)
            for key, value in moved.items():
                rebuilt[key] = value
            return rebuilt
        except Exception:  # noqa: BLE001 - a mapping that cannot be copied: a plain dict
            pass
    return moved


def on_device(batch: Any, device: torch.device) -> bool:
    """Whether every tensor in a nested batch already lives on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.device == device
    if isinstance(batch, PackedSequence):
        return batch.data.device == device
    if isinstance(batch, Mapping):
        return all(on_device(v, device) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return all(on_device(v, device) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return all(on_device(getattr(batch, f.name, None), device)
                   for f in dataclasses.fields(batch))
    return True


def extract_loss(output: Any) -> torch.Tensor:
    """The scalar loss tensor inside whatever a loss function or model returned."""
    if type(output) is torch.Tensor and output.dim() == 0 and not output.is_complex():
        return output  # the common case, once per step: no further checks needed
    loss = output
    if isinstance(output, Mapping):
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
    if loss.is_complex():
        raise LrkitError(
            f"the loss must be real, got a {loss.dtype} tensor; return a real loss (for example "
            "the .abs() or .real of a complex quantity)"
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
        output = model(inputs)
        try:
            return extract_loss(criterion(output, targets))
        except Exception as exc:
            if _takes_model_and_batch(criterion):
                # a loss_fn(model, batch) given as the criterion (or as a recipe dict's 'loss',
                # its alias) got the output and the targets: it failed on them somewhere inside
                # ("'Tensor' object is not callable", "too many values to unpack"), naming no fix
                takes = _parameters(inspect.signature(criterion))
                raise LrkitError(
                    f"the criterion, called as criterion(output, targets), raised "
                    f"{type(exc).__name__} ({exc}); it takes {takes}: a function of (model, "
                    "batch) is a loss_fn, not a criterion; pass it as loss_fn=... (in a "
                    "recipe's dict, under 'loss_fn', not 'loss' or 'criterion')") from exc
            if not isinstance(exc, TypeError):
                raise
            # (only torch's complaint about the output's type: a criterion written for a tuple
            # that raises its own TypeError keeps it)
            if isinstance(output, torch.Tensor) or type(output).__name__ not in str(exc):
                raise
            # a model returning a tuple or a dict: the criterion's own TypeError named no fix
            raise LrkitError(
                f"the criterion failed on the model's output, a {type(output).__name__} "
                f"({' '.join(str(exc).split())}): a criterion takes the output tensor; pass "
                "loss_fn=lambda model, batch: ... to compute the loss from what the model "
                "returns (e.g. criterion(model(x)[0], y))") from exc
    output = model(**batch) if isinstance(batch, Mapping) else model(batch)
    return extract_loss(output)


def check_device(device: Any, option: str = "device") -> None:
    """Refuse a torch device that does not parse, or that this machine or torch build lacks."""
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LrkitError(f"{option} {device!r} is not a torch device ({detail}); use e.g. cpu, "
                         "cuda, cuda:1 or mps") from None
    if dev.type == "cpu":
        return
    if dev.type == "meta":
        if option.startswith("--"):  # (the library says it with the model's device in mind)
            raise LrkitError(f"{option} meta holds no data and cannot train; use cpu or cuda")
        return
    backend = getattr(torch, dev.type, None)
    if dev.type == "mps":
        backend = getattr(torch.backends, "mps", None)
    available = getattr(backend, "is_available", None)
    # (a device type torch knows only through a plugin, xla or hpu, has no torch.<type> to ask:
    # it is left to torch, as before)
    if available is not None and not available():
        why = ("this torch build has no CUDA support" if dev.type == "cuda"
               and torch.version.cuda is None else f"no {dev.type} device is available here")
        cpu = "--device cpu" if option.startswith("--") else "device='cpu'"
        raise LrkitError(f"{option} {device}: {why}; use {cpu} (or leave it out to use the "
                         "model's device)")
    count = getattr(backend, "device_count", None)
    if dev.index is not None and count is not None and dev.index >= count():
        raise LrkitError(f"{option} {device}: there are only {count()} {dev.type} device(s) "
                         f"(indices 0 .. {count() - 1})")


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model`` lives: its first parameter's or buffer's device (a model whose learned
    tensor sits outside it has no parameters), the CPU for a model with neither."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def keeps_place(loader: Any) -> bool:
    """Whether a loader saves and loads its own place (``state_dict``/``load_state_dict``)."""
    return (callable(getattr(loader, "state_dict", None))
            and callable(getattr(loader, "load_state_dict", None)))


def moves_batches(loss_fn: Any) -> bool:
    """Whether ``loss_fn`` moves its batch to the device itself (an adapter's loss function
    marked ``loss_fn.moves_batches = True``), so that nothing moves it before."""
    return bool(getattr(loss_fn, "moves_batches", False))


def cycle_batches(loader: Iterable, name: str = "train_loader") -> Iterator[Any]:
    """Iterate ``loader`` forever, starting a new pass when one ends; refuse an empty loader."""
    if not isinstance(loader, Iterable):
        hint = (f": wrap the dataset in a DataLoader, DataLoader({name.split('_')[0]}_set, "
                "batch_size=...)" if isinstance(loader, torch.utils.data.Dataset) else "")
        raise LrkitError(f"{name} must be iterable (a DataLoader or any iterable of batches), "
                         f"got {type(loader).__name__}{hint}")
    passes = 0
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty and passes:
            # it gave batches once: a one-shot iterator or a stream that cannot be read again,
            # not an empty loader. (Told by this empty pass, not by iter(loader) is loader: a
            # loader whose __iter__ rewinds itself and returns self is re-iterable, and every
            # extra iter() of a DataLoader starts its workers again)
            raise LrkitError(
                f"{name} yielded no batch on its pass {passes + 1}: it cannot be iterated "
                "again (a one-shot iterator or a stream read once ran out); pass a re-iterable "
                "loader (a DataLoader over a map-style "
                "dataset or a list of batches), or one with a batch for every micro-batch (a "
                "range test reads num_steps x accumulation_steps, and noise_batches, 16 by "
                "default, more before its ramp; noise_batches=0 skips them)"
            )
        if empty:
            raise LrkitError(f"{name} is empty: it yielded no batch; give it at least one batch")
        passes += 1


@functools.lru_cache(maxsize=None)  # inspect.signature costs ~40 us a call
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
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        raise LrkitError(
            f"optimizer is the class {optimizer.__name__}, not an optimizer: create one, "
            f"{optimizer.__name__}(model.parameters(), lr=...)"
        )
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
        lr = group["lr"]
        # one real number: a float, a one-number tensor or numpy array (np.array(1e-3))
        if one_number(lr) is None:
            # transformers' Adafactor(relative_step=True) holds lr=None and computes its own
            # rate from the step count: there is no rate to sweep (it failed in float(None))
            raise LrkitError(
                f"{type(optimizer).__name__} parameter group {i} has lr={lr!r}, not a number: "
                "the optimizer sets its own rate (as transformers' Adafactor with "
                "relative_step=True does), so there is no rate to sweep; build it with a rate "
                "to measure one (Adafactor(params, lr=1e-3, relative_step=False, "
                "scale_parameter=False, warmup_init=False))"
            )
    maximize = {bool(group.get("maximize", False)) for group in optimizer.param_groups}
    if len(maximize) > 1:
        raise LrkitError(
            f"the parameter groups of {type(optimizer).__name__} disagree on maximize: some "
            "ascend the loss and some descend it, so no curve of it tells a good rate; give "
            "every group the same maximize"
        )


def check_rate_is_swept(optimizer: Any, *, end_lr: float | None = None,
                        num_steps: int | None = None) -> None:
    """Refuse, for a range test, an optimizer on which changing ``lr`` between steps changes
    nothing (training runs at one rate, as a sweep's, are fine), or changes nothing past a
    cap the test's ``end_lr`` would cross in ``num_steps`` steps."""
    adafactor = getattr(torch.optim, "Adafactor", None)
    if (adafactor is not None and isinstance(optimizer, adafactor) and end_lr is not None
            and num_steps and end_lr > 1 / math.sqrt(num_steps)):
        # torch's Adafactor steps at min(lr, 1/sqrt(step)): every rate above the cap trains
        # the same, and the curve's end would measure the step count, not the rate
        cap = 1 / math.sqrt(num_steps)
        raise LrkitError(
            f"torch.optim.Adafactor uses min(lr, 1/sqrt(step)) as its rate, so the test's rates "
            f"above {cap:.3g} (1/sqrt of its {num_steps} steps) would all train the same and the "
            f"curve would not show where the rate is too high; pass end_lr={cap:.3g} or lower "
            f"(lrkit find --end-lr {cap:.3g})")
    if isinstance(optimizer, torch.optim.Rprop):
        # Rprop reads 'lr' once, as each weight's first step size, then adapts the step sizes
        # from the gradients' signs: a rate set later changes nothing, the curve would not
        # depend on the swept rates and the suggestion would be a fraction of end_lr
        raise LrkitError(
            "Rprop uses 'lr' only as the initial step size of each weight and then adapts the "
            "step sizes itself, so a learning-rate range test measures nothing on it; measure "
            "the rate with another optimizer (SGD, Adam, ...) or tune Rprop's lr and "
            "step_sizes with a few short runs (lrkit sweep)"
        )


def rate_caveat(optimizer: Any) -> str | None:
    """A warning for an optimizer whose ``lr`` only scales a step size it estimates itself
    (Prodigy, D-Adaptation: ``d``), which grows by the rates the test sweeps: its curve mixes
    the two. On a small MLP with Prodigy one seed's test said the loss never fell ("check the
    model and data") and another's suggested 2.6; lr=1 and 0.1 both trained well."""
    name = type(optimizer).__name__
    defaults = getattr(optimizer, "defaults", None) or {}
    if not (name.startswith(("Prodigy", "DAdapt")) or {"d", "d0"} <= set(defaults)):
        return None
    return (f"{name} estimates its own step size (d) and lr only scales it, while d grows by the "
            "rates the test sweeps: the curve mixes the two, so its suggestion (or a loss that "
            "never fell) says little about lr; its authors advise lr=1.0, or compare a few "
            "rates near it with short runs (lrkit sweep)")


def maximizes(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer ascends what the loss function returns (``maximize=True``)."""
    return any(group.get("maximize", False) for group in optimizer.param_groups)


def _check_loss(criterion: Any, loss_fn: Any) -> None:
    """Refuse a loss given in the wrong form, before the first step fails deep inside torch."""
    for name, value in (("criterion", criterion), ("loss_fn", loss_fn)):
        if isinstance(value, type):
            raise LrkitError(
                f"{name} is the class {value.__name__}, not a loss: pass an instance, "
                f"{name}={value.__name__}()"
            )
        if value is not None and not callable(value):
            raise LrkitError(f"{name} must be callable, got {type(value).__name__}")
    if (isinstance(loss_fn, torch.nn.modules.loss._Loss)
            and type(loss_fn).__module__.startswith("torch.")):  # torch's own criteria
        raise LrkitError(
            f"loss_fn={type(loss_fn).__name__}() is a criterion, called as criterion(output, "
            "targets); loss_fn is called as loss_fn(model, batch): pass it as criterion= "
            "(the second argument) for (inputs, targets) batches"
        )
    for name, value, call in (("criterion", criterion, "criterion(output, targets)"),
                              ("loss_fn", loss_fn, "loss_fn(model, batch)")):
        if value is None:
            continue
        try:
            signature = inspect.signature(value)
        except (TypeError, ValueError):  # a builtin without one: the first call will tell
            continue
        try:
            signature.bind(None, None)
        except TypeError:
            raise LrkitError(
                f"{name} is called with two arguments, as {call}, but it takes "
                f"{_parameters(signature)}; give it that signature") from None


def _takes_model_and_batch(function: Any) -> bool:
    """Whether ``function``'s parameters are named as a loss_fn's, ``(model, batch)`` (read
    only to explain an error it raised as a criterion)."""
    try:
        names = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return False
    return names[:1] == ["model"] or names[1:2] == ["batch"]


def _parameters(signature: inspect.Signature) -> str:
    """A signature's parameters as a reader would write them: "(batch)", "no arguments"."""
    names = [str(p) for p in signature.parameters.values()]
    return f"({', '.join(names)})" if names else "no arguments"


def _check_model(model: torch.nn.Module, optimizer: Any = None, *losses: Any) -> None:
    """Refuse a model whose tensors hold no data yet, before the snapshot trips over them; so
    too the optimizer's parameters outside the model (a lazy head applied in the loss_fn) and a
    criterion or loss_fn that is a module, which the snapshot saves with the model."""
    inside = {id(p) for p in model.parameters()}
    outside = ((f"parameter {j} of the optimizer's group {i} (not in the model)", p)
               for i, group in enumerate(getattr(optimizer, "param_groups", None) or [])
               for j, p in enumerate(group.get("params", []))
               if isinstance(p, torch.Tensor) and id(p) not in inside)
    modules = [m for m in losses if isinstance(m, torch.nn.Module) and m is not model]
    in_losses = (item for m in modules
                 for item in itertools.chain(m.named_parameters(), m.named_buffers()))
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers(),
                                        outside, in_losses):
        if torch.nn.parameter.is_lazy(tensor):
            raise LrkitError(
                f"{name} is not initialised yet (a lazy module): run the model once on a batch "
                "to create its parameters, then create the optimizer and call the finder"
            )
        if tensor.is_meta:
            raise LrkitError(
                f"{name} is on the meta device (a shape without data): materialise the model "
                "first (model.to_empty(device=...) and initialise it, or load its weights)"
            )


#: what ``amp=`` accepts besides True/False, and the autocast dtype each names
AMP_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
              "fp16": torch.float16, "float16": torch.float16}


def amp_dtype(amp: Any, device_type: str) -> torch.dtype | None:
    """The autocast dtype that ``amp=`` asks for (None: off). ``True`` is float16 on CUDA (with
    a GradScaler, as ``torch.autocast`` examples and fastai's ``to_fp16``) and bfloat16
    elsewhere; ``"bf16"``/``"fp16"`` or a dtype choose (bfloat16 is what large models train in
    on recent GPUs, and float16 overflows where it does not)."""
    if amp is None or amp is False:
        return None
    if amp is True:
        return torch.float16 if device_type == "cuda" else torch.bfloat16
    if isinstance(amp, torch.dtype) and amp in (torch.float16, torch.bfloat16):
        return amp
    if isinstance(amp, str) and amp.lower() in AMP_DTYPES:
        return AMP_DTYPES[amp.lower()]
    raise LrkitError(f"amp={amp!r} is not allowed; allowed values: False, True, 'bf16', 'fp16' "
                     "(or torch.bfloat16, torch.float16)")


class TorchTrainable:
    """Train a PyTorch model one optimizer step at a time (see the module docstring).

    Options: ``accumulation_steps`` micro-batches per optimizer step; ``amp`` runs the forward
    pass under autocast on devices that support it: ``True`` is float16 with a GradScaler on
    CUDA and bfloat16 elsewhere, ``"bf16"`` / ``"fp16"`` (or the torch dtypes) choose, as a
    training loop under ``torch.autocast(dtype=...)`` would; float16 always gets a GradScaler; ``max_grad_norm`` clips gradients; ``val_loader`` with ``val_batches`` defines the
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
        amp: bool | str | torch.dtype = False,
        max_grad_norm: float | None = None,
        device: str | torch.device | None = None,
        snapshot: str = "cpu",
        snapshot_dir: str | None = None,
        sync_ranks: bool | None = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise LrkitError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_optimizer(optimizer)
        _check_model(model, optimizer, criterion, loss_fn)
        _check_loss(criterion, loss_fn)
        # numpy's integers too (the range test accepts them), but not a bool
        accumulation_steps, val_batches = plain_int(accumulation_steps), plain_int(val_batches)
        require(
            isinstance(accumulation_steps, int) and not isinstance(accumulation_steps, bool)
            and accumulation_steps >= 1,
            f"accumulation_steps must be an integer >= 1, got {accumulation_steps!r}",
        )
        require(isinstance(val_batches, int) and not isinstance(val_batches, bool)
                and val_batches >= 1,
                f"val_batches must be an integer >= 1, got {val_batches!r}")
        require(max_grad_norm is None or (is_real(max_grad_norm) and max_grad_norm > 0),
                f"max_grad_norm must be a positive number or None, got {max_grad_norm!r}")
        # ("false", a string from a config file, was read as True)
        require(sync_ranks is None or isinstance(sync_ranks, bool),
                f"sync_ranks must be True, False or None (automatic), got {sync_ranks!r}")
        self.model = model
        self.optimizer = optimizer
        self.criterion = criterion
        self.loss_fn = loss_fn
        self.accumulation_steps = accumulation_steps
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        #: -1 when the optimizer ascends what the loss function returns (``maximize=True``): the
        #: curve is then its negation, the quantity the optimizer minimises, so that "falls",
        #: "diverges" and every suggestion method mean what they mean for a loss
        self._sign = -1.0 if maximizes(optimizer) else 1.0
        self._grads_checked = False  #: whether a backward pass reached the optimizer's params
        self.snapshot_where = snapshot
        self.snapshot_dir = snapshot_dir
        self.copy_seconds = 0.0  #: the last test's snapshot and restore, together
        check_device(device)  # a typo or a missing accelerator: said here, not deep in torch
        self.device = torch.device(model_device(model) if device is None else device)
        require(self.device.type != "meta",
                "device='meta' holds no data to train on: pass the device the model lives on "
                "(or none, to take the model's)")
        self._train_loader = train_loader
        self._batches: Iterator[Any] | None = None
        #: whether batches need moving to the device (decided on the first batch); never for
        #: a loss_fn that moves its batch itself (``loss_fn.moves_batches``: Lightning's, whose
        #: hooks run before and after the move)
        self._loss_moves = moves_batches(loss_fn)
        self._move: bool | None = False if self._loss_moves else None
        if val_loader is not None and not isinstance(val_loader, Iterable):
            # a map-style Dataset: iter() walks it sample by sample, and "5 batches" were 5
            # samples, silently (as train_loader, it is refused)
            hint = (": wrap the dataset in a DataLoader, DataLoader(val_set, batch_size=...)"
                    if isinstance(val_loader, torch.utils.data.Dataset) else "")
            raise LrkitError(f"val_loader must be iterable (a DataLoader or any iterable of "
                             f"batches), got {type(val_loader).__name__}{hint}")
        self._val_loader = val_loader
        self._val_batches = val_batches
        self._val_cache: list[Any] | None = None
        self._sync = should_sync(sync_ranks, model)
        self._group = group_of(model)  #: the ranks the model syncs with (None: all)
        #: DDP's no_sync() for the micro-batches before the last one
        # (not for DDP(static_graph=True): its first backward must be synced, and no_sync then
        # broke its reducer for the rest of the run; syncing every micro-batch gives the same
        # gradient, at the cost of the all-reduces no_sync saves)
        self._no_sync = (getattr(model, "no_sync", None)
                         if accumulation_steps > 1 and not static_graph(model) else None)

        # the groups' base rates: a scheduler's warmup from 0 (in a Problem from a
        # LightningModule or a Trainer too) set them all to 0, and the ratios were lost
        base = base_rates(optimizer)
        reference = next((lr for lr in base if lr > 0), 0.0)
        self.group_ratios = [lr / reference if reference > 0 else 1.0 for lr in base]

        dtype = amp_dtype(amp, self.device.type)
        self.amp = dtype is not None and self.device.type in ("cuda", "cpu", "xpu", "mps")
        self._amp_dtype = dtype if dtype is not None else torch.bfloat16
        # float16's narrow range needs loss scaling (bfloat16 has float32's range)
        self._scaler = (torch.amp.GradScaler(self.device.type)
                        if self.amp and dtype == torch.float16 else None)

    @property
    def precision(self) -> str | bool:
        """The autocast the steps run under: "bf16", "fp16" or False (for the record)."""
        if not self.amp:
            return False
        return "bf16" if self._amp_dtype == torch.bfloat16 else "fp16"

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
        if not torch.is_grad_enabled():  # a training step, also when called inside no_grad()
            with torch.enable_grad():
                return self.train_step(lr)
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
        if not self._grads_checked:
            self._check_gradients()
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

    @property
    def optimizer_family(self) -> str:
        """"adam", "sgd" or "other" (:func:`lrkit.adapters.torch_noise.optimizer_family`)."""
        from lrkit.adapters.torch_noise import optimizer_family

        return optimizer_family(self.optimizer)

    def gradient_noise(self, batches: int) -> float | None:
        """The gradient's noise-to-signal ratio ``B_noise / B`` at this step's batch, from
        ``batches`` micro-batches at the current parameters, with no update (see
        :mod:`lrkit.adapters.torch_noise`); ``None`` when it cannot be measured."""
        if not torch.is_grad_enabled():
            with torch.enable_grad():
                return self.gradient_noise(batches)
        from lrkit.adapters.torch_noise import gradient_noise

        if self._batches is None:
            self._batches = cycle_batches(self._train_loader)
        return gradient_noise(self, batches)

    def _micro_step(self) -> float:
        """Forward and backward of one micro-batch; its loss as a float (averaged over the ranks
        when synced; negated for an optimizer that maximizes). A non-finite loss is not
        backpropagated, except under DDP (below)."""
        try:
            batch = next(self._batches)
        except LrkitError:
            raise
        except Exception as exc:  # the user's data pipeline (a missing file, a bad sample)
            blame_user_code(exc, "the data loader (train_loader)")
            raise
        if self._move is None:  # decided on the first batch: loaders keep their device
            self._move = not on_device(batch, self.device)
        if self._move:
            batch = move_to(batch, self.device)
        try:
            if self.amp:
                with self._autocast():
                    loss = self._loss(batch)
            else:
                loss = self._loss(batch)
        except Exception as exc:
            blame_user_code(exc, "the forward pass (the model and the loss on a batch)")
            raise
        # no division node in the graph when there is nothing to accumulate: on models with
        # sub-millisecond steps it and a detached copy cost a few percent of the step
        if not loss.requires_grad:
            raise LrkitError(
                "the loss does not require grad, so it cannot train anything: it was computed "
                "under torch.no_grad() or inference_mode, detached (.detach(), .item(), float(), "
                "torch.tensor(...)), or no parameter it depends on has requires_grad=True; "
                "return the loss tensor as the forward pass computed it"
            )
        scaled = loss / self.accumulation_steps if self.accumulation_steps > 1 else loss
        if self._sync:
            # every rank backpropagates, a non-finite loss too (one that skipped it would leave
            # the others waiting in DDP's gradient all-reduce); the loss's own all-reduce runs
            # meanwhile, and train_step drops the update when the mean is not finite
            mean = start_mean_over_ranks(loss, self.device, self._group)
            self._backward(scaled)
            return self._sign * mean().item()
        value = loss.item()
        if math.isfinite(value):
            self._backward(scaled)
        return self._sign * value

    def _loss(self, batch: Any) -> torch.Tensor:
        """The batch's scalar loss (:func:`batch_loss`); without a criterion or loss_fn, an
        error that says the model's own output was taken as the loss, and what to pass."""
        if self.criterion is not None or self.loss_fn is not None:
            return batch_loss(self.model, batch, self.criterion, self.loss_fn)
        try:
            return batch_loss(self.model, batch)
        except (TypeError, LrkitError) as exc:
            call = "model(**batch)" if isinstance(batch, Mapping) else "model(batch)"
            raise LrkitError(
                f"no criterion and no loss_fn were given, so the model's own output is taken "
                f"as the loss ({call}, as for Hugging Face models), and that failed "
                f"({type(exc).__name__}: {' '.join(str(exc).split())}); pass a criterion for "
                "(inputs, targets) batches, find_lr(model, optimizer, loader, criterion), or "
                "loss_fn=lambda model, batch: ..."
            ) from exc

    def _check_gradients(self) -> None:
        """After the first backward pass: refuse an optimizer none of whose parameters got a
        gradient, which would take no step at any rate (the curve would be flat noise)."""
        if not any(param.grad is not None for group in self.optimizer.param_groups
                   for param in group["params"]):
            raise LrkitError(
                f"none of the {type(self.optimizer).__name__}'s parameters received a gradient "
                "from the loss, so no rate would change anything: the optimizer was built on "
                "other parameters than the model's (a copy of the model, or a model created "
                "again after the optimizer), or on frozen ones; build it from the parameters "
                "of the model you pass"
            )
        self._grads_checked = True

    def _backward(self, scaled: torch.Tensor) -> None:
        try:
            if self._scaler is not None:
                self._scaler.scale(scaled).backward()
            else:
                scaled.backward()
        except Exception as exc:
            blame_user_code(exc, "the backward pass (the model's gradients)")
            raise

    def _validation_subset(self) -> list[Any]:
        if self._val_cache is None:
            assert self._val_loader is not None
            try:
                self._val_cache = list(itertools.islice(iter(self._val_loader),
                                                        self._val_batches))
            except Exception as exc:  # the user's validation data
                blame_user_code(exc, "the data loader (val_loader)")
                raise
            if not self._val_cache:
                raise LrkitError("val_loader is empty: it yielded no batch")
        return self._val_cache

    @torch.no_grad()
    def eval_loss(self) -> float | None:
        if self._val_loader is None:
            return None
        # each module's own flag comes back afterwards, not model.train() for all of them: a
        # submodule kept in eval mode (frozen BatchNorm statistics) must stay so for the steps
        # that follow
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            losses = []
            for batch in self._validation_subset():
                try:
                    with self._autocast():
                        # (every batch: the validation loader may sit elsewhere than train's)
                        if not self._loss_moves:
                            batch = move_to(batch, self.device)
                        losses.append(float(self._loss(batch)))
                except Exception as exc:
                    blame_user_code(exc, "the validation pass (the model and the loss on a "
                                         "validation batch)")
                    raise
            local = self._sign * sum(losses) / len(losses)
            if self._sync:  # every rank scores its own subset: the mean over all of them
                return float(mean_over_ranks(torch.tensor([local], device=self.device),
                                             group=self._group).item())
            return local
        finally:
            for module, training in modes:
                module.training = training

    @contextlib.contextmanager
    def preserved(self) -> Iterator[None]:
        from lrkit.schedules.torch_scheduler import paused

        start = time.perf_counter()
        # a criterion or loss function that is a module (a loss with running statistics or
        # dropout of its own, a learned temperature) is saved with the model: every step
        # changes its buffers too
        losses = [m for m in (self.criterion, self.loss_fn)
                  if isinstance(m, torch.nn.Module) and m is not self.model
                  and _has_tensors(m)]  # CrossEntropyLoss() has none: nothing to save
        owner = torch.nn.ModuleList([self.model, *losses]) if losses else self.model
        snapshot = Snapshot(owner, self.optimizer, where=self.snapshot_where,
                            directory=self.snapshot_dir)
        # the loaders' own generators (DataLoader(generator=...), the usual way to make the
        # order of batches reproducible) draw the shuffles of the batches taken here, and a
        # generator the model or the loss holds (its own dropout or noise) draws in every step
        generators = _loader_generators(self._train_loader, self._val_loader)
        generators += _module_generators(generators, self.model, self.criterion, self.loss_fn)
        generator_states = [g.get_state() for g in generators]
        # and a loader that keeps its own place (state_dict/load_state_dict: torchdata's
        # StatefulDataLoader, the built-in examples' loader): its pass count drew each pass's
        # order, and after a test the next run read other batches than a fresh build's
        loaders, loader_states = _loader_places(self._train_loader, self._val_loader)
        self.copy_seconds = time.perf_counter() - start  #: snapshot and restore, together
        # the flag a torch LRScheduler's wrapper of optimizer.step sets (its "scheduler.step()
        # before optimizer.step()" check): the test's steps are undone, so is the flag
        called = self.optimizer.__dict__.get("_opt_called", _MISSING)
        raised = False
        try:
            # lrkit schedulers do not count these steps; torchmetrics states come back too
            with paused(self.optimizer), metrics_preserved(self.model):
                _ready_to_step(self.optimizer)  # (after the snapshot: it changes the groups)
                yield
        except BaseException:
            raised = True
            raise
        finally:
            start = time.perf_counter()
            try:
                snapshot.restore(last=True)
            finally:
                if called is _MISSING:
                    self.optimizer.__dict__.pop("_opt_called", None)
                else:
                    self.optimizer.__dict__["_opt_called"] = called
                self._batches = None
                snapshot.discard()
                for generator, state in zip(generators, generator_states):
                    generator.set_state(state)
                failed = _load_places(loaders, loader_states)
                self.copy_seconds += time.perf_counter() - start
                if failed is not None and not raised:
                    # (when the test itself raised, its error is the one to see)
                    raise LrkitError(
                        f"the test ran, but its loader {type(failed[0]).__name__} could not be "
                        f"put back in its place (load_state_dict raised "
                        f"{type(failed[1]).__name__}: {failed[1]}); make its load_state_dict "
                        "take what its state_dict gave, or pass a loader without them "
                        "(its place is then not saved)") from failed[1]


_MISSING = object()


def _ready_to_step(optimizer: torch.optim.Optimizer) -> None:
    """Inside ``preserved()`` (the snapshot puts the groups and weights back after), a
    schedule-free optimizer (schedulefree's, whose groups hold ``train_mode``) is made to step at
    the rates asked for: in train mode, where alone it takes a step (it starts in eval mode, and
    its step raised from inside the test), and with its own warmup off (``warmup_steps``
    multiplies every rate by (k + 1) / warmup_steps: with 1000 a range test's suggestion was 11x
    AdamWScheduleFree's without warmup, 5x SGDScheduleFree's, and a recipe's short runs stayed
    below their candidate rates)."""
    groups = optimizer.param_groups
    if not (groups and all("train_mode" in group for group in groups)):
        return
    if not all(group["train_mode"] for group in groups) and callable(
            getattr(optimizer, "train", None)):
        optimizer.train()
    for group in groups:
        if is_real(group.get("warmup_steps")) and group["warmup_steps"] > 0:
            group["warmup_steps"] = 0


def _loader_generators(*loaders: Any) -> list[torch.Generator]:
    """The distinct torch generators of data loaders and their samplers."""
    found: dict[int, torch.Generator] = {}
    # (and the loaders inside a combination of them: Lightning's CombinedLoader, lrkit's wrapper)
    loaders = [*loaders, *(inner for loader in loaders
                           for inner in (getattr(loader, "flattened", None) or []))]
    for loader in loaders:
        for owner in (loader, getattr(loader, "sampler", None),
                      getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator):
                found.setdefault(id(generator), generator)
    return list(found.values())


def _loader_places(*loaders: Any) -> tuple[list[Any], list[Any]]:
    """The distinct loaders that save and load their own place (``state_dict`` and
    ``load_state_dict``), and their saved places. One whose ``state_dict`` fails is left out:
    Accelerate's loaders have the methods, and answer only when made stateful."""
    found = {id(loader): loader for loader in loaders if keeps_place(loader)}
    kept, states = [], []
    for loader in found.values():
        try:
            state = copy.deepcopy(loader.state_dict())
        except Exception:  # noqa: BLE001 - a place it cannot give is a place it does not keep
            continue
        kept.append(loader)
        states.append(state)
    return kept, states


def _load_places(loaders: list[Any], states: list[Any]) -> tuple[Any, Exception] | None:
    """Put every loader back in its place; the first that refused, and why (the others are put
    back all the same)."""
    failed = None
    for loader, state in zip(loaders, states):
        try:
            loader.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - said once every loader has been tried
            failed = failed or (loader, exc)
    return failed


def _has_tensors(module: torch.nn.Module) -> bool:
    """Whether a module holds parameters or buffers (state a training step can change)."""
    return (next(module.parameters(), None) is not None
            or next(module.buffers(), None) is not None)


def _module_generators(known: list[torch.Generator], *owners: Any) -> list[torch.Generator]:
    """The torch generators held as attributes by the modules of ``owners`` (the model, a
    criterion or loss function that is a module), other than those in ``known``."""
    found = {id(g) for g in known}
    generators = []
    for owner in owners:
        if not isinstance(owner, torch.nn.Module):
            continue
        for module in owner.modules():
            for value in vars(module).values():
                # type(...) is: isinstance with torch.Generator's metaclass is 5x slower
                if type(value) is torch.Generator and id(value) not in found:
                    found.add(id(value))
                    generators.append(value)
    return generators


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
