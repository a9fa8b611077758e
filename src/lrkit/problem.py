"""The *recipe form*: what a user hands to lrkit (model, optimizer, data, loss), from Python or
from a ``file.py:function`` on the command line, and how a fresh copy is built for each trial."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import inspect
import keyword
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from lrkit.errors import LrkitError, one_number, plain_int


@dataclasses.dataclass
class Problem:
    """Everything needed to train one model.

    ``criterion`` handles ``(inputs, targets)`` batches; ``loss_fn(model, batch)`` handles any
    other batch format or model output. ``budget_steps`` is the planned training length in
    optimizer steps (the best constant rate depends on it); ``metric_fn(model, loader)`` an optional
    quality measure (for example accuracy) reported beside the loss. ``step_options`` say how the
    training loop takes one optimizer step (:class:`~lrkit.adapters.torch.TorchTrainable`'s
    ``accumulation_steps``, ``max_grad_norm``, ``amp``): the framework adapters fill them from
    the framework's settings, so that the range test, recipes and sweeps train as it would.
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
    step_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # checked however the problem was made (a recipe's dict, a Problem passed directly):
        # None is none, another type or key is refused by name; a budget of 2.5 steps or
        # '300' too (recommend made a 2-step recipe of the first)
        self.step_options = _step_options(self.step_options)
        self.budget_steps = _budget_steps(self.budget_steps)

    def trainable(self, **options: Any):
        """A :class:`lrkit.adapters.torch.TorchTrainable` over this problem."""
        from lrkit.adapters.torch import TorchTrainable

        # (again: the field may have been set after the problem was made)
        step_options = _step_options(self.step_options)
        return TorchTrainable(
            self.model, self.optimizer, self.train_loader, self.criterion,
            loss_fn=self.loss_fn, val_loader=self.val_loader, **{**step_options, **options},
        )

    def loss_arguments(self) -> dict[str, Callable | None]:
        """``criterion`` and ``loss_fn`` as :func:`lrkit.find_lr` takes them: the ``loss_fn``
        alone when there is one (it takes precedence, as in training: a ``loss_fn`` set on a
        built example replaces its criterion), else the criterion."""
        if self.loss_fn is not None:
            return {"criterion": None, "loss_fn": self.loss_fn}
        return {"criterion": self.criterion, "loss_fn": None}

    @property
    def accumulation_steps(self) -> int:
        """Batches per optimizer step (``step_options``; 1 by default), checked as the training
        step checks it ('abc' raised a ValueError here, 2.5 was read as 2 and -1 as -1)."""
        value = plain_int(_step_options(self.step_options).get("accumulation_steps"))
        if value is None:
            return 1
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise LrkitError(f"the recipe's step_options: accumulation_steps must be an integer "
                             f">= 1, got {value!r}")
        return value


_TUPLE_FIELDS = ("model", "optimizer", "train_loader", "criterion", "val_loader")


def as_problem(value: Any, *, name: str = "custom") -> Problem:
    """Normalise what a user's recipe function returned: a Problem, a dict or a tuple
    ``(model, optimizer, train_loader, criterion[, val_loader])``."""
    return _as_problem(value, name=name)  # (its budget_steps checked as the Problem is made)


def _budget_steps(value: Any) -> int | None:
    """A problem's planned length checked for every command alike (recommend took '1000', find
    refused it): a whole number of steps >= 1 (1000.0, a computed length, is 1000), or None."""
    budget = plain_int(value)
    if budget is not None and not isinstance(budget, (int, str)):
        number = one_number(budget)  # 400.0, np.float32(400), torch.tensor(400.): 400
        if number is not None and number.is_integer():
            budget = int(number)
    if budget is not None and not (isinstance(budget, int) and not isinstance(budget, bool)
                                   and budget >= 1):
        raise LrkitError(f"the recipe's 'budget_steps' (the planned training length) must be a "
                         f"whole number of steps >= 1, or None; got {value!r}")
    return budget


#: what a recipe's step_options may say (how its training takes one step, and where)
STEP_OPTIONS = ("accumulation_steps", "amp", "max_grad_norm", "device", "sync_ranks")


def _step_options(options: Any) -> dict[str, Any]:
    """A recipe's ``step_options`` checked for every command alike (find refused what recommend
    and train then failed on deep inside): ``None`` is none, anything but a dict of the known
    keys is refused by name."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise LrkitError(f"the recipe's step_options must be a dict such as "
                         f"{{'accumulation_steps': 2}}, got {type(options).__name__}")
    unknown = sorted(str(k) for k in options if k not in STEP_OPTIONS)
    if unknown:
        raise LrkitError(f"the recipe's step_options has {unknown[0]!r}, which a training step "
                         f"does not take; its keys: {', '.join(map(repr, STEP_OPTIONS))}")
    return options


def _as_problem(value: Any, *, name: str = "custom") -> Problem:
    if isinstance(value, Problem):
        # (checked again: a field may have been set after the problem was made)
        budget = _budget_steps(value.budget_steps)
        return value if budget is value.budget_steps else dataclasses.replace(
            value, budget_steps=budget)
    if isinstance(value, dict):
        aliases = {"data": "train_loader", "loader": "train_loader", "train": "train_loader",
                   "val": "val_loader", "valid_loader": "val_loader", "loss": "criterion"}
        fields = {f.name for f in dataclasses.fields(Problem)}
        kwargs = {}
        for given, item in value.items():
            key = aliases.get(given, given)
            if key in kwargs:  # 'train_loader' and its alias 'data': one of them was lost
                raise LrkitError(
                    f"the recipe returned {given!r} and another name for it ({key!r}); give "
                    "one of them")
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
    if isinstance(value, tuple):
        raise LrkitError(
            f"the recipe returned a tuple of {len(value)} item{'s' if len(value) != 1 else ''}; "
            "a tuple needs 3 to 5: (model, optimizer, train_loader[, criterion[, val_loader]]) "
            "(or return an lrkit.Problem or a dict)")
    raise LrkitError(
        f"the recipe returned {type(value).__name__}; return an lrkit.Problem, a dict with "
        "model/optimizer/train_loader/criterion, or a tuple (model, optimizer, train_loader, "
        "criterion[, val_loader])"
    )


def _load_function(spec: str) -> Callable[..., Any]:
    path_text, _, func_name = spec.rpartition(":")
    path = Path(path_text)
    if path.is_dir():
        raise LrkitError(f"recipe file {path_text!r} is a directory, not a Python file; give "
                         "path/to/file.py:function")
    if not path.is_file():
        raise LrkitError(f"recipe file {path_text!r} does not exist; give path/to/file.py:function")
    module_name = _module_name(path)
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise LrkitError(f"cannot import {path_text!r} as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    # registered under its own name, with its folder on sys.path for the rest of the command (as
    # `python recipe.py` has it): imports inside its functions (a sibling module imported in the
    # recipe function or in forward) find their files, and DataLoader workers started by spawn
    # (macOS and Windows) import the recipe again by that name to unpickle its classes
    sys.modules[module_name] = module
    module.__lrkit_recipe_file__ = True  # type: ignore[attr-defined]  # see is_recipe_module
    folder = str(path.resolve().parent)
    with contextlib.suppress(ValueError):  # first, also when an earlier recipe put it further
        sys.path.remove(folder)             # down: a worker finds this file's name here first
    sys.path.insert(0, folder)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        where = f" at line {exc.lineno}" if exc.lineno else ""
        raise LrkitError(f"recipe file {path_text!r} has a syntax error{where}: {exc.msg}; "
                         "fix it (python -m py_compile shows it too)") from None
    except SystemExit as exc:  # argparse or sys.exit() at import time: the recipe's, named
        sys.modules.pop(module_name, None)
        raise LrkitError(f"recipe file {path_text!r} called sys.exit({exc.code!r}) while being "
                         "imported (argument parsing at the top of the file?); move that under "
                         "if __name__ == '__main__':") from None
    except Exception as exc:  # noqa: BLE001 - whatever the user's module raises while importing
        sys.modules.pop(module_name, None)
        raise _quoting(LrkitError(f"cannot import recipe file {path_text!r}: {_cause(exc)}"),
                       exc) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        available = sorted(n for n, v in vars(module).items()
                           if callable(v) and not n.startswith("_") and inspect.isfunction(v)
                           and v.__module__ == module_name)
        raise LrkitError(
            f"{path_text!r} has no function {func_name!r}; functions defined there: {available}"
        )
    return func


def is_recipe_module(module_name: str) -> bool:
    """Whether ``module_name`` is a recipe file that lrkit imported (``file.py:function``)."""
    return module_name.startswith("lrkit_recipe_") or bool(
        getattr(sys.modules.get(module_name), "__lrkit_recipe_file__", False))


def _module_name(path: Path) -> str:
    """The recipe's module name: its file's stem, as `python recipe.py` would import it, unless
    that is not an identifier or names another module (the standard library's, an installed
    package's, another recipe file's of the same name, ``__main__``): then a private name made
    from its path, which DataLoader workers started by spawn cannot import (rename the file)."""
    stem = path.stem
    if stem.isidentifier() and not keyword.iskeyword(stem) and not stem.startswith("__"):
        # the file that name stands for now, if any: a module loaded (another recipe file of
        # the same name: a/train.py, b/train.py) or one Python would find (the standard
        # library's csv, an installed package)
        loaded, found = sys.modules.get(stem), None
        if loaded is not None:
            origin = getattr(loaded, "__file__", None)
        else:
            try:
                found = importlib.util.find_spec(stem)
            except (ImportError, ValueError):  # a name find_spec cannot place: taken
                found, origin = True, None
            else:
                origin = getattr(found, "origin", None)
        if (loaded is None and found is None) or (
                origin and Path(origin).resolve() == path.resolve()):
            return stem
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    return f"lrkit_recipe_{digest}"


def _quoting(error: LrkitError, exc: BaseException) -> LrkitError:
    """``error``, marked as quoting the user's own exception text: the CLI words lrkit's
    parameter names as its options (num_steps as --steps), never inside the user's words."""
    error.quoted = _cause(exc)  # type: ignore[attr-defined]
    return error


def _cause(exc: BaseException) -> str:
    """``"ValueError: message"``: the user's exception, as one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def call_recipe(func: Callable[..., Any], *, seed: int = 0, label: str | None = None) -> Problem:
    """Call a user's recipe function, with ``seed=`` when it takes one, and normalise the result.

    ``label`` (``"file.py:function"`` on the command line) names the recipe in errors; with it,
    an exception the function raises becomes an :class:`LrkitError` naming the recipe and the
    exception's type and message (chained, so the traceback stays available from Python).
    """
    name = label or getattr(func, "__qualname__", None) or getattr(func, "__name__", "the recipe")
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        parameters = {}
    seed_param = parameters.get("seed")
    accepts_seed = seed_param is not None
    # a positional-only seed (def make(seed, /)) takes the seed by position
    seed_by_position = seed_param is not None and seed_param.kind == seed_param.POSITIONAL_ONLY
    required = [p.name for p in parameters.values()
                if p.default is inspect.Parameter.empty and p.name != "seed"
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if required:
        raise LrkitError(
            f"{name} needs argument{'s' if len(required) > 1 else ''} {', '.join(required)}, but "
            "lrkit calls a recipe with no arguments (only seed= when it takes one); give "
            f"{'them defaults' if len(required) > 1 else 'it a default'} or wrap it in a function "
            "without arguments")
    seed = _seed(seed)
    _seed_generators(seed)
    try:
        value = (func(seed) if seed_by_position else func(seed=seed)) if accepts_seed else func()
    except Exception as exc:  # noqa: BLE001 - the user's code: name it and its error
        if label is None:
            raise
        raise _quoting(LrkitError(f"{label} raised {_cause(exc)}"), exc) from exc
    try:
        problem = as_problem(value, name=getattr(func, "__name__", "custom"))
    except LrkitError as exc:
        if label is None:
            raise
        raise LrkitError(f"{label}: {exc}") from None
    check_problem(problem, name)
    return problem


def _seed(seed: Any) -> int:
    """``seed`` as a Python int, refused by name unless torch's generators take it (a string or
    None failed in ``seed % 2**64``, numpy's and torch's integers overflowed there)."""
    seed = plain_int(seed)
    if not (isinstance(seed, int) and not isinstance(seed, bool) and -2 ** 63 <= seed < 2 ** 64):
        raise LrkitError(f"seed must be an integer from -2**63 to 2**64 - 1, got {seed!r}")
    return seed


def _seed_generators(seed: int) -> None:
    """torch's, numpy's and Python's generators seeded with ``seed`` before a recipe builds its
    problem, and left so: a recipe that draws its initialisation or data from them (without
    ``seed=``, or without seeding them itself) builds the same problem for the same seed, in
    every process, whichever trial ran before it; and a ``DataLoader(shuffle=True)`` without a
    generator of its own, which draws its order from torch's as it is iterated, shuffles the
    same way in every run (also after a recipe's own ``torch.manual_seed``, which putting the
    generators back had undone)."""
    import random

    import numpy as np
    import torch

    torch.manual_seed(seed % 2**64)  # (as torch reads a seed: 5 and 2**63 + 5 are two)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def check_problem(problem: Problem, name: str = "the recipe") -> Problem:
    """Refuse a problem that cannot train: a model without a trainable parameter. Without a
    ``criterion`` or ``loss_fn`` the model's own output must be the loss (as Hugging Face models
    return it); when calling the model that way fails, the error says to add one."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return problem
    model = problem.model
    optimizer = problem.optimizer
    # what the optimizer trains counts too: a frozen model with a learned prompt or temperature
    trained = ([p for g in optimizer.param_groups for p in g["params"]]
               if isinstance(optimizer, torch.optim.Optimizer) else [])
    if isinstance(model, torch.nn.Module) and not any(
            isinstance(p, torch.Tensor) and p.requires_grad for p in trained):
        params = list(model.parameters())
        if not any(p.requires_grad for p in params):
            if params:
                what = (f"has {len(params)} parameter tensors, all frozen (requires_grad=False)",
                        "unfreeze some (p.requires_grad_(True)) and give those to the optimizer")
            else:
                what = ("has no parameters",
                        "its output must depend on parameters (layers or nn.Parameter) that the "
                        "optimizer updates")
            raise LrkitError(f"{name}: the model ({type(model).__name__}) {what[0]}, so there is "
                             f"nothing to train; {what[1]}")
    if problem.criterion is None and problem.loss_fn is None:
        problem.loss_fn = _OwnLoss(name)
    return problem


class _OwnLoss:
    """The loss when a recipe gives neither criterion nor loss_fn: the model's own output (what
    lrkit does anyway), with an error that says what to add when the model does not return one."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, model: Any, batch: Any) -> Any:
        from lrkit.adapters.torch import batch_loss

        try:
            return batch_loss(model, batch)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # LrkitError included
            raise LrkitError(
                f"{self.name} gives no criterion and no loss_fn, so the model's own output is "
                f"taken as the loss, and that failed ({_cause(exc)}); add a 'criterion' "
                "(e.g. torch.nn.CrossEntropyLoss(), for (inputs, targets) batches) or a "
                "'loss_fn' (loss_fn(model, batch) -> loss) to what the recipe returns") from exc


def refuse_model_as_recipe(target: Any, what: str) -> None:
    """A model (callable, so it passed for a recipe and was called with a seed: "forward()
    missing 1 required positional argument") or an optimizer given where a recipe goes."""
    import torch

    if isinstance(target, (torch.nn.Module, torch.optim.Optimizer)):
        kind = "a model" if isinstance(target, torch.nn.Module) else "an optimizer"
        raise LrkitError(
            f"{what} takes a recipe, not {kind} ({type(target).__name__}): pass "
            "lrkit.Problem(model, optimizer, train_loader, criterion), or a function "
            "recipe(seed) that builds and returns them (a sweep needs the function: a fresh "
            "model per trial)")


def build_problem(target: Any, *, seed: int = 0, what: str = "this call") -> Problem:
    """A problem from any recipe form: an example name, ``file.py:function``, a callable recipe
    (``seed=`` passed when accepted) or a ready :class:`Problem` (used as it is)."""
    if isinstance(target, Problem):
        return as_problem(target)
    if isinstance(target, str):
        if not target.strip():
            raise LrkitError(f"{what} needs an example name or 'path/to/file.py:function', got ''")
        return load_problem(target, seed=seed)
    refuse_model_as_recipe(target, what)
    if callable(target):
        return call_recipe(target, seed=seed)
    raise LrkitError(
        f"{what} needs an example name, 'path/to/file.py:function', an lrkit.Problem or a "
        f"callable recipe(seed=...) returning one; got {type(target).__name__}"
        + ("; for a dict of model, optimizer, train_loader and criterion, pass "
           "lrkit.Problem(**that_dict)" if isinstance(target, dict) else ""))


def load_problem(spec: str, *, seed: int = 0) -> Problem:
    """Build a problem from a built-in example name or ``path/to/file.py:function``.

    The function may take a ``seed`` keyword; it is called once per problem built, so sweeps get
    a fresh model and optimizer per trial.
    """
    from lrkit import examples

    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise LrkitError(f"load_problem needs an example name or 'path/to/file.py:function', "
                         f"got {type(spec).__name__}")
    if ".py:" in spec:
        # seeded before the file is imported too: data it draws at import time (numpy's
        # generator differed in every process) is the same for the same seed, also in a sweep,
        # which imports the file again for every trial
        _seed_generators(_seed(seed))
        return call_recipe(_load_function(spec), seed=seed, label=spec)
    if spec.endswith(".py"):
        raise LrkitError(f"name the function too: {spec}:function_name")
    examples.get(spec)  # an unknown name is refused before anything is seeded
    seed = _seed(seed)
    # as for a recipe: an example with dropout draws its masks from torch's generator, and the
    # same seed gave another curve after anything else had drawn from it in the process
    _seed_generators(seed)
    return examples.build(spec, seed=seed)
