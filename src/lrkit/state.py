"""Take and restore an exact snapshot of a model, its optimizer and the random number generators.

Users lose work when a tool changes their model behind their back (pytorch-lr-finder #11,
Lightning #6675, fastai #3013). lrkit snapshots everything one training step can change and puts
it back bit for bit, after a normal return, an exception or a KeyboardInterrupt. The snapshot is
kept on the CPU (never a second copy on the accelerator) or, when asked, in a private file on disk.
"""
from __future__ import annotations

import contextlib
import copy
import mmap
import os
import pickle
import random
import tempfile
import weakref
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from lrkit.errors import LrkitError


#: values copied as they are, recognised by their exact type
_ATOMS = frozenset({int, float, bool, str, type(None)})


def _to_cpu(value: Any) -> Any:
    """A CPU copy of every tensor in a nested structure (other values are copied as they are)."""
    return _copy_into(value, None, [])


def _copy_into(value: Any, old: Any, pairs: list[tuple[torch.Tensor, torch.Tensor]],
                 arena: _Arena | None = None, *, on_device: bool = False) -> Any:
    """Like :func:`_to_cpu`, but a tensor of ``old`` (the same place in the same structure, same
    shape and dtype, on the CPU) is reused: it is returned, and ``(old, new value)`` goes to
    ``pairs`` for one batched copy afterwards. With ``old=None`` every tensor is a fresh copy:
    carved from ``arena`` when given (also copied through ``pairs``), else allocated alone.
    ``on_device``: copies stay on each tensor's own device (``Snapshot(where="device")``)."""
    if type(value) in _ATOMS:  # most of an optimizer's state_dict: one test, not three
        return value
    if isinstance(value, torch.Tensor):
        target = value.device if on_device else torch.device("cpu")
        if (isinstance(old, torch.Tensor) and old.shape == value.shape
                and old.dtype == value.dtype and old.device == target):
            pairs.append((old, value.detach()))
            return old
        copy = arena.take(value) if arena is not None else None
        if copy is not None:
            pairs.append((copy, value.detach()))
            return copy
        return value.detach().to(target, copy=True)
    if isinstance(value, dict):
        olds = old if isinstance(old, dict) else {}
        return {k: _copy_into(v, olds.get(k), pairs, arena, on_device=on_device)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        same = isinstance(old, (list, tuple)) and len(old) == len(value)
        olds = old if same else [None] * len(value)
        return type(value)(_copy_into(v, o, pairs, arena, on_device=on_device)
                           for v, o in zip(value, olds))
    return value


def _tensors_in(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)


class _Arena:
    """One CPU allocation that many tensor copies are carved from.

    Why: copied one by one, a snapshot's large tensors sit in the C heap for the whole range
    test, and glibc then hands the top of the heap back to the system and faults it in again on
    every training step (wide MLP with Adam on the CPU: ``find_lr`` 1.3x the plain loop). One
    block of the snapshot's size is mapped on its own, outside the heap. Plain dense contiguous
    tensors of one dimension or more only; others are copied alone: sparse, quantized, strided
    views, tensor subclasses (DTensor: copy_ refuses to mix them with plain tensors), and 0-dim
    ones (an optimizer's ``step``, which load_state_dict keeps on the CPU as it is even for a
    model on a GPU, and which as a view would keep the whole block alive).
    """

    ALIGN = 64

    def __init__(self, tensors: Iterable[torch.Tensor]) -> None:
        total = sum(self._span(t) for t in tensors if self._fits(t))
        self._buffer = _host_block(total) if total else None
        self._offset = 0

    @classmethod
    def _span(cls, tensor: torch.Tensor) -> int:
        size = tensor.numel() * tensor.element_size()
        return -(-size // cls.ALIGN) * cls.ALIGN

    @staticmethod
    def _fits(tensor: torch.Tensor) -> bool:
        return (type(tensor) in (torch.Tensor, torch.nn.Parameter) and tensor.dim() > 0
                and tensor.layout == torch.strided and not tensor.is_quantized
                and tensor.is_contiguous())

    def take(self, like: torch.Tensor) -> torch.Tensor | None:
        """An uninitialised CPU tensor shaped like ``like`` (None when it does not fit)."""
        if self._buffer is None or not self._fits(like):
            return None
        size = like.numel() * like.element_size()
        if self._offset + size > self._buffer.numel():
            return None
        view = self._buffer[self._offset:self._offset + size].view(like.dtype).view(like.shape)
        self._offset += self._span(like)
        return view


#: blocks at least this large are mapped with transparent huge pages asked for
HUGE_PAGE_BLOCK = 32 * 2 ** 20


def _host_block(size: int) -> torch.Tensor:
    """``size`` bytes of host memory for a snapshot's copies: a private anonymous mapping with
    transparent huge pages asked for (``MADV_HUGEPAGE``) when large, so that the first copy into
    it faults a page per 2 MiB rather than per 4 KiB. Why: copying a GPU model's 605 MB of state
    into fresh memory took 372-488 ms on an H200 machine, 170-176 ms with huge pages (40 ms into
    memory already faulted in). Plain ``torch.empty`` where mappings are not available."""
    if size >= HUGE_PAGE_BLOCK:
        try:
            block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            if hasattr(mmap, "MADV_HUGEPAGE"):
                try:
                    block.madvise(mmap.MADV_HUGEPAGE)
                except OSError:
                    pass  # huge pages off in this kernel: a plain mapping, still off the heap
            return torch.frombuffer(block, dtype=torch.uint8)  # keeps the mapping alive
        except (AttributeError, OSError, ValueError):
            pass
    return torch.empty(size, dtype=torch.uint8)


class _ModuleWalk:
    """What a snapshot reads from a model's modules, in one pass over them: each module's mode,
    its parameters and buffers (named, without duplicates, in ``named_parameters`` and
    ``named_buffers`` order), the buffers ``state_dict`` leaves out and those registered as
    ``None``, and the tensors modules hold as plain attributes. Why one pass: seven walks of
    the module tree were most of a guard snapshot's cost on small models (~100 us on
    digits-mlp, against ~10 us of copying)."""

    def __init__(self, model: torch.nn.Module | None) -> None:
        self.modules: list[tuple[str, torch.nn.Module]] = []
        self.training: dict[str, bool] = {}
        self.parameters: list[tuple[str, torch.Tensor]] = []
        self.buffers: list[tuple[str, torch.Tensor]] = []
        self.non_persistent: set[str] = set()
        self.none_buffers: set[str] = set()
        self.attributes: list[tuple[torch.nn.Module, str, torch.Tensor]] = []
        if model is None:
            return
        seen_parameters: set[torch.Tensor] = set()  # by identity, as torch's own memo
        seen_buffers: set[torch.Tensor] = set()
        for prefix, module in model.named_modules():
            self.modules.append((prefix, module))
            self.training[prefix] = module.training
            dot = f"{prefix}." if prefix else ""
            for leaf, param in module._parameters.items():
                if param is not None and param not in seen_parameters:
                    seen_parameters.add(param)
                    self.parameters.append((dot + leaf, param))
            for leaf, buffer in module._buffers.items():
                if buffer is None:
                    self.none_buffers.add(f"buffer:{dot}{leaf}")
                elif buffer not in seen_buffers:
                    seen_buffers.add(buffer)
                    self.buffers.append((dot + leaf, buffer))
            self.non_persistent.update(dot + leaf for leaf in module._non_persistent_buffers_set)
            self.attributes.extend((module, name, value) for name, value in vars(module).items()
                                   if isinstance(value, torch.Tensor))

    def named_tensors(self, extra: list[torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
        """Parameters and *all* buffers, persistent or not (BatchNorm statistics, counters,
        masks), then the optimizer's parameters outside the model (``extra``)."""
        yield from self.parameters
        yield from (("buffer:" + name, buffer) for name, buffer in self.buffers)
        yield from ((f"optimizer_only:{i}", t) for i, t in enumerate(extra))


def _outside(parameters: list[tuple[str, torch.Tensor]],
             optimizer: torch.optim.Optimizer | None) -> list[torch.Tensor]:
    """The optimizer's parameters that are not among the model's ``parameters`` (in the
    optimizer's order)."""
    if optimizer is None:
        return []
    inside = {id(p) for _, p in parameters}
    seen: set[int] = set()
    extra = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            if id(param) not in inside and id(param) not in seen:
                seen.add(id(param))
                extra.append(param)
    return extra


def _copy_pairs(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    if not pairs:
        return
    destinations, sources = [d for d, _ in pairs], [s for _, s in pairs]
    try:
        torch._foreach_copy_(destinations, sources)  # one call for all of them
    except (RuntimeError, TypeError):
        for destination, source in pairs:
            destination.copy_(source)


def _keep_state_dtypes(optimizer: torch.optim.Optimizer, saved: dict, *, copy: bool) -> None:
    """Put back, in their own dtype, the optimizer state tensors that ``load_state_dict`` cast to
    their parameter's: it casts every floating-point entry but ``step``, and NAdam's
    ``mu_product`` and ASGD's ``eta`` and ``mu`` are float32 scalars whatever the model's dtype
    (a float64 model got them back as float64, a bfloat16 one rounded to bfloat16)."""
    params = [param for group in optimizer.param_groups for param in group["params"]]
    for index, entries in saved.items():
        if not isinstance(index, int) or not 0 <= index < len(params):
            continue
        state = optimizer.state.get(params[index])
        if not isinstance(entries, dict) or not state:
            continue
        for key, value in entries.items():
            current = state.get(key)
            if (isinstance(value, torch.Tensor) and isinstance(current, torch.Tensor)
                    and current.dtype != value.dtype):
                state[key] = value.to(current.device, copy=copy)


def _group_objects(optimizer: torch.optim.Optimizer | None) -> list[tuple[int, str, Any]]:
    """``(group index, key, value)`` for every value in the optimizer's groups that is an
    object a user may hold (anything but a number, a string or None), ``params`` aside."""
    if optimizer is None:
        return []
    return [(i, key, value) for i, group in enumerate(optimizer.param_groups)
            for key, value in group.items()
            if key != "params" and not isinstance(value, (int, float, str, type(None)))]


_HOLDERS = (torch.Tensor, list, tuple, dict)


def _refill(target: Any, saved: Any) -> bool:
    """Put the snapshot's values ``saved`` back into the user's object ``target`` in place (a
    tensor copied into, a list's or dict's items set again, their own objects kept where they
    can be refilled in turn); False where that cannot be done (another shape, a tuple whose
    items changed), and a copy of ``saved`` takes its place."""
    if isinstance(target, torch.Tensor):
        if isinstance(saved, torch.Tensor) and saved.shape == target.shape:
            target.copy_(saved)
            return True
        return False
    if isinstance(target, tuple):
        return (isinstance(saved, tuple) and len(saved) == len(target)
                and all(_refill(t, v) for t, v in zip(target, saved)))
    if isinstance(target, list) and isinstance(saved, list):
        target[:] = [_refilled(target[j] if j < len(target) else None, value)
                     for j, value in enumerate(saved)]
        return True
    if isinstance(target, dict) and isinstance(saved, dict):
        items = {key: _refilled(target.get(key), value) for key, value in saved.items()}
        target.clear()
        target.update(items)
        return True
    # a plain value, or another object (a user's function, a lock: the snapshot kept it as it is)
    return target is saved or (isinstance(target, (int, float, str)) and target == saved)


def _refilled(target: Any, saved: Any) -> Any:
    """``target`` refilled with ``saved``, or a copy of ``saved`` where it cannot be."""
    if isinstance(target, _HOLDERS) and _refill(target, saved):
        return target
    return _copy_into(saved, None, [], on_device=True)


def _without_held(groups: list[dict], held: list[tuple[int, str, Any]]) -> list[dict]:
    """The saved groups for ``load_state_dict`` with the held objects left out: it deep-copies
    the groups, which fails on what cannot be copied (a lock) and is undone by the relink."""
    groups = [dict(group) for group in groups]
    for i, key, _ in held:
        if i < len(groups) and key in groups[i]:
            groups[i][key] = None
    return groups


def _relink_group_objects(optimizer: torch.optim.Optimizer, saved_groups: list[dict],
                          held: list[tuple[int, str, Any]]) -> None:
    """After ``load_state_dict``: the groups hold the user's own objects again (a tensor rate
    the user fills later, tensor betas annealed in place, a dict of their own), refilled with
    the snapshot's values, rather than copies."""
    groups = optimizer.param_groups
    with torch.no_grad():
        for i, key, value in held:
            if i >= len(groups) or i >= len(saved_groups) or key not in saved_groups[i]:
                continue
            groups[i][key] = _refilled(value, saved_groups[i][key])


def group_values(optimizer: torch.optim.Optimizer) -> list[dict[str, tuple[Any, Any]]]:
    """Each group's hyperparameters as they are now: the object and a copy of its value (for
    :func:`put_group_values`, around a restore that must keep them: a guard's rollback undoes
    the steps, not the schedule's rates or the user's objects)."""
    return [{key: (value, _copy_into(value, None, [], on_device=True))
             for key, value in group.items() if key != "params"}
            for group in optimizer.param_groups]


def put_group_values(optimizer: torch.optim.Optimizer,
                     kept: list[dict[str, tuple[Any, Any]]]) -> None:
    """The groups hold the objects of :func:`group_values` again, with the values they had."""
    with torch.no_grad():
        for group, values in zip(optimizer.param_groups, kept):
            for key, (value, saved) in values.items():
                group[key] = value if _refill(value, saved) else saved


def capture_rng(*, torch_only: bool = False) -> dict[str, Any]:
    """The state of every generator a training step may draw from. ``torch_only``: torch's
    generators alone (what the model draws from: dropout, initialisation), without numpy's and
    Python's, which only a data pipeline uses and which cost ~40 us to copy."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if not torch_only:
        state["numpy"] = np.random.get_state()
        state["random"] = random.getstate()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "random" in state:
        random.setstate(state["random"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def group_layout(optimizer: torch.optim.Optimizer | None) -> list[int] | None:
    """The number of parameters in each of the optimizer's groups (what a snapshot restores
    into)."""
    return None if optimizer is None else [len(g["params"]) for g in optimizer.param_groups]


@contextlib.contextmanager
def metrics_preserved(module: Any) -> Iterator[None]:
    """Inside, the torchmetrics states of ``module``'s metrics (attributes, not buffers, so a
    :class:`Snapshot` does not hold them: a list state, the update count) are kept, and put back
    after: a range test's or a recipe's short runs' predictions stayed in a LightningModule's
    metric and leaked into the next epoch. Found by duck typing (``_defaults``, ``reset``,
    ``_update_count``): torchmetrics is not imported."""
    saved = []
    for sub in module.modules():
        states = getattr(sub, "_defaults", None)
        if isinstance(states, dict) and hasattr(sub, "reset") and hasattr(sub, "_update_count"):
            saved.append((sub, {name: copy.deepcopy(getattr(sub, name)) for name in states},
                          sub._update_count, copy.deepcopy(getattr(sub, "_computed", None))))
    try:
        yield
    finally:
        for sub, states, count, computed in saved:
            for name, value in states.items():
                setattr(sub, name, value)
            sub._update_count = count
            if hasattr(sub, "_computed"):
                sub._computed = computed


def base_rates(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's base rate: its ``initial_lr`` where a scheduler built on the optimizer has
    moved the rates (a warmup from 0 set them all to 0: read as they were, every group ran at
    one rate and their ratios were lost), else its ``lr``. What a range test's group ratios,
    a recipe and a sweep's rebuilt optimizer start from (see :func:`at_base_rates`)."""
    groups = optimizer.param_groups
    if _moved(groups):
        return [float(g["initial_lr"]) for g in groups]
    return [float(g["lr"]) for g in groups]


def _moved(groups: list[dict]) -> bool:
    return (all(isinstance(g.get("initial_lr"), (int, float)) for g in groups)
            and any(g["initial_lr"] > 0 for g in groups))


@contextlib.contextmanager
def at_base_rates(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Inside, every group's ``lr`` is its base rate (``initial_lr``) when a scheduler built on
    the optimizer has moved the rates (a warmup from 0 sets them all to 0, a finished schedule
    leaves them at its floor), so a range test runs at the groups' ratios and is measured
    against the rates training starts from; the scheduled rates are put back after (into the
    groups as they are then: a restore loads a state_dict, with new group dicts)."""
    groups = optimizer.param_groups
    moved = _moved(groups)
    spent = [g["lr"] for g in groups]
    if moved:
        for group in groups:
            group["lr"] = group["initial_lr"]
    try:
        yield
    finally:
        if moved:
            for group, lr in zip(optimizer.param_groups, spent):
                group["lr"] = lr


#: where a snapshot can live (see :class:`Snapshot`)
LOCATIONS = ("cpu", "disk", "device")


class Snapshot:
    """One copy of a model's and optimizer's state and the RNG states, restorable bit for bit.

    ``where="cpu"`` keeps the copy in host memory; ``where="disk"`` writes it to a private
    temporary file in ``directory`` (default: the system temp dir), removed by :meth:`discard`
    (or by a ``last`` restore); ``where="device"`` keeps each tensor's copy on its own device (a
    GPU model's in GPU memory: no transfer over the bus, at the price of one more copy of the
    state in the accelerator's memory). ``torch_rng_only``: of the generators, keep torch's alone (see
    :func:`capture_rng`; for a guard whose rollbacks do not rewind the user's data pipeline).
    ``reuse``: a snapshot that is no longer needed (it is discarded): its CPU tensors are
    overwritten in place instead of allocating a new copy (a guard snapshotting every few
    hundred steps then neither allocates nor frees a model-sized buffer each time).
    """

    def __init__(
        self,
        model: torch.nn.Module | None,
        optimizer: torch.optim.Optimizer | None,
        *,
        where: str = "cpu",
        directory: str | os.PathLike | None = None,
        torch_rng_only: bool = False,
        reuse: Snapshot | None = None,
    ) -> None:
        if where not in LOCATIONS:
            raise LrkitError(f"snapshot location must be one of {LOCATIONS}, got {where!r}")
        self._model = model
        self._optimizer = optimizer
        self._path: Path | None = None
        old: dict = {"tensors": {}, "grads": {}, "optimizer": None}
        if reuse is not None:
            if where in ("cpu", "device") and reuse._payload is not None:
                old = reuse._payload
            reuse.discard()
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        payload: dict[str, Any] = {"tensors": {}, "grads": {}, "optimizer": None}
        # fresh copies in memory come from one block for the parameters and buffers (copied back
        # and freed) and one for the optimizer's per-parameter state (handed back by a last
        # restore, all together); gradients (handed back one by one, usually absent) and the
        # param_groups (deep-copied by load_state_dict: a view would copy its whole block) alone
        fresh = where == "cpu" and reuse is None
        on_device = where == "device"
        self._on_device = on_device
        walk = _ModuleWalk(model)
        # parameters the optimizer trains outside the model (a learned temperature, a loss
        # module's weights) are saved with the model's: the optimizer changes them too
        self._extra = _outside(walk.parameters, optimizer)
        # tensors the modules hold as plain attributes, not as parameters or buffers: the
        # effective weight torch.nn.utils.weight_norm and spectral_norm recompute in every forward
        # (the steps replace it, and the last step's would stay). The objects themselves are put
        # back, no copy: a forward makes a new one, it does not change the old in place
        self._attributes = walk.attributes
        if model is not None or self._extra:
            self._training = walk.training
            named = list(walk.named_tensors(self._extra))
            # where each tensor lives, and which buffers state_dict leaves out: a buffer that the
            # steps replace or remove (a cache re-registered larger for a longer input) is put
            # back as it was
            self._devices = {name: tensor.device for name, tensor in named}
            self._non_persistent = walk.non_persistent
            # buffers registered as None (a cache filled on first use): named_buffers skips
            # them, and one filled by the steps was removed by the restore, name and all
            self._none_buffers = walk.none_buffers
            arena = _Arena(t for _, t in named) if fresh else None
            for name, tensor in named:
                payload["tensors"][name] = _copy_into(tensor, old["tensors"].get(name), pairs,
                                                        arena, on_device=on_device)
                grad = getattr(tensor, "grad", None)
                payload["grads"][name] = (None if grad is None else _copy_into(
                    grad, old["grads"].get(name), pairs, on_device=on_device))
        #: the objects the groups held (a tensor rate, tensor betas, a user's dict), put back
        #: after a restore: load_state_dict swaps in the snapshot's copies
        self._held = _group_objects(optimizer)
        #: how many parameters each group held: a snapshot restores into the same layout only
        self.layout = group_layout(optimizer)
        self._groups: list[dict] | None = None
        if optimizer is not None:
            state = optimizer.state_dict()
            arena = _Arena(_tensors_in(state.get("state"))) if fresh else None
            olds = old["optimizer"] if isinstance(old["optimizer"], dict) else {}
            payload["optimizer"] = {
                key: _copy_into(value, olds.get(key), pairs, arena if key == "state" else None,
                                  on_device=on_device)
                for key, value in state.items()}
        _copy_pairs(pairs)
        self._rng = capture_rng(torch_only=torch_rng_only)
        if where == "disk":
            # the groups' hyperparameters stay in memory (small, and they may hold what pickle
            # cannot write: a user's function or lock in a group); the tensors go to the file
            optimizer_payload = payload["optimizer"]
            if optimizer_payload is not None:
                self._groups = optimizer_payload.get("param_groups")
                payload["optimizer"] = {key: value for key, value in optimizer_payload.items()
                                        if key != "param_groups"}
            self._path = self._write(payload, directory)
            # the file goes with the snapshot, also when its owner never discards it (a guard
            # the user did not close, one that raised): at garbage collection or exit
            self._remove_file = weakref.finalize(self, self._path.unlink, True)
            self._payload = None
        else:
            self._payload = payload

    @staticmethod
    def _write(payload: dict, directory: str | os.PathLike | None) -> Path:
        directory = Path(directory) if directory is not None else Path(tempfile.gettempdir())
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # a unique private file: no collisions between concurrent runs (fastai #1751, #3240)
            fd, name = tempfile.mkstemp(prefix="lrkit-snapshot-", suffix=".pt", dir=directory)
        except OSError as exc:
            raise LrkitError(
                f"cannot write the state snapshot in {str(directory)!r} ({exc.strerror}); "
                "pass a writable snapshot directory or keep the snapshot in memory"
            ) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(payload, handle)
        except BaseException as exc:  # a full disk, an unpicklable value, Ctrl-C: no file left
            Path(name).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise LrkitError(
                    f"cannot write the state snapshot in {str(directory)!r} ({exc.strerror or exc}); "
                    "free some space, pass another snapshot directory or keep the snapshot in "
                    "memory (snapshot='cpu')") from exc
            if isinstance(exc, (pickle.PicklingError, TypeError, AttributeError)):
                raise LrkitError(
                    f"the optimizer's state holds a value that cannot be written to disk ({exc}); "
                    "keep the snapshot in memory (snapshot='cpu')") from exc
            raise
        return Path(name)

    def restore(self, *, last: bool = False) -> None:
        """Put everything back. The snapshot stays valid and can be restored again, unless
        ``last``: then its optimizer tensors are handed over rather than copied (no transient
        extra copy) and the snapshot is discarded."""
        if self._optimizer is not None and group_layout(self._optimizer) != self.layout:
            # checked before anything is put back: a model restored and an optimizer not would
            # be out of step
            raise LrkitError(
                f"the optimizer's parameter groups changed since the snapshot (parameters per "
                f"group: {self.layout} then, {group_layout(self._optimizer)} now: add_param_group or "
                "a changed group), so its state cannot be restored into it; take a new snapshot "
                "after changing the groups")
        payload = self._payload
        from_disk = payload is None  # a fresh copy, read from the file
        if payload is None and self._path is not None:
            payload = torch.load(self._path, weights_only=False)
        assert payload is not None
        if self._model is not None or self._extra:
            with torch.no_grad():
                walk = _ModuleWalk(self._model)  # as the model is now (the steps may
                # have replaced or registered tensors)
                current = dict(walk.named_tensors(self._extra))
                for name, saved in payload["tensors"].items():
                    tensor = current.pop(name, None)
                    if (tensor is None or tensor.shape != saved.shape
                            or tensor.dtype != saved.dtype):
                        tensor = self._put_back(name, tensor, saved)
                        if tensor is None:
                            continue
                    else:
                        tensor.copy_(saved)
                    if isinstance(tensor, torch.nn.Parameter) or name.startswith("optimizer_only:"):
                        saved_grad = payload["grads"][name]
                        if saved_grad is None:
                            tensor.grad = None
                        elif tensor.grad is None:
                            # a copy unless last: on the same device .to() returns the saved
                            # tensor itself, and backward() would accumulate into the snapshot
                            tensor.grad = saved_grad.to(tensor.device, copy=not last)
                        else:
                            tensor.grad.copy_(saved_grad)
                for name in current:  # registered by the steps (a cache made in forward)
                    self._remove_buffer(name)
            for name, module in walk.modules:
                if name in self._training:
                    module.training = self._training[name]
            for module, name, value in self._attributes:
                if name not in module._parameters and name not in module._buffers:
                    module.__dict__[name] = value
        if self._optimizer is not None and payload["optimizer"] is not None:
            # a copy unless this is the last restore (or the payload was just read from disk):
            # load_state_dict keeps tensors that are already on the right device and dtype, and
            # the optimizer's in-place updates would then change the snapshot itself
            saved = payload["optimizer"]
            if from_disk:  # the file holds the state; the groups stayed in memory (_write)
                saved = {**saved, "param_groups": self._groups}
            saved_groups = saved.get("param_groups") or []
            loadable = {**saved, "param_groups": _without_held(saved_groups, self._held)}
            self._optimizer.load_state_dict(
                loadable if last or from_disk
                else _copy_into(loadable, None, [], on_device=self._on_device))
            _keep_state_dtypes(self._optimizer, saved.get("state", {}),
                               copy=not (last or from_disk))
            _relink_group_objects(self._optimizer, saved_groups, self._held)
        restore_rng(self._rng)
        if last:
            self.discard()

    def _owner(self, name: str) -> tuple[torch.nn.Module, str] | None:
        """The module that holds the model tensor ``name`` and its attribute name there."""
        if self._model is None or name.startswith("optimizer_only:"):
            return None
        path, _, leaf = name.removeprefix("buffer:").rpartition(".")
        try:
            return self._model.get_submodule(path), leaf
        except AttributeError:  # the module itself is gone
            return None

    def _put_back(self, name: str, tensor: torch.Tensor | None,
                  saved: torch.Tensor) -> torch.Tensor | None:
        """Restore a tensor that the steps replaced by one of another shape or dtype, or
        removed: a parameter keeps its identity (the optimizer holds it), a buffer is registered
        again as it was. Returns the restored tensor (None when there is nowhere to put it)."""
        device = tensor.device if tensor is not None else self._devices[name]
        value = saved.to(device, copy=True)
        if tensor is not None and not name.startswith("buffer:"):
            tensor.data = value
            return tensor
        owner = self._owner(name)
        if owner is None or not name.startswith("buffer:"):
            return None
        module, leaf = owner
        module._buffers[leaf] = value
        if name.removeprefix("buffer:") in self._non_persistent:
            module._non_persistent_buffers_set.add(leaf)
        else:
            module._non_persistent_buffers_set.discard(leaf)
        return value

    def _remove_buffer(self, name: str) -> None:
        """Remove a buffer the steps registered: the model had none by that name."""
        owner = self._owner(name) if name.startswith("buffer:") else None
        if owner is not None:
            module, leaf = owner
            if name in getattr(self, "_none_buffers", ()):
                module._buffers[leaf] = None  # registered, as None, as it was
                return
            module._buffers.pop(leaf, None)
            module._non_persistent_buffers_set.discard(leaf)

    def parameters_finite(self) -> bool:
        """Whether every floating-point tensor of the saved model is finite (a full pass over
        the copy: for the rare moment before a rollback, not for every snapshot)."""
        payload = self._payload
        if payload is None and self._path is not None:
            payload = torch.load(self._path, weights_only=False)
        if payload is None:
            raise LrkitError("this snapshot was discarded; take a new one")
        return all(bool(torch.isfinite(t).all()) for t in payload["tensors"].values()
                   if t.is_floating_point())

    def discard(self) -> None:
        """Free the copy (and delete the file when on disk)."""
        self._payload = None
        self._attributes = []
        if self._path is not None:
            self._remove_file()
            self._path = None
