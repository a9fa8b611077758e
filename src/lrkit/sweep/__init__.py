"""Systematic learning-rate sweeps that survive crashes and scale out (``lrkit.sweep``).

::

    import lrkit
    result = lrkit.sweep("digits-mlp", lrs="1e-4:1", optimizers="sgd-momentum,adam", seeds=2)
    print(result.table())
    result.plot("sweep.png")

Parts, kept apart so that another engine can drive the same trials:

* :mod:`~lrkit.sweep.space` - candidate rates and optimizer specs;
* :mod:`~lrkit.sweep.strategy` - bracket-then-refine and successive halving, pure logic;
* :mod:`~lrkit.sweep.trial` - one trial (build, train, report, stop early), engine-independent;
* :mod:`~lrkit.sweep.optuna_engine` - Optuna study, storage, pruner, workers, crash recovery;
* :mod:`~lrkit.sweep.ray_engine` - the same sweep as a Ray Tune experiment (``engine="ray"``);
* :mod:`~lrkit.sweep.results` - :class:`SweepResult`: table, best, band, plots, CSV/JSON.

Optuna is an optional dependency (``pip install 'lrkit[sweep]'``), imported only when a sweep
runs; so is Ray (``pip install 'lrkit[ray]'``), imported only by a sweep with ``engine="ray"``. This module is itself callable, so ``lrkit.sweep(...)`` works however it was imported.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from lrkit.sweep.api import build_spec, collect, default_study_name, load, sweep
from lrkit.sweep.results import PointSummary, SweepResult, TrialRecord
from lrkit.sweep.space import OptimizerSpec, RateSpace, parse_optimizers, parse_rates
from lrkit.sweep.strategy import Strategy
from lrkit.sweep.trial import TrialConfig, TrialOutcome, run_trial

__all__ = ["sweep", "load", "SweepResult", "PointSummary", "TrialRecord", "Strategy",
           "TrialConfig", "TrialOutcome", "run_trial", "parse_rates", "parse_optimizers",
           "OptimizerSpec", "RateSpace", "build_spec", "collect", "default_study_name"]


class _CallableModule(types.ModuleType):
    """``lrkit.sweep`` is both this package and the function: calling it runs :func:`sweep`."""

    def __call__(self, *args: Any, **kwargs: Any):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
