"""Diagnose a training run's learning rate from its loss curve, watch a run, and guard it.

* ``lrkit.diagnose(losses, lrs=None, val_losses=None)`` -> :class:`Diagnosis` (diverged, unstable,
  too_slow, plateaued, healthy or not_enough_data, with a confidence, the evidence in numbers, a
  factor for the rate and an explanation);
* :class:`Monitor`: call ``monitor.update(loss, lr=...)`` once per step, get a diagnosis every
  ``report_every`` steps and at the end, in Python logging and a JSONL file;
* :class:`Guard`: wraps the optimizer step; on a spike or a non-finite loss/gradient it restores
  the last good snapshot, lowers the rate and skips the batch, with bounded retries;
* :func:`read_log`: CSV, JSONL and TensorBoard loss logs;
* ``lrkit.diagnose.lightning.MonitorCallback``: the Monitor as a Lightning callback.

The module object itself is callable, so ``lrkit.diagnose(losses)`` works whether ``lrkit.diagnose``
resolves to this module or to the function (Python sets the package attribute to the submodule as
soon as any ``lrkit.diagnose.*`` module is imported).
"""
from __future__ import annotations

import sys
import types
from typing import Any

from lrkit.diagnose.classify import FACTORS, VERDICTS, Diagnosis, diagnose
from lrkit.diagnose.monitor import Monitor

__all__ = ["diagnose", "Diagnosis", "Monitor", "Guard", "GuardError", "Intervention", "read_log",
           "LossLog", "VERDICTS", "FACTORS"]

_LAZY = {
    "Guard": "lrkit.diagnose.guard",
    "GuardError": "lrkit.diagnose.guard",
    "Intervention": "lrkit.diagnose.guard",
    "read_log": "lrkit.diagnose.logs",
    "LossLog": "lrkit.diagnose.logs",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'lrkit.diagnose' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


class _CallableModule(types.ModuleType):
    """``lrkit.diagnose(...)`` calls :func:`lrkit.diagnose.diagnose`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Diagnosis:
        return diagnose(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
