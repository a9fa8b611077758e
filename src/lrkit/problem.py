"""The *recipe form*: what a user hands to lrkit (model, optimizer, data, loss), from Python or
from a ``file.py:function`` on the command line, and how a fresh copy is built for each trial."""
from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from lrkit.errors import LrkitError


@dataclasses.dataclass
class Problem:
    """Everything needed to train one model.

    ``criterion`` handles ``(inputs, targets)`` batches; ``loss_fn(model, batch)`` handles any
    other batch format or model output. ``budget_steps`` is the planned training length in
    optimizer steps (the best constant rate depends on it); ``metric_fn(model, loader)`` an optional
    quality measure (for example accuracy) reported beside the loss.
    """

    model: Any
    optimizer: Any
    train_loader: Iterable
    criterion: Callable | None = None
    loss_fn: Callable | None = None
    val_loader: Iterable | None = None
    name: str = "custom"
    budget_steps: int | None = None
    metric_fn: Callable | None = None
    metric_name: str | None = None

    def trainable(self, **options: Any):
        """A :class:`lrkit.adapters.torch.TorchTrainable` over this problem."""
        from lrkit.adapters.torch import TorchTrainable

        return TorchTrainable(
            self.model, self.optimizer, self.train_loader, self.criterion,
            loss_fn=self.loss_fn, val_loader=self.val_loader, **options,
        )


_TUPLE_FIELDS = ("model", "optimizer", "train_loader", "criterion", "val_loader")


def as_problem(value: Any, *, name: str = "custom") -> Problem:
    """Normalise what a user's recipe function returned: a Problem, a dict or a tuple
    ``(model, optimizer, train_loader, criterion[, val_loader])``."""
    if isinstance(value, Problem):
        return value
    if isinstance(value, dict):
        aliases = {"data": "train_loader", "loader": "train_loader", "train": "train_loader",
                   "val": "val_loader", "valid_loader": "val_loader", "loss": "criterion"}
        fields = {f.name for f in dataclasses.fields(Problem)}
        kwargs = {}
        for key, item in value.items():
            key = aliases.get(key, key)
            if key not in fields:
                raise LrkitError(
                    f"the recipe returned an unknown key {key!r}; allowed keys: {sorted(fields)}"
                )
            kwargs[key] = item
        missing = [k for k in ("model", "optimizer", "train_loader") if k not in kwargs]
        if missing:
            raise LrkitError(f"the recipe's dict lacks {missing}; it needs model, optimizer, train_loader")
        kwargs.setdefault("name", name)
        return Problem(**kwargs)
    if isinstance(value, tuple) and 3 <= len(value) <= 5:
        return Problem(**dict(zip(_TUPLE_FIELDS, value)), name=name)
    raise LrkitError(
        f"the recipe returned {type(value).__name__}; return an lrkit.Problem, a dict with "
        "model/optimizer/train_loader/criterion, or a tuple (model, optimizer, train_loader, "
        "criterion[, val_loader])"
    )


def _load_function(spec: str) -> Callable[..., Any]:
    path_text, _, func_name = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise LrkitError(f"recipe file {path_text!r} does not exist; give path/to/file.py:function")
    module_name = f"lrkit_recipe_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise LrkitError(f"cannot import {path_text!r} as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # so that pickling by reference works for worker processes
    sys.path.insert(0, str(path.resolve().parent))
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    func = getattr(module, func_name, None)
    if not callable(func):
        available = sorted(n for n, v in vars(module).items()
                           if callable(v) and not n.startswith("_") and inspect.isfunction(v)
                           and v.__module__ == module_name)
        raise LrkitError(
            f"{path_text!r} has no function {func_name!r}; functions defined there: {available}"
        )
    return func


def call_recipe(func: Callable[..., Any], *, seed: int = 0) -> Problem:
    """Call a user's recipe function, with ``seed=`` when it takes one, and normalise the result."""
    try:
        accepts_seed = "seed" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        accepts_seed = False
    value = func(seed=seed) if accepts_seed else func()
    return as_problem(value, name=getattr(func, "__name__", "custom"))


def build_problem(target: Any, *, seed: int = 0, what: str = "this call") -> Problem:
    """A problem from any recipe form: an example name, ``file.py:function``, a callable recipe
    (``seed=`` passed when accepted) or a ready :class:`Problem` (used as it is)."""
    if isinstance(target, Problem):
        return target
    if isinstance(target, str):
        if not target.strip():
            raise LrkitError(f"{what} needs an example name or 'path/to/file.py:function', got ''")
        return load_problem(target, seed=seed)
    if callable(target):
        return call_recipe(target, seed=seed)
    raise LrkitError(
        f"{what} needs an example name, 'path/to/file.py:function', an lrkit.Problem or a "
        f"callable recipe(seed=...) returning one; got {type(target).__name__}")


def load_problem(spec: str, *, seed: int = 0) -> Problem:
    """Build a problem from a built-in example name or ``path/to/file.py:function``.

    The function may take a ``seed`` keyword; it is called once per problem built, so sweeps get
    a fresh model and optimizer per trial.
    """
    from lrkit import examples

    if ".py:" in spec:
        return call_recipe(_load_function(spec), seed=seed)
    if spec.endswith(".py"):
        raise LrkitError(f"name the function too: {spec}:function_name")
    return examples.build(spec, seed=seed)
