"""One sweep trial, independent of any engine: build a fresh problem, train, report, stop early.

:func:`run_trial` knows nothing about Optuna. An engine calls it with a :class:`TrialConfig` and
a ``report(step, value) -> stop?`` callback, which it may wire to its own pruner (Optuna's
``trial.report`` / ``trial.should_prune``, or Ray Tune's ``tune.report``), and stores the
:class:`TrialOutcome` it returns.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

from lrkit.errors import LrkitError
from lrkit.sweep.space import OptimizerSpec, rebuild_optimizer

#: statuses of a trial run to its end (the engine adds running/waiting/failed)
FINISHED, PRUNED, DIVERGED = "finished", "pruned", "diverged"


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    """What one trial trains: ``problem`` is an example name, ``"file.py:function"`` or a
    callable ``recipe(seed=...)`` returning a Problem (or dict/tuple); ``eval_steps`` are the
    steps (counted from 1) at which the validation loss is measured and reported."""

    problem: Any
    optimizer: OptimizerSpec
    lr: float
    seed: int
    budget: int
    eval_steps: tuple[int, ...] = ()
    diverge_factor: float = 10.0
    curve_points: int = 100
    diagnose: bool = True


@dataclasses.dataclass
class TrialOutcome:
    status: str
    objective: float
    val_loss: float | None
    train_loss: float | None
    metric: float | None
    metric_name: str | None
    steps: int
    curve: list[list[float]]
    eval_curve: list[list[float]]
    seconds: float
    diverged_step: int | None = None
    diagnosis: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_problem(problem: Any, seed: int):
    """A fresh :class:`lrkit.Problem` from an example name, ``file.py:function`` or a callable
    recipe (the same forms as everywhere in lrkit: :func:`lrkit.problem.build_problem`)."""
    from lrkit.problem import build_problem as build

    return build(problem, seed=seed, what="a sweep")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _subsample(losses: list[float], points: int) -> list[list[float]]:
    n = len(losses)
    if n == 0:
        return []
    every = max(1, math.ceil(n / points))
    picked = list(range(every - 1, n, every))
    if picked[-1] != n - 1:
        picked.append(n - 1)
    out = []
    for i in picked:  # mean over the window ending at i: a smoothed, honest curve
        window = [v for v in losses[max(0, i - every + 1): i + 1] if math.isfinite(v)]
        out.append([i + 1, float(sum(window) / len(window)) if window else math.inf])
    return out


def diagnose_curve(losses: list[float], lr: float,
                   val_curve: list[list[float]] | None = None) -> dict[str, Any] | None:
    """The verdict of :mod:`lrkit.diagnose` on one trial's losses, when that package is there
    (it is optional here); None when it is absent or cannot judge."""
    try:
        from lrkit.diagnose import diagnose
    except ImportError:
        return None
    try:
        found = diagnose(losses, lrs=lr, val_losses=[tuple(p) for p in val_curve or []] or None)
    except Exception:
        return None
    return {"verdict": str(getattr(found, "verdict", found)),
            "confidence": getattr(found, "confidence", None),
            "recommendation": getattr(found, "recommendation", None),
            "explanation": getattr(found, "explanation", None)}


def run_trial(config: TrialConfig,
              report: Callable[[int, float], bool] | None = None) -> TrialOutcome:
    """Train one fresh model for ``config.budget`` steps at ``config.lr``.

    At each step in ``config.eval_steps`` the validation loss (or, without a validation loader,
    the mean training loss of the last steps) is passed to ``report(step, value)``; a true
    return stops the trial as *pruned*. A non-finite loss, or a running mean loss above
    ``diverge_factor`` times the first loss, stops it at once as *diverged*.
    """
    from lrkit.training import evaluate, train

    start = time.perf_counter()
    problem = build_problem(config.problem, config.seed)
    problem.optimizer = rebuild_optimizer(problem.optimizer, config.optimizer, config.lr)
    has_val = problem.val_loader is not None
    eval_steps = set(config.eval_steps)
    losses: list[float] = []
    eval_curve: list[list[float]] = []
    flags = {"pruned": False, "diverged_step": None}
    smoothed = {"value": None, "first": None}

    def recent_mean() -> float:
        window = losses[-max(1, len(losses) // 20):]
        return float(sum(window) / len(window))

    def on_step(step: int, loss: float, lr: float) -> bool:
        losses.append(loss)
        done = step + 1
        if smoothed["first"] is None:
            smoothed["first"] = abs(loss)
            smoothed["value"] = loss
        else:
            smoothed["value"] = 0.9 * smoothed["value"] + 0.1 * loss
        if (config.diverge_factor and done > 5
                and smoothed["value"] > config.diverge_factor * max(smoothed["first"], 1e-12)):
            flags["diverged_step"] = done
            return True
        if done in eval_steps:
            value = evaluate(problem) if has_val else recent_mean()
            if not math.isfinite(value):
                flags["diverged_step"] = done
                return True
            eval_curve.append([done, float(value)])
            if report is not None and report(done, float(value)):
                flags["pruned"] = True
                return True
        return False

    run = train(problem, lr=config.lr, steps=config.budget, seed=config.seed, on_step=on_step)
    if run.losses and not math.isfinite(run.losses[0]):
        # the first loss comes before any update: no rate made it non-finite, and every rate
        # gives the same (the sweep walked down 5 rates and said "lower the range")
        raise LrkitError(
            f"the loss was {run.losses[0]} at the very first step, before any update (so at "
            "every rate): the model, the data or the loss give non-finite values as they are; "
            "check the inputs, the loss function and the model's initialisation")
    if run.diverged and flags["diverged_step"] is None:
        flags["diverged_step"] = len(run.losses)
    steps = len(run.losses)
    train_loss = _finite(recent_mean()) if losses else None
    if flags["diverged_step"] is not None:
        status, objective = DIVERGED, math.inf
    elif flags["pruned"]:
        status, objective = PRUNED, eval_curve[-1][1]
    else:
        status = FINISHED
        fallback = train_loss if train_loss is not None else math.inf
        objective = run.val_loss if has_val else fallback
        if not math.isfinite(objective):
            status, flags["diverged_step"] = DIVERGED, steps
    finished = status == FINISHED
    if finished and has_val:
        eval_curve.append([steps, float(objective)])
    # the training losses alone: the validation points are a strategy's rungs (refine
    # evaluates at budget/9 and budget/3 and the end, grid at the end), and they must not
    # change the verdict of the same trial (one point alone says nothing to the diagnosis)
    diagnosis = (diagnose_curve(list(run.losses), config.lr)
                 if config.diagnose and status != DIVERGED else None)
    return TrialOutcome(
        status=status,
        objective=float(objective),
        val_loss=_finite(run.val_loss) if (has_val and finished) else None,
        train_loss=train_loss,
        metric=run.metric if finished else None,
        metric_name=problem.metric_name,
        steps=steps,
        curve=_subsample(list(run.losses), config.curve_points),
        eval_curve=eval_curve,
        seconds=time.perf_counter() - start,
        diverged_step=flags["diverged_step"],
        diagnosis=diagnosis,
    )
