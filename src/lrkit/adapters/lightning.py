"""PyTorch Lightning adapter: a ``LightningModule`` as an lrkit :class:`~lrkit.problem.Problem`.

Lightning's own ``Tuner.lr_find`` runs a whole ``Trainer`` (and forces every parameter group to one
rate). Here the module's ``training_step`` is the loss function and ``configure_optimizers`` gives
the optimizer, so the finder, ``recommend``, sweeps and the CLI work on it unchanged, with lrkit's
suggestion and exact restore::

    from lrkit.adapters.lightning import find_lr
    result = find_lr(module, datamodule=dm, update_attr=True)   # sets module.lr to the suggestion
    trainer.fit(module, datamodule=dm)

No ``Trainer`` is attached during the range test: ``self.log`` inside ``training_step`` is
silently skipped, and a ``training_step`` or ``configure_optimizers`` that reads ``self.trainer``
gets a clear error (pass ``optimizer=`` for the latter). Lightning is imported only to check the
module's type when it is installed; this module never needs it otherwise.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import sys
import warnings
from typing import Any, Callable, Iterable

from lrkit.errors import LrkitError
from lrkit.problem import Problem

__all__ = ["from_lightning", "find_lr"]

#: the attributes ``update_attr=True`` looks for, in Lightning's own order
LR_ATTRIBUTES = ("lr", "learning_rate")


def _is_lightning(value: Any, class_name: str) -> bool:
    """Whether ``value`` is a ``class_name`` of Lightning, under either package name (one that
    is not imported yet cannot have made it)."""
    # (sys.modules.get: a package set to None there, to block its import, is not imported)
    classes = [getattr(sys.modules.get(name), class_name, None)
               for name in ("lightning.pytorch", "pytorch_lightning")]
    return any(isinstance(cls, type) and isinstance(value, cls) for cls in classes)


def _is_datamodule(value: Any) -> bool:
    return _is_lightning(value, "LightningDataModule")


def _is_lightning_module(module: Any) -> bool:
    return _is_lightning(module, "LightningModule")


@contextlib.contextmanager
def _no_trainer_warnings():
    """``self.log`` without a Trainer warns on every call; during a range test that is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*self\.log.*")
        warnings.filterwarnings("ignore", message=r".*self\.trainer.*reference is not registered.*")
        yield


@contextlib.contextmanager
def _without_trainer(module: Any):
    """Run with no Trainer attached, as the range test expects: after ``trainer.fit`` the module
    keeps the spent Trainer, whose ``self.log`` then raises ("the loop's result collection is not
    registered yet") instead of being skipped."""
    trainer = getattr(module, "_trainer", None)
    if trainer is None:
        yield
        return
    module._trainer = None
    try:
        yield
    finally:
        module._trainer = trainer


def _needs_trainer(error: RuntimeError, where: str, fix: str) -> LrkitError | None:
    """Lightning's "not attached to a Trainer" error, said in lrkit's terms."""
    if "attached to a `Trainer`" not in str(error):
        return None
    return LrkitError(f"the LightningModule's {where} reads self.trainer, but lrkit runs it "
                      f"without a Trainer: {fix} ({error})")


def _single_optimizer(config: Any) -> Any:
    """The optimizer out of any form ``configure_optimizers`` may return (schedulers are ignored:
    the finder and recipes set the rate themselves)."""
    import torch

    if isinstance(config, torch.optim.Optimizer):
        return config
    if isinstance(config, dict):
        return _single_optimizer(config.get("optimizer"))
    if isinstance(config, (list, tuple)):
        if len(config) == 2 and isinstance(config[0], (list, tuple)):  # ([optimizers], [schedulers])
            return _single_optimizer(config[0])
        found = [_single_optimizer(item) for item in config]
        if len(found) == 1:
            return found[0]
        raise LrkitError(
            f"configure_optimizers returned {len(found)} optimizers; lrkit tunes one optimizer's "
            "rate: pass optimizer=... (the one to tune) and loss_fn=... to from_lightning")
    raise LrkitError(
        f"configure_optimizers returned {type(config).__name__}; expected an optimizer, a list "
        "or tuple of them, ([optimizers], [schedulers]) or a dict with 'optimizer' -- or pass "
        "optimizer=... to from_lightning")


#: the data hooks a LightningDataModule can take over from the module, in the order
#: ``Trainer.fit`` calls them on every batch
BATCH_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


def _overridden(owner: Any, hook: str) -> bool:
    """Whether ``owner`` defines ``hook`` itself rather than inheriting Lightning's default."""
    if hook in vars(owner):
        return True
    for cls in type(owner).__mro__:
        if hook in vars(cls):
            return not cls.__module__.startswith(("lightning.", "pytorch_lightning."))
    return False


def _batch_hooks(module: Any, datamodule: Any) -> list[Callable]:
    """The batch hooks as ``Trainer.fit`` picks them: the datamodule's where it overrides one,
    otherwise the module's."""
    return [getattr(datamodule if datamodule is not None and _overridden(datamodule, hook)
                    else module, hook) for hook in BATCH_HOOKS]


def _training_loss(module: Any, datamodule: Any = None) -> Callable[[Any, Any], Any]:
    """``loss_fn(model, batch)`` that prepares the batch as ``Trainer.fit`` does (the batch
    hooks, and the move to the module's device between them) and calls the module's
    ``training_step`` (with a running ``batch_idx`` when it takes one)."""
    try:
        takes_index = len(inspect.signature(module.training_step).parameters) >= 2
    except (TypeError, ValueError):
        takes_index = True
    counter = [0]
    before, transfer, after = _batch_hooks(module, datamodule)

    def loss_fn(model: Any, batch: Any) -> Any:
        index = counter[0]
        counter[0] += 1
        try:
            with _no_trainer_warnings(), _without_trainer(model):
                batch = after(transfer(before(batch, 0), model.device, 0), 0)
                loss = (model.training_step(batch, index) if takes_index
                        else model.training_step(batch))
        except RuntimeError as error:
            raise (_needs_trainer(error, "training_step", "pass loss_fn=... (the loss of one "
                                                     "batch) to from_lightning") or error) from error
        if loss is None:
            raise LrkitError(
                f"training_step returned None for batch {index} (Lightning's way to skip a "
                "batch); the range test needs a loss at every step: pass loss_fn=... (the loss "
                "of one batch) to from_lightning, or skip such batches in the data")
        return loss

    loss_fn.moves_batches = True  # the range test leaves the batch as the loader gave it
    return loss_fn


#: how a CombinedLoader's length follows its loaders' in each of its modes
_COMBINED_LENGTH = {"max_size_cycle": max, "max_size": max, "min_size": min, "sequential": sum}


class _CombinedBatches:
    """Several loaders as Lightning combines them, re-iterable like a DataLoader and yielding
    what ``training_step`` gets: for training one batch from each (the shorter ones cycled),
    for validation one loader after the other. A ``CombinedLoader`` the user built is taken as
    it is (its iterator yields ``(batch, batch_idx, dataloader_idx)``; the step gets ``batch``)."""

    def __init__(self, loaders: Any, mode: str = "max_size_cycle") -> None:
        from lightning.pytorch.utilities import CombinedLoader

        self._combined = (loaders if isinstance(loaders, CombinedLoader)
                          else CombinedLoader(loaders, mode))

    def __iter__(self):
        for batch, *_ in self._combined:
            yield batch

    @property
    def flattened(self) -> list:
        """The loaders inside (whose generators a range test saves and puts back)."""
        return list(self._combined.flattened)

    def state_dict(self) -> list:
        """The places of the loaders inside that keep one (None for the others): a range test
        puts them back, as it does a loader given alone."""
        from lrkit.adapters.torch import keeps_place

        return [loader.state_dict() if keeps_place(loader) else None
                for loader in self._combined.flattened]

    def load_state_dict(self, states: list) -> None:
        for loader, state in zip(self._combined.flattened, states):
            if state is not None:
                loader.load_state_dict(state)

    def __len__(self) -> int:
        # from the loaders' own lengths: Lightning's len() needs the CombinedLoader iterated
        # first ("Please call iter(combined_loader) first"), which would start every loader's
        # iterator (and DataLoader workers) for a length
        length = _COMBINED_LENGTH.get(getattr(self._combined, "_mode", None), max)
        return length(len(loader) for loader in self._combined.flattened)


def _combined(loaders: Any) -> bool:
    return type(loaders).__name__ == "CombinedLoader" and type(loaders).__module__.startswith(
        ("lightning.", "pytorch_lightning."))


def _data(module: Any, datamodule: Any, loaders: Any, kind: str) -> Any:
    if loaders is not None:
        if isinstance(loaders, (list, tuple, dict)):
            # several validation loaders run one after another in Trainer.fit
            return _CombinedBatches(loaders, "sequential" if kind == "val" else "max_size_cycle")
        return _CombinedBatches(loaders) if _combined(loaders) else loaders
    source = datamodule if datamodule is not None else module
    method = getattr(source, f"{kind}_dataloader", None)
    if method is None:
        return None
    try:
        loaders = method()
    except RuntimeError as error:
        if kind == "val" and _needs_trainer(error, "", "") is not None:
            return None  # validation is optional: find_lr(val_every=...) asks for it by name
        raise (_needs_trainer(error, f"{kind}_dataloader", f"pass {kind}_dataloaders=...")
               or error) from error
    except Exception as error:  # Lightning's default hook: "must be implemented" (no data)
        if type(error).__name__ == "MisconfigurationException":
            return None
        raise
    return _data(module, datamodule, loaders, kind) if loaders is not None else None


def from_lightning(
    module: Any,
    train_dataloaders: Iterable | None = None,
    *,
    datamodule: Any = None,
    val_dataloaders: Iterable | None = None,
    optimizer: Any = None,
    loss_fn: Callable[[Any, Any], Any] | None = None,
    budget_steps: int | None = None,
    name: str | None = None,
) -> Problem:
    """An lrkit :class:`Problem` from a LightningModule: its ``training_step`` is the loss, its
    ``configure_optimizers`` the optimizer (or ``optimizer=``), and its data the
    ``train_dataloaders`` given (a list or dict of loaders is combined as Lightning does), the
    ``datamodule``'s or the module's own ``train_dataloader()``. ``prepare_data()`` and
    ``setup("fit")`` are called on both, as ``Trainer.fit`` does, and every batch goes through
    ``on_before_batch_transfer``, ``transfer_batch_to_device`` and ``on_after_batch_transfer``
    (the datamodule's where it overrides them). Several validation loaders run one after
    another, as in ``Trainer.fit``."""
    import torch

    if not isinstance(module, torch.nn.Module) or not hasattr(module, "training_step"):
        raise LrkitError(f"from_lightning needs a LightningModule, got {type(module).__name__}")
    if not _is_lightning_module(module):
        raise LrkitError(
            f"{type(module).__name__} has a training_step but is not a LightningModule; for a "
            "plain torch.nn.Module use lrkit.find_lr(model, optimizer, loader, loss_fn=...)")
    if getattr(module, "automatic_optimization", True) is False and loss_fn is None:
        raise LrkitError(
            f"{type(module).__name__} uses manual optimization (automatic_optimization = False): "
            "its training_step steps the optimizers itself, so lrkit cannot set the rate per "
            "step; pass loss_fn=... (the loss of one batch, no backward) and optimizer=...")
    if datamodule is None and _is_datamodule(train_dataloaders):
        # trainer.fit(module, dm) takes a datamodule in the loaders' place, and so does this
        datamodule, train_dataloaders = train_dataloaders, None
    # what Trainer.fit does before training: prepare_data, then setup("fit"), on the datamodule
    # and on the module (which may build its datasets, or layers, there)
    for hook, args in (("prepare_data", ()), ("setup", ("fit",))):
        for owner in (datamodule, module):
            if owner is not None and hasattr(owner, hook):
                getattr(owner, hook)(*args)
    # then configure_model, where a module may build its layers (Lightning >= 2.1; it must be
    # idempotent, Lightning calls it at every fit): without it configure_optimizers saw no
    # parameters ("optimizer got an empty parameter list")
    if callable(getattr(module, "configure_model", None)):
        try:
            module.configure_model()
        except RuntimeError as error:
            raise (_needs_trainer(error, "configure_model", "build the layers before calling "
                                  "lrkit (in __init__, or call configure_model() yourself)")
                   or error) from error
    train = _data(module, datamodule, train_dataloaders, "train")
    if train is None:
        raise LrkitError(
            f"{type(module).__name__} has no training data: pass train_dataloaders=... or "
            "datamodule=..., or define train_dataloader() on the module")
    val = _data(module, datamodule, val_dataloaders, "val")
    if optimizer is None:
        try:
            optimizer = _single_optimizer(module.configure_optimizers())
        except RuntimeError as error:
            raise (_needs_trainer(error, "configure_optimizers", "pass optimizer=...")
                   or error) from error
    return Problem(model=module, optimizer=optimizer, train_loader=train,
                   loss_fn=loss_fn or _training_loss(module, datamodule), val_loader=val,
                   name=name or type(module).__name__, budget_steps=budget_steps)


def find_lr(
    module: Any,
    train_dataloaders: Iterable | None = None,
    *,
    datamodule: Any = None,
    val_dataloaders: Iterable | None = None,
    optimizer: Any = None,
    loss_fn: Callable[[Any, Any], Any] | None = None,
    update_attr: bool | str = False,
    **finder_options: Any,
):
    """:func:`lrkit.find_lr` on a LightningModule (see :func:`from_lightning`). ``update_attr``:
    write the suggestion to the module (``True``: its ``lr`` or ``learning_rate`` attribute or
    hyperparameter, as Lightning's tuner does; a string: that attribute), so that
    ``configure_optimizers`` uses it in ``trainer.fit``. When the attribute sets several groups'
    rates in proportion (a backbone at ``lr / 10``), it is scaled so that every group gets its
    own suggestion; otherwise it gets the first group's. torchmetrics states updated by
    ``training_step`` during the test are restored with the module."""
    import lrkit
    from lrkit.state import at_base_rates

    if "val_loader" in finder_options:
        raise LrkitError("for a LightningModule pass validation data as val_dataloaders=... "
                         "(or let the module or datamodule provide it)")
    problem = from_lightning(module, train_dataloaders, datamodule=datamodule,
                             val_dataloaders=val_dataloaders, optimizer=optimizer,
                             loss_fn=loss_fn, budget_steps=finder_options.pop("budget_steps", None))
    val_loader = None
    if finder_options.get("val_every") is not None:  # validation mode only when asked for
        val_loader = problem.val_loader
        if val_loader is None:
            raise LrkitError(
                f"val_every needs validation data and {type(module).__name__} gave none: pass "
                "val_dataloaders=..., or a datamodule or module with val_dataloader()")
    target = _attribute_to_update(module, update_attr) if update_attr else None
    old_lrs = [_base_rate(g) for g in problem.optimizer.param_groups]
    # a scheduler built by configure_optimizers has moved the rates already (a warmup from 0
    # set them all to 0, and the test ran every group at one rate, their ratios lost): the
    # test runs at the base rates, which fit's scheduler starts from
    # (torchmetrics states come back with every range test: TorchTrainable.preserved)
    with at_base_rates(problem.optimizer):
        result = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                               loss_fn=problem.loss_fn, val_loader=val_loader,
                               budget_steps=problem.budget_steps, **finder_options)
    if target is not None and result.suggested_lr is not None:
        old_value = _get_attribute(module, target)
        response = _rate_response(module, target, old_value, old_lrs)
        # the first group with a rate: one held at 0 (a frozen stem) moves by no factor, and
        # suggested_lr is that first group's suggestion
        reference = next((i for i, lr in enumerate(old_lrs) if lr > 0), None)
        if response == "proportional" and reference is not None:
            # configure_optimizers scales every group's rate with the attribute (a backbone at
            # lr/10, say): the attribute moves by the factor the groups move by together
            _set_attribute(module, target,
                           old_value * result.suggested_lrs[reference] / old_lrs[reference])
        else:
            _set_attribute(module, target, result.suggested_lr)
        if response == "none":
            result.warnings.append(
                f"update_attr: set {target}={result.suggested_lr:.3g}, but configure_optimizers "
                f"does not read it (doubling it left every rate unchanged), so training will not "
                "use the suggestion; name the attribute it reads with update_attr='...'")
    return result


def _base_rate(group: dict) -> float:
    """The rate a group's schedule is scaled from, which the attribute sets: OneCycleLR's
    ``max_lr`` (its peak), else a scheduler's ``initial_lr`` (a LinearLR warmup has already
    scaled ``lr`` to 0.1x by the time configure_optimizers returns), else ``lr``."""
    for key in ("max_lr", "initial_lr"):
        value = group.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return float(group["lr"])


def _rate_response(module: Any, attribute: str, value: Any, lrs: list[float]) -> str:
    """How ``configure_optimizers``'s rates follow the attribute, doubled on a throwaway
    optimizer and put back: ``"proportional"`` (every group's rate doubles), ``"none"`` (no rate
    moves: the attribute is not what it reads) or ``"other"`` (cannot tell, or not in proportion)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return "other"
    _set_attribute(module, attribute, 2 * value)
    try:
        with _no_trainer_warnings():
            doubled = [_base_rate(g) for g in
                       _single_optimizer(module.configure_optimizers()).param_groups]
    except Exception:  # noqa: BLE001 -- any failure means "cannot tell": use the plain rate
        return "other"
    finally:
        _set_attribute(module, attribute, value)
    if len(doubled) != len(lrs):
        return "other"
    if all(math.isclose(new, 2 * old, rel_tol=1e-9) for new, old in zip(doubled, lrs)):
        return "proportional"
    if all(math.isclose(new, old, rel_tol=1e-12) for new, old in zip(doubled, lrs)):
        return "none"
    return "other"


def _get_attribute(module: Any, attribute: str) -> Any:
    if _in_hparams(module, attribute):
        return module.hparams[attribute]
    return getattr(module, attribute, None)


def _attribute_to_update(module: Any, update_attr: bool | str) -> str:
    if isinstance(update_attr, str):
        if not (hasattr(module, update_attr) or _in_hparams(module, update_attr)):
            raise LrkitError(f"update_attr={update_attr!r}: {type(module).__name__} has no "
                             f"attribute or hyperparameter {update_attr!r}")
        return update_attr
    for attribute in LR_ATTRIBUTES:
        if hasattr(module, attribute) or _in_hparams(module, attribute):
            return attribute
    raise LrkitError(
        f"update_attr=True but {type(module).__name__} has no 'lr' or 'learning_rate' attribute "
        "or hyperparameter; name one with update_attr='...', or read result.suggested_lr")


def _in_hparams(module: Any, attribute: str) -> bool:
    hparams = getattr(module, "hparams", None)
    try:
        return hparams is not None and attribute in hparams
    except TypeError:
        return False


def _set_attribute(module: Any, attribute: str, value: float) -> None:
    if _in_hparams(module, attribute):
        module.hparams[attribute] = value
    if hasattr(module, attribute) or not _in_hparams(module, attribute):
        setattr(module, attribute, value)
