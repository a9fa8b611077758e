"""lrkit: find, schedule, sweep and diagnose learning rates for PyTorch models.

Public names are imported lazily (PEP 562) so that ``import lrkit`` stays fast and optional
dependencies are only needed by the parts that use them.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "LrkitError": "lrkit.errors",
    "Problem": "lrkit.problem",
    "load_problem": "lrkit.problem",
    "find_lr": "lrkit.find",
    "FinderResult": "lrkit.find",
    "range_test": "lrkit.find",
    "Trainable": "lrkit.trainable",
    "TorchTrainable": "lrkit.adapters.torch",
    "FunctionTrainable": "lrkit.adapters.function",
    "train": "lrkit.training",
    "diagnose": "lrkit.diagnose",
    "Diagnosis": "lrkit.diagnose",
    "Monitor": "lrkit.diagnose",
    "Guard": "lrkit.diagnose",
    "examples": "lrkit.examples",
    "schedules": "lrkit.schedules",
    "to_torch": "lrkit.schedules",
    "recommend": "lrkit.recommend.api",
    "Recipe": "lrkit.recommend",
    "sweep": "lrkit.sweep",  # the package, itself callable: lrkit.sweep(...) and lrkit.sweep.load(...)
    "SweepResult": "lrkit.sweep",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'lrkit' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
