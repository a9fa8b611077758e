"""``lrkit.sweep(...)``: the public entry point, and ``load(...)`` to read a stored sweep."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import os
import re
import sys
from typing import Any, Callable

from lrkit.errors import LrkitError, is_real, plain_int, require
from lrkit.show.progress import show_progress
from lrkit.sweep.config import StoredPoints, SweepSpec
from lrkit.sweep.results import SweepResult, TrialRecord
from lrkit.sweep.space import RECIPE, lr_key, parse_optimizers, parse_rates, rebuild_optimizer


def _recipe_file(problem: Any) -> tuple[str, str] | None:
    """``(resolved absolute path, function)`` of a recipe defined in a file that is not an
    importable module: ``"path/to/file.py:function"``, or a callable of the running script
    (``__main__``) or of a file that lrkit loaded; None for other recipes."""
    if isinstance(problem, str):
        if ".py:" not in problem:
            return None
        path, _, func = problem.rpartition(":")
        return os.path.realpath(path), func
    module_name = getattr(problem, "__module__", None) or ""
    from lrkit.problem import is_recipe_module

    if module_name == "__main__" or is_recipe_module(module_name):
        file = getattr(sys.modules.get(module_name), "__file__", None)
        if file:
            return (os.path.realpath(file),
                    getattr(problem, "__qualname__", type(problem).__name__))
    return None


#: at most this many local modules are read into a recipe file's digest
MAX_LOCAL_IMPORTS = 100


def _local_imports(path: str) -> list[str]:
    """The ``.py`` files beside a recipe file (in its directory tree) that it imports, directly
    or through each other, in a fixed order; modules found elsewhere (installed packages, the
    standard library) are not read. Read from the import statements, not from ``sys.modules``:
    the same files whatever this process imported before."""
    import ast

    root = os.path.dirname(path)
    seen: dict[str, None] = {}
    queue = [path]
    while queue and len(seen) < MAX_LOCAL_IMPORTS:
        current = queue.pop(0)
        try:
            with open(current, "rb") as handle:
                tree = ast.parse(handle.read())
        except (OSError, SyntaxError, ValueError):
            continue
        here = os.path.dirname(current)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [(root, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here if node.level else root
                for _ in range(max(node.level - 1, 0)):
                    base = os.path.dirname(base)
                module = node.module or ""
                names = [(base, f"{module}.{alias.name}".strip(".")) for alias in node.names]
                if module:
                    names.append((base, module))
            else:
                continue
            for base, name in names:
                stem = os.path.join(base, *name.split("."))
                for candidate in (stem + ".py", os.path.join(stem, "__init__.py")):
                    candidate = os.path.realpath(candidate)
                    if (len(seen) < MAX_LOCAL_IMPORTS and os.path.isfile(candidate)
                            and candidate != path and candidate not in seen
                            and candidate.startswith(os.path.realpath(root) + os.sep)):
                        seen[candidate] = None
                        queue.append(candidate)
    return sorted(seen)


def problem_imports(problem: Any) -> str | None:
    """A digest of the local modules a recipe file imports (:func:`_local_imports`: a model or
    data module beside it, whose edit changes the training as much, and a resume had returned the
    old code's results); None when it imports none, or for other recipes. Stored apart from
    :func:`problem_source`, so that a study stored before it was kept resumes as it did."""
    found = _recipe_file(problem)
    paths = _local_imports(found[0]) if found is not None else []
    if not paths:
        return None
    digest = hashlib.sha256()
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        digest.update(os.path.relpath(path, os.path.dirname(found[0])).encode() + b"\0")
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def problem_source(problem: Any) -> str | None:
    """A digest of what defines the recipe: the file's content for a recipe file (given as
    ``file.py:function``, or as a function of the running script or of a file lrkit loaded: the
    same study either way, so the same digest; a model class edited beside the function counts),
    an importable callable's own source code; None for a built-in example or a recipe whose
    source cannot be read."""
    found = _recipe_file(problem)
    if found is not None:
        try:
            with open(found[0], "rb") as handle:
                data = handle.read()
        except OSError:
            return None
    elif isinstance(problem, str):
        return None
    else:
        try:
            data = inspect.getsource(problem).encode("utf-8", "surrogateescape")
        except (OSError, TypeError):
            return None
    return hashlib.sha256(data).hexdigest()[:16]


def problem_label(problem: Any) -> str:
    """The recipe's identity in the stored settings. A recipe file is named by its resolved
    absolute path, so that two files with the same base name (``a/train.py:make`` and
    ``b/train.py:make``) are never taken for the same sweep."""
    found = _recipe_file(problem)
    if found is not None:
        return f"{found[0]}:{found[1]}"
    if isinstance(problem, str):
        return problem
    module = getattr(problem, "__module__", None) or "custom"
    return f"{module}.{getattr(problem, '__qualname__', type(problem).__name__)}"


def _unnamed(problem: Any) -> str | None:
    """What a callable recipe is when its name does not say what it builds (so two different
    ones would share a default study name, and the second would resume the first); None for a
    string or a function named by its module and qualified name alone."""
    if isinstance(problem, str) or inspect.isclass(problem) or not callable(problem):
        return None
    if isinstance(problem, functools.partial):
        return "a functools.partial"
    if inspect.ismethod(problem):
        return "a bound method"
    if not (inspect.isfunction(problem) or inspect.isbuiltin(problem)):
        return f"a callable {type(problem).__name__} object"
    if "<lambda>" in getattr(problem, "__qualname__", ""):
        return "a lambda"
    captured = []
    for cell in getattr(problem, "__closure__", None) or ():
        try:
            captured.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    if any(not (inspect.ismodule(v) or ((inspect.isclass(v) or inspect.isfunction(v))
                                        and "<" not in getattr(v, "__qualname__", "<")))
           for v in captured):  # a module or module-level class/function says nothing new
        return "a closure (it captures variables of the function that defines it)"
    return None


def default_study_name(problem: Any) -> str:
    """``lrkit-sweep-<example>`` for a built-in example (``lrkit-sweep-<module>.<function>`` for
    an importable callable); ``lrkit-sweep-<file>-<function>-<8 hex digits>`` for a recipe file,
    the digits a hash of the file's resolved absolute path (a different file is another study).
    A lambda, closure, partial, bound method or callable object has no name that tells it from
    another one made the same way: it is refused, to be named with ``study_name=``."""
    what = _unnamed(problem)
    if what is not None:
        name = getattr(problem, "__qualname__", None) or type(problem).__name__
        raise LrkitError(f"the recipe {name!r} is {what}: its name does not tell it from "
                         "another one made the same way, which would share (and resume) its "
                         "sweep; name the sweep with study_name=")
    found = _recipe_file(problem)
    if found is not None:
        path, func = found
        digest = hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        label = f"{os.path.splitext(os.path.basename(path))[0]}-{func}-{digest}"
    else:
        label = problem_label(problem)
    return "lrkit-sweep-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")


def _short_label(label: str) -> str:
    """The recipe's label without the directories of its file (for the progress bar)."""
    path, sep, func = label.rpartition(":")
    return f"{os.path.basename(path)}:{func}" if sep and path.endswith(".py") else label


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    value = plain_int(value)  # numpy's integers and 0-dim integer tensors are integers too
    require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
            f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def build_spec(problem: Any, *, lrs: Any = "1e-4:1",
               points_per_decade: int | None = None, optimizers: Any = None,
               seeds: int = 1, budget: int | None = None, epochs: int | None = None,
               strategy: str = "refine", stride: int = 4, eta: int = 3, rungs: int = 2,
               repeat_top: int = 3, diverge_factor: float = 10.0, tolerance: float = 0.1,
               max_retries: int = 3) -> SweepSpec:
    """Check every setting (and build the recipe once) and return the sweep's settings."""
    from lrkit.problem import Problem
    from lrkit.sweep.trial import build_problem

    if isinstance(problem, Problem) or not (isinstance(problem, str) or callable(problem)):
        raise LrkitError("a sweep needs a recipe that builds a fresh model per trial: an example "
                         "name, 'path/to/file.py:function' or a callable recipe(seed=...) "
                         f"returning a Problem; got {type(problem).__name__}")
    require(strategy in ("refine", "grid"),
            f"strategy must be 'refine' (bracket then refine) or 'grid', got {strategy!r}")
    rates = parse_rates(lrs, points_per_decade)
    specs = parse_optimizers(optimizers)
    seeds = _positive_int(seeds, "seeds")
    stride = _positive_int(stride, "stride")
    eta = _positive_int(eta, "eta", 2)
    rungs = _positive_int(rungs, "rungs", 0)
    repeat_top = _positive_int(repeat_top, "repeat_top")
    max_retries = _positive_int(max_retries, "max_retries", 0)
    require(is_real(diverge_factor) and diverge_factor > 1,
            f"diverge_factor must be a number > 1, got {diverge_factor!r}")
    require(is_real(tolerance) and 0 <= tolerance < 1,
            f"tolerance must be a number in [0, 1), got {tolerance!r}")
    require(budget is None or epochs is None, "give the budget in steps or in epochs, not both")
    built = build_problem(problem, 0)
    if epochs is not None:
        epochs = _positive_int(epochs, "epochs")
        try:
            per_epoch = len(built.train_loader)
        except TypeError:
            raise LrkitError("budget in epochs needs a train_loader with len(); give the "
                             "budget in steps (budget=, --budget)") from None
        require(per_epoch >= 1, "the train_loader has no batch")
        from lrkit.schedules.units import steps_per_epoch_from

        # the budget counts optimizer steps: with gradient accumulation an epoch has fewer
        # (2 epochs of a recipe accumulating 4 batches trained 8 before)
        budget = epochs * steps_per_epoch_from(per_epoch, built.accumulation_steps)
    if budget is None:
        budget = built.budget_steps
        require(budget is not None, "give a training budget: budget=STEPS or epochs=N (on the "
                "command line --budget STEPS or --epochs N); the recipe sets no budget_steps")
    budget = _positive_int(budget, "budget", 2)
    try:  # (only by its length: a one-shot iterator is not read here)
        no_val_batch = built.val_loader is not None and len(built.val_loader) == 0
    except TypeError:
        no_val_batch = False
    require(not no_val_batch,
            "the recipe's val_loader has no batch (empty, or smaller than one batch with "
            "drop_last=True), so no trial could be scored on it; give it data or leave "
            "val_loader out (the trials are then scored on their training loss)")
    for spec in specs:  # fail now, not in the first trial
        rebuilt = rebuild_optimizer(built.optimizer, spec, rates.low)
        # and the recipe's step_options' values (max_grad_norm=-1: the first trial failed, and
        # was stored as a failed attempt, where find and recommend refused it up front), with
        # the optimizer the trials step (not the recipe's own when a spec replaces it: a
        # recipe's LBFGS swept as sgd and adam was refused)
        dataclasses.replace(built, optimizer=rebuilt).trainable()
    specs = [dataclasses.replace(s, label=f"{type(built.optimizer).__name__} (recipe)")
             if s.target == RECIPE else s for s in specs]
    return SweepSpec(problem=problem, problem_label=problem_label(problem), rates=rates,
                     optimizers=tuple(specs), budget=budget, seeds=seeds, mode=strategy,
                     stride=stride, eta=eta, rungs=rungs, repeat_top=repeat_top,
                     diverge_factor=float(diverge_factor), tolerance=float(tolerance),
                     max_retries=max_retries, problem_source=problem_source(problem),
                     problem_imports=problem_imports(problem))


def sweep(problem: Any, *, lrs: Any = "1e-4:1",
          points_per_decade: int | None = None, optimizers: Any = None,
          seeds: int = 1, budget: int | None = None, epochs: int | None = None,
          storage: str | None = None, study_name: str | None = None,
          workers: int | None = None, strategy: str = "refine", continue_study: bool = False,
          stride: int = 4, eta: int = 3, rungs: int = 2, repeat_top: int = 3,
          diverge_factor: float = 10.0, tolerance: float = 0.1, band_tolerance: float = 0.02,
          progress: bool | None = None, threads: int = 1, max_retries: int = 3,
          heartbeat_interval: int | None = None, grace_period: int | None = None,
          diagnose: bool = True, engine: str = "optuna",
          ray_address: str | None = None) -> SweepResult:
    """Sweep learning rates (and optionally optimizers and seeds) for a recipe.

    ``problem``: a built-in example name, ``"path/to/file.py:function"`` or a callable
    ``recipe(seed=...)`` returning an :class:`lrkit.Problem` (or a dict/tuple); each trial builds
    a fresh model and optimizer from it. With several workers the callable must be importable
    (defined at module level).

    ``lrs``: ``"1e-4:1"`` (a log range on a lattice of ``points_per_decade`` rates per decade,
    8 by default), ``"1e-4:1:16"``, ``"0.001,0.01"``, ``(low, high)`` or a list. ``optimizers``: None (the
    recipe's own) or names/specs such as ``"sgd-momentum,adam,adamw(weight_decay=0.1)"``, torch
    optimizer classes or ``(class, options)`` pairs. ``seeds``: seeds for the top
    ``repeat_top`` rates. ``budget``: training steps per trial (default: the recipe's
    ``budget_steps``) or ``epochs``.

    ``storage``: a journal file path (default ``.lrkit/sweeps.journal``) or a database URL
    (``postgresql://user:pass@host/db``). The same call resumes a stopped sweep, or joins one
    that other workers run. ``study_name`` defaults to one derived from the problem (a lambda,
    closure, partial, bound method or callable object needs one); a stored
    study with other settings is refused unless ``continue_study=True``. ``workers``: local
    worker processes (default 1). ``strategy``: ``"refine"`` (bracket, then refine, with
    successive halving) or ``"grid"`` (every rate to the full budget). ``max_retries``: the
    attempts after the first at a point whose trial raised or whose worker died (Ctrl-C,
    SIGTERM and SIGHUP do not count); then the rate counts as failed and the sweep goes on without it.

    ``engine``: ``"optuna"`` (default) or ``"ray"``: the same trials and strategy run as a Ray
    Tune experiment (``pip install 'lrkit[ray]'``), on the Ray cluster at ``ray_address`` (or
    Ray's default: the one this process already joined, ``RAY_ADDRESS``, else a local one);
    ``storage`` is then Ray Tune's ``storage_path`` (default ``.lrkit/ray``) and ``workers``
    the most trials at once (default: the cluster's CPUs over ``threads``). See docs/sweep.md.
    """
    require(engine in ("optuna", "ray"),
            f"engine must be 'optuna' or 'ray', got {engine!r}")
    from lrkit.problem import refuse_model_as_recipe

    refuse_model_as_recipe(problem, "a sweep")  # (a model is callable: it passed for a recipe)
    show_progress(progress)  # a bad value refused before the storage is opened
    if workers is not None:
        workers = _positive_int(workers, "workers")
    threads = _positive_int(threads, "threads")
    max_retries = _positive_int(max_retries, "max_retries", 0)
    require(is_real(band_tolerance) and band_tolerance >= 0,
            f"band_tolerance must be a number >= 0, got {band_tolerance!r}")
    band_tolerance = float(band_tolerance)
    require(study_name is None or (isinstance(study_name, str) and study_name.strip() != ""),
            f"study_name must be a non-empty string, got {study_name!r}")
    if engine == "ray":
        return _sweep_ray(problem, dict(
            lrs=lrs, points_per_decade=points_per_decade, optimizers=optimizers, seeds=seeds,
            budget=budget, epochs=epochs, strategy=strategy, stride=stride, eta=eta,
            rungs=rungs, repeat_top=repeat_top, diverge_factor=diverge_factor,
            tolerance=tolerance, max_retries=max_retries), storage=storage,
            study_name=study_name, workers=workers, threads=threads,
            continue_study=continue_study, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period, band_tolerance=band_tolerance, progress=progress,
            diagnose=diagnose, ray_address=ray_address)
    require(ray_address is None, f"ray_address={ray_address!r} is for engine='ray'; the Optuna "
            "engine spreads over machines through a database storage= instead")
    from lrkit.sweep import optuna_engine as engine

    engine.require_optuna()
    workers = 1 if workers is None else workers
    heartbeat_interval = _positive_int(
        engine.HEARTBEAT_INTERVAL if heartbeat_interval is None else heartbeat_interval,
        "heartbeat_interval")
    grace_period = _positive_int(engine.HEARTBEAT_GRACE if grace_period is None else grace_period,
                                 "grace_period")
    if workers > 1 and callable(problem) and not isinstance(problem, str):
        _check_importable(problem)
    name = study_name or default_study_name(problem)  # refuses an unnamed recipe before storage
    # the rates are checked before the storage is opened: a refused command must not leave an
    # empty .lrkit/sweeps.journal in the folder it ran in
    parse_rates(lrs, points_per_decade)
    handle = engine.StorageHandle(storage, heartbeat_interval=heartbeat_interval,
                                  grace_period=grace_period, max_retries=max_retries)
    handle.open()  # a storage that cannot be reached fails here, before anything is built
    # building the recipe and training seed the global generators (torch, numpy, random):
    # give the caller back the state it had, as lrkit.recommend does
    from lrkit.state import capture_rng, restore_rng

    rng = capture_rng()
    try:
        spec = build_spec(problem, lrs=lrs, points_per_decade=points_per_decade,
                          optimizers=optimizers, seeds=seeds, budget=budget, epochs=epochs,
                          strategy=strategy, stride=stride, eta=eta, rungs=rungs,
                          repeat_top=repeat_top, diverge_factor=diverge_factor,
                          tolerance=tolerance, max_retries=max_retries)
        study = engine.open_study(handle, name, spec, create=True, continue_study=continue_study)
        bar = _Progress(study, spec, progress)
        try:
            import torch

            previous = torch.get_num_threads()
            try:
                if workers == 1:
                    engine.run_worker(handle, name, spec, threads=threads,
                                      on_trial=lambda info: bar.refresh())
                else:
                    engine.run_workers(handle, name, spec, workers, threads=threads,
                                       on_trial=lambda info: bar.refresh(), on_poll=bar.refresh)
            finally:
                torch.set_num_threads(previous)
        finally:
            bar.close()
    finally:
        restore_rng(rng)
    return collect(study, spec.settings(), study_name=name, storage=handle.describe(),
                   strategy=spec.strategy().describe(), band_tolerance=band_tolerance,
                   diagnose=diagnose, max_retries=spec.max_retries)


def _sweep_ray(problem: Any, options: dict[str, Any], *, storage: str | None,
               study_name: str | None, workers: int | None, threads: int,
               continue_study: bool, heartbeat_interval: int | None, grace_period: int | None,
               band_tolerance: float, progress: bool | None, diagnose: bool,
               ray_address: str | None) -> SweepResult:
    """:func:`sweep` through Ray Tune (:mod:`lrkit.sweep.ray_engine`)."""
    from lrkit.sweep import ray_engine

    ray_engine.require_ray()
    require(not continue_study, "continue_study is for the Optuna engine: a Ray "
            "sweep resumes only with its own settings; give another study_name for new ones")
    for name, value in (("heartbeat_interval", heartbeat_interval),
                        ("grace_period", grace_period)):
        require(value is None, f"{name}={value!r} is for the Optuna engine's storage; with "
                "engine='ray' Ray watches its trials' workers itself (a trial whose worker or "
                "node dies is retried up to max_retries times)")
    require(ray_address is None or (isinstance(ray_address, str) and ray_address.strip()),
            f"ray_address must be a Ray cluster address such as 'ray://host:10001' or 'auto', "
            f"got {ray_address!r}")
    name = study_name or default_study_name(problem)
    require("/" not in name and name not in (".", ".."), f"study_name {name!r} names the Ray "
            "experiment's directory: use no '/'")
    location = ray_engine.storage_location(storage)
    from lrkit.state import capture_rng, restore_rng

    rng = capture_rng()  # building the recipe seeds the global generators: give them back
    try:
        spec = build_spec(problem, **options)
        return ray_engine.run(spec, name, location, ray_address=ray_address, workers=workers,
                              threads=threads, max_retries=options["max_retries"],
                              progress=progress, band_tolerance=band_tolerance,
                              diagnose=diagnose)
    finally:
        restore_rng(rng)


def _check_importable(func: Callable) -> None:
    import pickle

    try:
        pickle.dumps(func)
    except Exception:
        raise LrkitError(f"with workers > 1 the recipe {func!r} must be importable by worker "
                         "processes: define it at module level (not a lambda or a local "
                         "function), or give 'path/to/file.py:function'") from None


class _Progress:
    """A tqdm bar of trials done out of the trials expected, with the best so far."""

    def __init__(self, study, spec: SweepSpec, enabled: bool | None) -> None:
        from tqdm.auto import tqdm

        self.study = study
        self.spec = spec
        enabled = show_progress(enabled)
        self.bar = tqdm(total=0, desc=f"sweep {_short_label(spec.problem_label)}", unit="trial",
                        disable=not enabled, dynamic_ncols=True, leave=True)
        if enabled:
            self.refresh()

    def refresh(self) -> None:
        if self.bar.disable:
            return
        from lrkit.sweep.optuna_engine import observe

        trials = self.study.get_trials(deepcopy=False)
        obs = observe(trials, self.spec)
        plan = self.spec.strategy().plan(obs)
        done = [o for o in obs if o.done]
        counts: dict[str, int] = {}
        for o in done:
            counts[o.status] = counts.get(o.status, 0) + 1
        # (the plan's estimate of the total, until it is done: then what ran, and the bar
        # ends at 100%)
        self.bar.total = len(done) if plan.done else max(plan.expected_total, len(obs), len(done))
        self.bar.n = len(done)
        finished = [o for o in done if o.value is not None]
        postfix = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        if finished:
            # one trial's, not the result's best (a mean over seeds, repeated rates first)
            best = min(finished, key=lambda o: o.value)
            postfix += (f" best trial lr={self.spec.rates.values[best.point.index]:.3g}"
                        f" ({self.spec.optimizers[best.point.group].label}) loss={best.value:.4f}")
        running = sum(1 for o in obs if o.status == "running")
        if running:
            postfix += f" running={running}"
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.refresh()
        self.bar.close()


def collect(study, settings: dict[str, Any], *, study_name: str = "", storage: str = "",
            strategy: str = "", band_tolerance: float = 0.02, diagnose: bool = True,
            max_retries: int | None = None) -> SweepResult:
    """The :class:`SweepResult` of the stored trials that match ``settings``; whether the
    sweep is complete is the strategy's plan over them (``max_retries``: the sweep's, by
    default the one its last run stored)."""
    from lrkit.sweep.optuna_engine import (INTERRUPTED_ATTR, MAX_RETRIES_ATTR, observe,
                                           trial_status)

    keys = settings["optimizers"]
    labels = settings.get("optimizer_labels", keys)
    label_of = dict(zip(keys, labels))
    rates = set(settings["rates"]["values"])
    trials = study.get_trials(deepcopy=False)
    retried = {n for u in trials for n in u.system_attrs.get("retry_history", [])}
    records = []
    for t in trials:
        attrs = t.user_attrs
        if (attrs.get("optimizer") not in label_of or attrs.get("lr") not in rates
                or attrs.get("budget") != settings["budget"]
                or not isinstance(attrs.get("seed"), int) or attrs["seed"] >= settings["seeds"]):
            continue
        result = attrs.get("result") or {}
        status = trial_status(t)
        error = attrs.get("error")
        if status == "failed" and error is None:
            stopped = attrs.get(INTERRUPTED_ATTR)
            error = (("interrupted (Ctrl-C, SIGTERM or SIGHUP)" if stopped else
                      "interrupted: its worker died while running it (kill -9, out of memory, "
                      "a lost node)") + ("; retried" if t.number in retried else ""))
        records.append(TrialRecord(
            number=t.number, optimizer=label_of[attrs["optimizer"]], lr=float(attrs["lr"]),
            seed=attrs["seed"], status=status,
            loss=t.value if status == "finished" else None,
            val_loss=result.get("val_loss"), train_loss=result.get("train_loss"),
            metric=result.get("metric"), metric_name=result.get("metric_name"),
            steps=int(result.get("steps")
                      or (max(t.intermediate_values) if t.intermediate_values else 0)),
            seconds=result.get("seconds"), phase=attrs.get("phase"),
            diverged_step=result.get("diverged_step"),
            retry_of=t.system_attrs.get("failed_trial"), error=error,
            curve=result.get("curve") or [], eval_curve=result.get("eval_curve") or [],
            diagnosis_detail=result.get("diagnosis")))
    if max_retries is None:
        max_retries = study.user_attrs.get(MAX_RETRIES_ATTR, 3)
    plan_strategy = stored_strategy(settings)
    complete = (None if plan_strategy is None else
                plan_strategy.plan(observe(trials, StoredPoints(settings, max_retries))).done)
    return SweepResult(records, settings=settings, study_name=study_name, storage=storage,
                       strategy=strategy, band_tolerance=band_tolerance, diagnose=diagnose,
                       complete=complete)


def load(storage: str | None = None, study_name: str | None = None, *,
         band_tolerance: float = 0.02, diagnose: bool = True) -> SweepResult:
    """Read a stored sweep without running anything (``study_name`` may be omitted when the
    storage holds a single study)."""
    from lrkit.sweep import optuna_engine as engine

    optuna = engine.require_optuna()
    handle = engine.StorageHandle(storage)
    require(handle.is_url or os.path.exists(handle.location),
            f"no sweep is stored in {handle.location!r} (the file does not exist)")
    # reading must not create a database file (SQLite would, empty)
    require(handle.sqlite_file is None or os.path.exists(handle.sqlite_file),
            f"no sweep is stored in {handle.describe()} (the file {handle.sqlite_file!r} does "
            "not exist)")
    store = handle.open()
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    if study_name is None:
        require(len(names) == 1, f"{handle.describe()} holds {len(names)} studies "
                f"({', '.join(names) or 'none'}); name one with study_name=")
        study_name = names[0]
    require(study_name in names, f"no study {study_name!r} in {handle.describe()}; it holds: "
            f"{', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=study_name, storage=store)
    settings = study.user_attrs.get(engine.SETTINGS_ATTR)
    require(settings is not None, f"study {study_name!r} was not made by lrkit sweep")
    return collect(study, settings, study_name=study_name, storage=handle.describe(),
                   strategy=describe_strategy(settings), band_tolerance=band_tolerance,
                   diagnose=diagnose)


def stored_strategy(settings: dict[str, Any]):
    """The sweep's :class:`~lrkit.sweep.strategy.Strategy` rebuilt from stored settings; None
    when they do not hold it."""
    from lrkit.sweep.strategy import Strategy

    try:
        options = dict(settings["strategy"])
        mode = options.pop("mode")
        known = {k: options[k] for k in ("stride", "eta", "rungs", "repeat_top", "tolerance")
                 if k in options}
        return Strategy(len(settings["rates"]["values"]), len(settings["optimizers"]),
                        budget=int(settings["budget"]), seeds=int(settings["seeds"]), mode=mode,
                        **known)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def describe_strategy(settings: dict[str, Any]) -> str:
    """The strategy's description (as a live sweep reports it) rebuilt from stored settings;
    '' when they do not hold it."""
    strategy = stored_strategy(settings)
    return "" if strategy is None else strategy.describe()


__all__ = ["sweep", "load", "build_spec", "collect", "default_study_name", "lr_key"]
