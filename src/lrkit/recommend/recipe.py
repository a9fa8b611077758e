"""A complete training recipe: optimizer and options, peak rate, warmup, schedule, and where they
came from. Usable three ways: ``build`` (a real optimizer and scheduler), ``to_code`` (plain
PyTorch without lrkit), ``to_dict``/JSON/YAML (round trip)."""
from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

from lrkit.errors import LrkitError, is_real, plain_int, require, require_folder
from lrkit.files import write_atomically

#: optimizers whose rate follows the batch size linearly (Goyal et al. 2017); all others are
#: treated as adaptive and follow the square-root rule (Malladi et al. 2022)
LINEAR_RULE_OPTIMIZERS = ("SGD", "ASGD")

_KEEP = ("samples", "steps")


def check_optimizer_name(name: Any) -> None:
    """Refuse a name no class can have, without importing anything: a ``torch.optim`` class is
    looked up (a typo gets its "did you mean"), a dotted path is imported only when the recipe
    builds an optimizer (a report of someone's recipe file must not run the modules it names,
    nor lose the code when their package is not installed here)."""
    require(isinstance(name, str) and name.strip() != "",
            f"optimizer must be a name such as 'SGD' or 'AdamW', got {name!r}")
    if "." not in name:
        resolve_optimizer(name)
        return
    require(all(part.isidentifier() for part in name.split(".")),
            f"optimizer {name!r} is not an importable 'package.module.Class' path")


def resolve_optimizer(name: Any) -> type:
    """The optimizer class for a recipe's ``optimizer`` name: a ``torch.optim`` class name
    (``"SGD"``, ``"AdamW"``) or an importable dotted path (``"prodigyopt.Prodigy"``)."""
    import torch

    require(isinstance(name, str) and name.strip() != "",
            f"optimizer must be a name such as 'SGD' or 'AdamW', got {name!r}")
    if "." not in name:
        cls = getattr(torch.optim, name, None)
        if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer):
            return cls
        known = sorted(n for n, v in vars(torch.optim).items()
                       if isinstance(v, type) and issubclass(v, torch.optim.Optimizer)
                       and v is not torch.optim.Optimizer)
        lowered = {k.lower(): k for k in known}
        hint = f" (did you mean {lowered[name.lower()]!r}?)" if name.lower() in lowered else ""
        raise LrkitError(f"unknown optimizer {name!r}{hint}; use a torch.optim class "
                         f"({', '.join(known)}) or an importable 'package.module.Class'")
    module_name, _, attr = name.rpartition(".")
    module = sys.modules.get(module_name) or _loaded_recipe_file(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise LrkitError(f"unknown optimizer {name!r}: cannot import {module_name!r} "
                             f"({exc})") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise LrkitError(f"unknown optimizer {name!r}: {module_name} has no torch optimizer "
                         f"class {attr!r}")
    return cls


#: the name lrkit.problem imports a ``file.py:function`` recipe file under starts so
_RECIPE_FILE_MODULE = "lrkit_recipe_"


def _file_module_name(module_name: str) -> str:
    """The name a training script imports a module by: for a recipe file that lrkit imported
    under a private name (``lrkit recommend task.py:make``), the file's own (``task``)."""
    if not module_name.startswith(_RECIPE_FILE_MODULE):
        return module_name
    stem = Path(getattr(sys.modules.get(module_name), "__file__", None) or "").stem
    return stem if stem.isidentifier() else module_name


def _loaded_recipe_file(module_name: str) -> Any:
    """The recipe file lrkit imported under a private name whose file is ``module_name``.py."""
    for name, module in list(sys.modules.items()):
        if (name.startswith(_RECIPE_FILE_MODULE) and module is not None
                and _file_module_name(name) == module_name != name):
            return module
    return None


def optimizer_name(cls: type) -> str:
    """The name a recipe stores for an optimizer class (short for ``torch.optim`` classes; a
    class from a recipe file lrkit imported is named by the file, as a script imports it)."""
    import torch

    if getattr(torch.optim, cls.__name__, None) is cls:
        return cls.__name__
    return f"{_file_module_name(cls.__module__)}.{cls.__qualname__}"


def _sgd_named(name: str) -> bool:
    return name in LINEAR_RULE_OPTIMIZERS or name.startswith("SGD")  # (schedulefree's too)


def follows_linear_rule(cls: type) -> bool:
    """Whether an optimizer class's rate follows the batch size linearly: SGD, ASGD, a class
    derived from them, or one named so (schedulefree's ``SGDScheduleFree``)."""
    import torch

    return _sgd_named(cls.__name__) or issubclass(
        cls, tuple(getattr(torch.optim, n) for n in LINEAR_RULE_OPTIMIZERS))


def schedule_free(optimizer: Any) -> bool:
    """A schedule-free optimizer (``schedulefree``'s): it has train and eval modes, starts in
    eval mode, and refuses a step there."""
    return callable(getattr(optimizer, "train", None)) and callable(
        getattr(optimizer, "eval", None)) and "train_mode" in getattr(
        optimizer, "defaults", {})


def importable_name(cls: type) -> str:
    """:func:`optimizer_name`, refused before any measuring where a training script could not
    import the class by it (a recipe names its optimizer for one): a class defined inside a
    function or nested in a class, or from a recipe file lrkit imported under a private name
    (``my-task.py``, or a file named like another module). Before, recommend measured for
    minutes and then failed, or wrote code that could not be pasted."""
    name = optimizer_name(cls)
    module = cls.__module__
    where = None
    if "<locals>" in cls.__qualname__:
        where = "is defined inside a function"
    elif "." in cls.__qualname__:
        where = f"is nested in the class {cls.__qualname__.rpartition('.')[0]}"
    elif module.startswith(_RECIPE_FILE_MODULE):
        path = getattr(sys.modules.get(module), "__file__", None) or "its recipe file"
        where = (f"comes from {path}, whose name is not a module name a script can import "
                 f"(or another module has it)")
    if where is not None:
        raise LrkitError(
            f"the optimizer class {cls.__name__} {where}, so a training script cannot import it "
            f"by name, and a recipe names it for one: define it at the top level of a file "
            f"named as a module (my_task.py), or import it from a package")
    return name


_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _nonfinite_as_text(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_nonfinite_as_text(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _nonfinite_from_text(value: Any) -> Any:
    if isinstance(value, list):
        return [_nonfinite_from_text(v) for v in value]
    return _NONFINITE.get(value, value) if isinstance(value, str) else value


def _plain(value: Any) -> Any:
    """JSON-safe copy: tuples become lists, non-finite floats None, numpy scalars Python ones."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if getattr(value, "shape", ()) != () and callable(getattr(value, "tolist", None)):
        return _plain(value.tolist())  # an array or tensor of several numbers ("size 1" error)
    item = getattr(value, "item", None)
    if callable(item):
        return _plain(item())
    return str(value)


def plain_option(value: Any) -> Any:
    """An optimizer option as plain Python: lists (and one-dimensional tensors or arrays) as
    tuples (as torch keeps ``betas``), and a numpy number or a one-number tensor (Adam's
    ``betas`` may be tensors) as the Python number it holds, whose repr is what ``to_code``
    writes (``tensor(0.9000)`` or ``np.float64(0.9)`` would be a NameError in the pasted code)."""
    if isinstance(value, (list, tuple)):
        return tuple(plain_option(v) for v in value)
    if value is None or type(value) in (bool, int, float, str):
        return value
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            return value
    tolist = getattr(value, "tolist", None)
    shape = getattr(value, "shape", None)
    if callable(tolist) and isinstance(shape, tuple) and len(shape) == 1:
        # a tensor or array of numbers (betas=torch.tensor([0.9, 0.99])): a tuple, as torch keeps
        return tuple(plain_option(v) for v in tolist())
    return value


def steps_text(n: Any) -> str:
    """``"1 step"``, ``"0 steps"``, ``"2000 steps"``: a count of steps with the right plural."""
    return f"{n} step" if n == 1 else f"{n} steps"


#: the fewest steps a rescaled recipe may keep (below it, warmup and decay lose their meaning)
MIN_STEPS = 10


def _positive_int(value: Any, name: str) -> int:
    value = plain_int(value)
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"{name} must be a whole number of steps >= 1, got {value!r}")
    return value


@dataclasses.dataclass
class Recipe:
    """What to paste into a training script: optimizer, peak rate, warmup and schedule.

    ``schedule`` is an lrkit spec of multipliers of ``peak_lr`` (see docs/schedules.md), so the
    rate at optimizer step ``t`` is ``peak_lr * schedule(t)`` (:meth:`lr_at`). ``good_range`` is
    the range-test range the peak came from, ``batch_size`` the batch the recipe was measured at,
    ``notes`` says how each choice was made, and ``evidence`` holds the measurements (finder curve,
    confirmation runs, cost).
    """

    optimizer: str
    optimizer_options: dict
    peak_lr: float
    warmup_steps: int
    total_steps: int
    schedule: str
    good_range: tuple[float, float] | None = None
    batch_size: int | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    evidence: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        from lrkit.schedules import Peak, parse

        check_optimizer_name(self.optimizer)
        require(isinstance(self.optimizer_options, dict),
                f"optimizer_options must be a dict, got {type(self.optimizer_options).__name__}")
        require("lr" not in self.optimizer_options,
                "optimizer_options must not hold 'lr': the rate is peak_lr")
        self.optimizer_options = {k: plain_option(v) for k, v in self.optimizer_options.items()}
        require(is_real(self.peak_lr) and math.isfinite(self.peak_lr) and self.peak_lr > 0,
                f"peak_lr must be a positive finite number, got {self.peak_lr!r}")
        self.peak_lr = float(self.peak_lr)
        self.total_steps = _positive_int(self.total_steps, "total_steps")
        self.warmup_steps = plain_int(self.warmup_steps)
        require(isinstance(self.warmup_steps, int) and not isinstance(self.warmup_steps, bool)
                and self.warmup_steps >= 0,
                f"warmup_steps must be a whole number of steps >= 0, got {self.warmup_steps!r}")
        require(self.warmup_steps < self.total_steps,
                f"the budget of {self.total_steps} steps is not longer than the warmup of "
                f"{self.warmup_steps} steps; train for more steps or shorten the warmup")
        require(isinstance(self.schedule, str), f"schedule must be a spec string, got {self.schedule!r}")
        parsed = parse(self.schedule)
        require(not isinstance(parsed, Peak),
                f"schedule must be relative (multipliers of peak_lr), not peak(...): {self.schedule!r}")
        require(parsed.is_resolved,
                f"schedule must be in whole steps (no epoch/total units): {self.schedule!r}")
        length = getattr(parsed, "length", None)
        require(length is None or not math.isfinite(length) or length <= self.total_steps,
                f"the schedule {self.schedule!r} runs {length} steps, longer than the recipe's "
                f"total_steps={self.total_steps}; make them agree")
        head = _head_warmup(parsed)
        require(head is None or head == self.warmup_steps,
                f"warmup_steps={self.warmup_steps} but the schedule {self.schedule!r} warms up for "
                f"{steps_text(head)}; make them agree")
        self.schedule = str(parsed)
        if self.good_range is not None:
            try:
                lo, hi = (float(v) for v in self.good_range)
            except (TypeError, ValueError):
                raise LrkitError(f"good_range must be two rates (low, high) or None, got "
                                 f"{self.good_range!r}") from None
            self.good_range = (lo, hi)
        self.batch_size = plain_int(self.batch_size)  # numpy's integers too, stored as int
        require(self.batch_size is None or (isinstance(self.batch_size, int)
                                            and not isinstance(self.batch_size, bool)
                                            and self.batch_size >= 1),
                f"batch_size must be a positive integer or None, got {self.batch_size!r}")
        self.notes = list(self.notes)
        self.evidence = dict(self.evidence)

    # -- rates -------------------------------------------------------------------------------------
    @property
    def parsed_schedule(self):
        """The schedule as an :class:`lrkit.schedules.Schedule`."""
        return _parse(self.schedule)

    def lr_at(self, step: int) -> float:
        """The learning rate at optimizer step ``step`` (0 = the first step)."""
        return self.peak_lr * self.parsed_schedule(step)

    @property
    def is_sgd_like(self) -> bool:
        """SGD, ASGD, or a class derived from them (a user's ``MySGD(torch.optim.SGD)`` was
        rescaled by the square-root rule, read from its name)."""
        known = self.evidence.get("sgd_like")
        if isinstance(known, bool):  # read from the optimizer itself when it was measured
            return known
        if _sgd_named(self.optimizer.rpartition(".")[2]):
            return True
        try:
            return follows_linear_rule(resolve_optimizer(self.optimizer))
        except LrkitError:
            return False

    @property
    def batch_rule(self) -> str:
        """``"linear"`` for SGD, ``"sqrt"`` for adaptive optimizers."""
        return "linear" if self.is_sgd_like else "sqrt"

    # -- use ---------------------------------------------------------------------------------------
    def build(self, params: Any):
        """``(optimizer, scheduler)``: a real torch optimizer over ``params`` (parameters or
        parameter groups) at ``peak_lr`` with the recipe's options, and a
        ``torch.optim.lr_scheduler.LRScheduler`` that sets the rate at every optimizer step.
        Call ``scheduler.step()`` after each ``optimizer.step()``, as usual."""
        from lrkit.schedules import to_torch

        cls = resolve_optimizer(self.optimizer)
        try:
            optimizer = cls(params, lr=self.peak_lr, **self.optimizer_options)
        except LrkitError:
            raise
        except (TypeError, ValueError) as exc:  # an unknown option, or a value torch refuses
            raise LrkitError(f"cannot build {self.optimizer} with options "
                             f"{self.optimizer_options}: {exc}") from None
        ratios = [g.get("lr_ratio") for g in (self.evidence or {}).get("param_groups") or []
                  if isinstance(g, dict)]
        for i, group in enumerate(optimizer.param_groups):
            lr = group.get("lr")
            if hasattr(lr, "numel") and lr.numel() == 1:  # a tensor rate
                lr = float(lr)
            if not is_real(lr) or lr <= 10 * self.peak_lr:
                continue
            if any(is_real(r) and math.isclose(lr, r * self.peak_lr, rel_tol=1e-6)
                   for r in ratios):
                continue  # set as the note says: lr_ratio x peak_lr
            # a group's lr is a rate: the recipe's note gives each group's multiple of peak_lr
            # (lr_ratio), and lr=1.0 for "1 x peak_lr" trained at 1.0
            warnings.warn(f"parameter group {i} has lr={lr:g}, {lr / self.peak_lr:.3g}x the "
                          f"recipe's peak_lr {self.peak_lr:.3g}: a group's 'lr' is its rate "
                          "(lr_ratio x peak_lr), not the multiple; leave it out to run the "
                          "group at peak_lr", UserWarning, stacklevel=2)
        if schedule_free(optimizer):
            optimizer.train()  # it starts in eval mode, and its first step() raised
        return optimizer, to_torch(optimizer, self.schedule)

    def to_code(self, *, model: str = "model") -> str:
        """A few lines of plain PyTorch that build the same optimizer and schedule without lrkit."""
        from lrkit.recommend.codegen import recipe_code

        return recipe_code(self, model=model)

    # -- batch size --------------------------------------------------------------------------------
    def for_batch_size(self, new: int, *, old: int | None = None, keep: str = "samples") -> "Recipe":
        """This recipe moved to batch size ``new`` (from ``old``, default :attr:`batch_size`).

        The peak rate follows the linear rule for SGD and the square-root rule for adaptive
        optimizers (:func:`lrkit.schedules.batch_factor`); the warmup keeps its length in samples.
        ``keep="samples"`` (default) keeps the whole run the same number of samples (same
        epochs: fewer steps with a bigger batch); ``keep="steps"`` keeps ``total_steps``.
        """
        from lrkit.schedules import parse, rescale
        from lrkit.schedules.scaling import batch_factor

        known = self.batch_size
        old = known if old is None else plain_int(old)
        new = plain_int(new)
        require(old is not None, "the recipe does not know its batch size: pass old=...")
        # the recipe was measured at its own batch size: another old= would scale from a batch
        # it never trained with (old=16 on a batch-32 recipe scaled by 4 instead of 2, silently)
        require(known is None or old == known,
                f"old={old!r}, but this recipe was measured at batch size {known}; leave old= "
                "out (it is the recipe's own), or rescale a recipe measured at that batch size")
        for label, value in (("new", new), ("old", old)):
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                    f"batch size {label} must be a positive integer, got {value!r}")
        require(keep in _KEEP, f"keep={keep!r} is not allowed; allowed values: 'samples', 'steps'")
        rule = self.batch_rule
        factor = batch_factor(old, new, rule)
        ratio = old / new
        if keep == "samples":
            total = _round_steps(self.total_steps, ratio)
            schedule = _scale_lengths(parse(self.schedule), ratio)
            if self.parsed_schedule.length == self.total_steps:
                schedule = _fit_length(schedule, total)
        else:
            schedule = _unscale(rescale(self.schedule, old, new, rule=rule, warmup="samples"),
                                factor)
            total = self.total_steps
            if self.parsed_schedule.length == self.total_steps:
                # the warmup keeps its samples (more steps at a smaller batch): the rest of the
                # schedule gives way, so that it still ends with the run
                schedule = _fit_length(schedule, total)
        # a rescale that shrinks the run below a few steps is refused (a recipe that short to
        # begin with is left as short as it is)
        fewest = min(MIN_STEPS, self.total_steps)
        require(total >= fewest,
                f"moving from batch {old} to {new} with the same number of samples leaves "
                f"{total} optimizer step{'s' if total != 1 else ''} of the recipe's "
                f"{self.total_steps}, fewer than {fewest}: not a training run; use a smaller "
                "batch size or a longer run, or keep='steps' to keep the number of steps")
        warmup = _round_steps(self.warmup_steps, ratio) if self.warmup_steps else 0
        require(keep == "samples" or warmup < total,
                f"the warmup of {self.warmup_steps} steps at batch {old} is {warmup} steps at "
                f"batch {new} (the same number of samples), not shorter than the run's "
                f"{total} steps kept by keep='steps'; use keep='samples' (the same epochs) or "
                "a larger batch size")
        if warmup >= total:
            # the warmup's samples fill the whole shorter run (a warmup nearly as long as the
            # run, rounded): it ends a step before the run, in the schedule as in warmup_steps
            warmup = total - 1
            schedule = _clip_warmup(schedule, warmup)
            if self.parsed_schedule.length == self.total_steps:
                schedule = _fit_length(schedule, total)
        why = ("linear rule (SGD: rate proportional to batch size)" if rule == "linear"
               else "square-root rule (adaptive optimizer: rate proportional to sqrt(batch size))")
        note = (f"rescaled from batch {old} to {new}: peak {self.peak_lr:.3g} -> "
                f"{self.peak_lr * factor:.3g} by the {why}; warmup {self.warmup_steps} -> "
                f"{steps_text(warmup)} (same number of samples); "
                + (f"total {self.total_steps} -> {steps_text(total)} (same number of "
                   "samples/epochs)" if keep == "samples"
                   else f"total kept at {steps_text(total)}"))
        good = None if self.good_range is None else tuple(v * factor for v in self.good_range)
        evidence = dict(self.evidence)
        cost = evidence.get("cost")
        if isinstance(cost, dict) and "rescaled_from" not in evidence:
            # the cost's fraction is of the run that was measured: keep that run's length and
            # batch beside it, so that a rescaled recipe does not read it against its new length
            cost = dict(cost)
            cost.setdefault("total_steps", self.total_steps)
            cost.setdefault("batch_size", old)
            evidence["cost"] = cost
        evidence["rescaled_from"] = {"batch_size": old, "peak_lr": self.peak_lr,
                                     "warmup_steps": self.warmup_steps,
                                     "total_steps": self.total_steps, "rule": rule, "keep": keep}
        return dataclasses.replace(
            self, peak_lr=self.peak_lr * factor, warmup_steps=warmup, total_steps=total,
            schedule=str(schedule), good_range=good, batch_size=new,
            notes=self.notes + [note], evidence=evidence)

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        # an option of inf or NaN (ASGD's t0=inf) as a string: JSON has no such number, and
        # the null it became was built as None
        data["optimizer_options"] = {k: _plain(_nonfinite_as_text(v))
                                     for k, v in self.optimizer_options.items()}
        data["kind"] = "lrkit.recipe"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        require(isinstance(data, dict), f"a recipe is a dict, got {type(data).__name__}")
        if "recipe" in data and isinstance(data["recipe"], dict) and "peak_lr" not in data:
            data = data["recipe"]
        kind = data.get("kind", "lrkit.recipe")
        require(kind == "lrkit.recipe", f"not a recipe: its kind is {kind!r}, not 'lrkit.recipe'")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"kind"})
        require(not unknown, f"unknown recipe keys {unknown}; allowed: {sorted(names)}")
        required = ("optimizer", "peak_lr", "warmup_steps", "total_steps", "schedule")
        missing = [k for k in required if k not in data]
        require(not missing, f"the recipe lacks {missing}")
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs.setdefault("optimizer_options", {})
        if kwargs.get("optimizer_options") is None:
            kwargs["optimizer_options"] = {}
        if isinstance(kwargs["optimizer_options"], dict):
            kwargs["optimizer_options"] = {k: _nonfinite_from_text(v)
                                           for k, v in kwargs["optimizer_options"].items()}
        if kwargs.get("good_range") is not None:
            require(isinstance(kwargs["good_range"], (list, tuple)),
                    f"good_range must be two rates (low, high) or None, got "
                    f"{kwargs['good_range']!r}")
            kwargs["good_range"] = tuple(kwargs["good_range"])
        notes = kwargs.get("notes") or []
        require(isinstance(notes, (list, tuple)) and all(isinstance(n, str) for n in notes),
                f"notes must be a list of strings, got {notes!r}")
        kwargs["notes"] = list(notes)
        evidence = kwargs.get("evidence") or {}
        require(isinstance(evidence, dict),
                f"evidence must be a dict, got {type(evidence).__name__}")
        kwargs["evidence"] = dict(evidence)
        return cls(**kwargs)

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            require_folder(path, "the recipe")  # (a raw FileNotFoundError, as the others said)
            write_atomically(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "Recipe":
        text, where, missing = _read(text_or_path, "JSON")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if missing is not None:  # a path, not JSON text
                raise LrkitError(_missing(missing, "JSON")) from None
            raise LrkitError(f"not a JSON recipe{where}: {exc}") from None
        return cls.from_dict(data)

    def to_yaml(self, path: str | Path | None = None, *, evidence: bool = True) -> str:
        try:
            import yaml
        except ImportError:  # pragma: no cover - pyyaml is in the 'yaml' extra
            raise LrkitError("to_yaml needs PyYAML: pip install 'lrkit[yaml]'") from None
        data = self.to_dict()
        if not evidence:
            data.pop("evidence")
        text = yaml.safe_dump(data, sort_keys=False)
        if path is not None:
            require_folder(path, "the recipe")
            write_atomically(path, text)
        return text

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> "Recipe":
        try:
            import yaml
        except ImportError:  # pragma: no cover
            raise LrkitError("from_yaml needs PyYAML: pip install 'lrkit[yaml]'") from None
        text, where, missing = _read(text_or_path, "YAML")
        try:
            data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            data = exc
        if missing is not None and not isinstance(data, dict):  # a path, not YAML text
            raise LrkitError(_missing(missing, "YAML"))
        if isinstance(data, yaml.YAMLError):
            raise LrkitError(f"not a YAML recipe{where}: {' '.join(str(data).split())}")
        return cls.from_dict(data)

    # -- text --------------------------------------------------------------------------------------
    def options_text(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.optimizer_options.items())

    def summary(self) -> str:
        name = self.evidence.get("problem")
        head = f"Recipe{' for ' + name if name else ''}: {steps_text(self.total_steps)}"
        if self.batch_size:
            head += f" at batch size {self.batch_size}"
        options = self.options_text()
        lines = [head,
                 f"  optimizer  {self.optimizer}({options})" if options else
                 f"  optimizer  {self.optimizer}",
                 f"  peak lr    {self.peak_lr:.3g}"
                 # the range test's, for a constant rate: a scheduled peak may sit outside it,
                 # and then the line says so (it read as a contradiction; the notes say why)
                 + (f"   ({_beside(self.peak_lr, self.good_range)}range test's good constant "
                    f"rates {self.good_range[0]:.3g} .. {self.good_range[1]:.3g})"
                    if self.good_range else ""),
                 f"  warmup     {steps_text(self.warmup_steps)}",
                 f"  schedule   {self.schedule}"]
        marks = sorted({0, self.warmup_steps, self.total_steps // 2, self.total_steps - 1})
        lines.append("  rate       " + ",  ".join(f"step {s}: {self.lr_at(s):.3g}" for s in marks))
        training = self.evidence.get("training")
        if isinstance(training, dict) and training:
            lines.append(f"  training   {training_text(training)}")
        cost = self.evidence.get("cost")
        if cost:
            lines.append(f"  tuning     {steps_text(cost.get('steps'))} "
                         f"({self._cost_share(cost)}), {cost.get('seconds', 0):.1f} s")
        for note in self.notes:
            lines.append(f"  - {note}")
        return "\n".join(lines)

    def _cost_share(self, cost: dict) -> str:
        """What the tuning cost is a share of: this run, or (for a rescaled recipe) the run that
        was measured, named with its length and batch, since the share is of that run."""
        share = f"{100 * (cost.get('fraction') or 0):.0f}%"
        measured = cost.get("total_steps", self.total_steps)
        batch = cost.get("batch_size", self.batch_size)
        rescaled = self.evidence.get("rescaled_from")
        if measured == self.total_steps and batch == self.batch_size and not rescaled:
            return f"{share} of the run"
        at = f" at batch {batch}" if batch else ""
        return f"{share} of the measured run of {steps_text(measured)}{at}, before the rescale"

    def __str__(self) -> str:
        return self.summary()


def training_text(training: dict) -> str:
    """``training_options`` in words: "gradient clipping at 0.1, accumulation of 2 ..."."""
    parts = []
    if "max_grad_norm" in training:
        parts.append(f"gradient clipping at {training['max_grad_norm']:g} (max_grad_norm)")
    if "accumulation_steps" in training:
        parts.append(f"gradient accumulation over {training['accumulation_steps']} "
                     "micro-batches a step")
    if "amp" in training:
        parts.append(f"mixed precision ({training['amp']})")
    return ", ".join(parts)


@functools.lru_cache(maxsize=1)
def _yaml_loader():
    """PyYAML's SafeLoader that also reads ``1e-4`` (no dot, as people write rates) as a float:
    YAML 1.1 reads it as a string, which the recipe would pass on to the optimizer."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                                 re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                 list("-+0123456789"))
    return Loader


def _read(text_or_path: str | Path, kind: str) -> tuple[str, str, str | None]:
    """``(text, where, missing)``: the recipe's text, `` in 'FILE'`` for messages, and the
    path a one-line string names when no such file exists (the string is then tried as the
    text itself, and named as a missing file if it is no recipe)."""
    text = str(text_or_path)
    if not isinstance(text_or_path, Path):
        require(text.strip() != "", f"not a {kind} recipe: the text is empty")
        if "\n" in text or text.lstrip().startswith("{"):
            return text, "", None
        text = text.strip()
        if not Path(text).exists():
            return text, "", text
    try:
        return Path(text).read_text(encoding="utf-8-sig"), f" in {text!r}", None
    except FileNotFoundError:
        raise LrkitError(_missing(text, kind)) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise LrkitError(f"cannot read the recipe file {text!r}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None


def _missing(path: str, kind: str) -> str:
    return (f"no recipe file {path!r}: it does not exist (Recipe.from_{kind.lower()} takes a "
            f"file's path or the {kind} text itself)")


@functools.lru_cache(maxsize=64)
def _parse(spec: str):
    """Parsed once per spec: schedules are frozen, and ``lr_at`` may be called every step."""
    from lrkit.schedules import parse

    return parse(spec)


def _head_warmup(schedule) -> int | None:
    """The steps a schedule warms up for at its start (0 for one that starts at its peak and
    falls), or None where that is not a warmup's to say (a schedule that starts by rising, as
    ``onecycle`` does, or one that goes up and down)."""
    from lrkit.schedules import WSD, Join, Warmup
    from lrkit.schedules.base import Wrapping

    if isinstance(schedule, Warmup):
        return schedule.steps
    if isinstance(schedule, WSD):
        return schedule.warmup
    if isinstance(schedule, Join):
        return _head_warmup(schedule.schedules[0])
    if isinstance(schedule, Wrapping):
        return _head_warmup(schedule.schedule)
    return 0 if schedule.monotone == -1 else None


def _round_steps(value: int, ratio: float) -> int:
    return max(1, int(math.floor(value * ratio + 0.5)))


def _unscale(schedule, factor: float):
    """Undo the peak factor :func:`lrkit.schedules.rescale` put on a relative schedule (the recipe
    carries it in ``peak_lr``), keeping any scale the schedule had of its own."""
    from lrkit.schedules import Plateau, Scale

    if factor == 1.0:
        return schedule
    if isinstance(schedule, Plateau):
        return dataclasses.replace(schedule, schedule=_unscale(schedule.schedule, factor))
    if isinstance(schedule, Scale):
        rest = schedule.factor / factor
        return schedule.schedule if abs(rest - 1.0) < 1e-12 else dataclasses.replace(schedule, factor=rest)
    return schedule


def _fit_length(schedule, total: int):
    """Make a schedule whose lengths were rounded one by one end exactly at ``total`` again, by
    giving the difference to its last piece (``warmup(a) >> cosine(b)``: to ``b``)."""
    from lrkit.schedules import Warmup

    length = schedule.length
    if length is None or length == total:
        return schedule
    diff = int(total - length)
    if isinstance(schedule, Warmup) and schedule.then is not None:
        then = _fit_length(schedule.then, int(schedule.then.length) + diff)
        return dataclasses.replace(schedule, then=then)
    names = {f.name for f in dataclasses.fields(schedule)}
    if "steps" in names and isinstance(schedule.steps, int) and schedule.steps + diff >= 1:
        try:
            return dataclasses.replace(schedule, steps=schedule.steps + diff)
        except LrkitError:
            return schedule
    return schedule


def _clip_warmup(schedule, steps: int):
    """``schedule`` with its leading warmup no longer than ``steps`` (none for 0)."""
    from lrkit.schedules import Warmup

    if not isinstance(schedule, Warmup) or schedule.steps <= steps:
        return schedule
    if steps >= 1:
        return dataclasses.replace(schedule, steps=steps)
    return schedule.then if schedule.then is not None else _parse("constant()")


def _scale_lengths(schedule, ratio: float):
    """Every length in ``schedule`` times ``ratio``, rounded to whole steps (>= 1)."""
    from lrkit.schedules import map_schedule

    def fix(node):
        changes = {}
        for f in dataclasses.fields(node):
            kind = f.metadata.get("kind", "")
            value = getattr(node, f.name)
            if kind in ("length", "length?") and isinstance(value, (int, float)) and value:
                changes[f.name] = _round_steps(value, ratio)
            elif kind == "length0" and isinstance(value, (int, float)) and value:
                changes[f.name] = _round_steps(value, ratio)
            elif kind == "lengths":
                changes[f.name] = tuple(_round_steps(v, ratio) for v in value)
        return dataclasses.replace(node, **changes) if changes else None

    return map_schedule(schedule, fix)


def _beside(peak: float, good_range: tuple[float, float]) -> str:
    """"below the " / "above the " when a recipe's peak sits outside the range test's range."""
    # compared as printed (3 significant digits): 0.307 "above" a range printed as
    # 0.0658 .. 0.307 read as a contradiction
    peak, low, high = (float(f"{v:.3g}") for v in (peak, *good_range))
    return "below the " if peak < low else "above the " if peak > high else ""
