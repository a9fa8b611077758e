"""How good is ``lrkit.recommend``'s recipe? Against tuned and tuning-free baselines.

Every task is a built-in example trained for a full budget (longer than the examples' default
budget_steps) with 2 seeds; every figure is the mean final validation loss over the seeds.

* recipe:   ``lrkit.recommend(task, steps=budget, seed=s)`` then a full run with its optimizer
            and schedule (the recipe's own tuning cost is timed and counted in steps);
* const*:   the best constant rate of a grid search (3 points per decade, warmup included);
* oracle:   the best peak rate of a grid search (3 per decade) for the recipe's own schedule
            shape, warmup and optimizer: what tuning the recipe's peak by brute force would give;
* default:  the example's optimizer at an untuned default rate, constant: Adam/AdamW/RMSprop
            1e-3, SGD 0.01;
* prodigy:  Prodigy (prodigyopt) at its recommended settings: lr=1, cosine annealing over the run;
* sf-adamw: Schedule-Free AdamW (schedulefree) at its defaults (lr=0.0025) with a 5% warmup,
            evaluated at its averaged point (``optimizer.eval()``; BatchNorm statistics refreshed).

A separate phase (``--tune``) records the data the policy's constants were chosen from, on tasks
that are *not* in the benchmark: logreg and hastie-mlp (four schedule shapes) and cancer-mlp and
digits-cnn (cosine), full runs with one seed, range tests and short runs with two
(``recipe_tune.json``, ``recipe_tune2.json``); ``lrkit/recommend/policy.py`` quotes the figures.
``--tune-shrink`` re-measures the many-epoch shrink at the benchmark's own setting (2000 steps,
3 seeds) on digits-cnn, cancer-mlp and wine-logreg (``recipe_tune3.json``, ~3 minutes).

Results are cached in benchmarks/results/recipe_*.json (one file per task; delete a file to
recompute it). The whole benchmark takes ~22 minutes on 2 busy cores (the tuning phase ~8 more)::

    python benchmarks/recipe_quality.py              # runs what is missing, prints the tables
    python benchmarks/recipe_quality.py --tune       # the policy-tuning data (separate tasks)
    python benchmarks/recipe_quality.py --tune-shrink  # the many-epoch shrink, re-measured
    python benchmarks/recipe_quality.py --markdown   # the tables as in docs/recommend.md
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

#: benchmark tasks: 6 families (SGD+momentum+wd MLP, Adam regression, deep tanh plain SGD,
#: BatchNorm SGD+momentum regression, wide AdamW classifier, RMSprop GRU); budget in steps
TASKS = {
    "digits-mlp": 2000,
    "regression-mlp": 2000,
    "moons-mlp": 2000,
    "friedman-deep": 2000,
    "blobs-wide": 2000,
    "digits-gru": 2000,
}
#: policy-tuning tasks, never used in the benchmark tables
TUNE_TASKS = {"logreg": 1500, "hastie-mlp": 1500}
SEEDS = (0, 1)
PER_DECADE = 3


def grid(lo: float, hi: float, per_decade: int = PER_DECADE) -> list[float]:
    """Rates 10**(k/per_decade) in [lo, hi]."""
    k_lo = math.ceil(round(math.log10(lo) * per_decade, 6))
    k_hi = math.floor(round(math.log10(hi) * per_decade, 6))
    return [float(f"{10 ** (k / per_decade):.4g}") for k in range(k_lo, k_hi + 1)]


# -- jobs (run in worker processes) -------------------------------------------------------------
def _setup():
    import torch

    torch.set_num_threads(1)


def _refresh_batchnorm(problem, batches: int = 50) -> None:
    """Recompute BatchNorm running statistics at the current weights (schedule-free's averaged
    point needs it: the statistics were gathered at a different point)."""
    import torch

    bns = [m for m in problem.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    problem.model.train()
    with torch.no_grad():
        for i, (x, _y) in enumerate(problem.train_loader):
            if i >= batches:
                break
            problem.model(x)


def run_job(job: dict) -> dict:
    """One full training run; ``job`` says the task, seed, steps and what to train with."""
    _setup()
    import torch

    import lrkit
    from lrkit.schedules import parse
    from lrkit.training import train

    task, seed, steps, kind = job["task"], job["seed"], job["steps"], job["kind"]
    t0 = time.perf_counter()
    problem = lrkit.examples.build(task, seed=seed)
    on_step = None
    if kind == "schedule":  # the example's own optimizer, peak x spec
        spec = parse(job["spec"]) if job.get("spec") else None
        peak = job["lr"]
        rate = (lambda s: peak * spec(s)) if spec is not None else peak
    elif kind == "recipe":
        from lrkit.recommend import Recipe

        recipe = Recipe.from_dict(job["recipe"])
        optimizer, _ = recipe.build(problem.model.parameters())
        problem.optimizer = optimizer
        rate = recipe.lr_at
    elif kind == "prodigy":
        from prodigyopt import Prodigy

        problem.optimizer = Prodigy(problem.model.parameters(), lr=1.0)
        rate = lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))  # noqa: E731 cosine annealing
    elif kind == "sf-adamw":
        import schedulefree

        warm = max(1, int(0.05 * steps))
        optimizer = schedulefree.AdamWScheduleFree(problem.model.parameters(), lr=0.0025,
                                                   warmup_steps=warm)
        optimizer.train()
        problem.optimizer = optimizer
        rate = 0.0025

        def on_step(step, loss, lr, _opt=optimizer):
            if step == steps - 1:
                _opt.eval()
                _refresh_batchnorm(problem)
            return None
    else:
        raise ValueError(kind)
    t1 = time.perf_counter()
    run = train(problem, lr=rate, steps=steps, seed=seed, on_step=on_step)
    train_seconds = time.perf_counter() - t1
    tail = run.losses[-max(1, steps // 10):]
    out = dict(job)
    out.update(val=(math.inf if run.diverged else run.val_loss), diverged=run.diverged,
               metric=run.metric, train_tail=(math.inf if run.diverged else statistics.fmean(tail)),
               seconds=time.perf_counter() - t0, train_seconds=train_seconds, steps_run=run.steps)
    del torch
    return out


def finder_job(job: dict) -> dict:
    """The range test alone (its curve), for the policy-tuning data."""
    _setup()
    import lrkit

    problem = lrkit.examples.build(job["task"], seed=job["seed"])
    import torch

    torch.manual_seed(job["seed"])
    t0 = time.perf_counter()
    # as lrkit.recommend runs it: no noise batches (the recipe reads the curve's minimum)
    result = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                           problem.criterion, budget_steps=job["steps"], noise_batches=0,
                           progress=False)
    out = dict(job)
    out.update(finder=result.to_dict(), seconds=time.perf_counter() - t0)
    return out


def recommend_job(job: dict) -> dict:
    """``lrkit.recommend`` on the task, then a full training run with the recipe in the same
    process, so that the tuning cost is timed against a training run under the same load."""
    _setup()
    import lrkit
    from lrkit.recommend import Recipe

    # warm up, so that neither side pays the process's one-time costs (imports, data sets,
    # torch's lazy set-up on first use): the training run comes second and finds the process
    # warm, so the tuning must too -- a throwaway recommend on a short budget, another seed
    lrkit.recommend(job["task"], steps=500, seed=job["seed"] + 100, progress=False)
    recipe = lrkit.recommend(job["task"], steps=job["steps"], seed=job["seed"], progress=False)
    out = dict(job)
    out["recipe"] = recipe.to_dict()
    run = run_job(dict(kind="recipe", group="recipe", task=job["task"], seed=job["seed"],
                       steps=job["steps"], recipe=Recipe.from_dict(out["recipe"]).to_dict()))
    out["run"] = run
    out["tuning_seconds"] = recipe.evidence["cost"]["seconds"]
    out["train_seconds"] = run["train_seconds"]
    return out


def _pool_map(fn, jobs: list[dict], workers: int) -> list[dict]:
    if not jobs:
        return []
    if workers <= 1:
        return [fn(j) for j in jobs]
    out = []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        for i, result in enumerate(pool.map(fn, jobs, chunksize=1)):
            out.append(result)
            if (i + 1) % 10 == 0 or i + 1 == len(jobs):
                print(f"  {fn.__name__}: {i + 1}/{len(jobs)} ({time.perf_counter() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
    return out


# -- tuning data ----------------------------------------------------------------------------------
TUNE_SHAPES = ("constant", "cosine", "linear", "wsd")
SHORT_HORIZONS = (100,)


def tune(workers: int) -> dict:
    from lrkit.recommend.shapes import shape_spec

    path = RESULTS / "recipe_tune.json"
    if path.exists():
        return json.loads(path.read_text())
    jobs, finders = [], []
    for task, steps in TUNE_TASKS.items():
        warm = int(round(0.05 * steps))
        for seed in SEEDS:
            finders.append(dict(task=task, seed=seed, steps=steps))
            for lr in grid(1e-4, 1.0):
                for shape in TUNE_SHAPES if seed == SEEDS[0] else ():  # full runs: one seed
                    jobs.append(dict(kind="schedule", task=task, seed=seed, steps=steps, lr=lr,
                                     shape=shape, spec=shape_spec(shape, steps, warm)))
                for h in SHORT_HORIZONS:  # a short run of the whole shape compressed to h steps
                    jobs.append(dict(kind="schedule", task=task, seed=seed, steps=h, lr=lr,
                                     shape="cosine", spec=shape_spec("cosine", h, int(round(0.05 * h))),
                                     short=True))
    t0 = time.perf_counter()
    data = {"finders": _pool_map(finder_job, finders, workers),
            "runs": _pool_map(run_job, jobs, workers)}
    data["seconds"] = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=_json_default))
    return data


#: more policy-tuning tasks, cosine shape only (the shape comparison is in recipe_tune.json)
TUNE_EXTRA = {"cancer-mlp": 1000, "digits-cnn": 600}


def tune_extra(workers: int) -> dict:
    from lrkit.recommend.shapes import shape_spec

    path = RESULTS / "recipe_tune2.json"
    if path.exists():
        return json.loads(path.read_text())
    jobs, finders = [], []
    for task, steps in TUNE_EXTRA.items():
        for seed in SEEDS:
            finders.append(dict(task=task, seed=seed, steps=steps))
            for lr in grid(1e-4, 1.0):
                if seed == SEEDS[0]:
                    jobs.append(dict(kind="schedule", task=task, seed=seed, steps=steps, lr=lr,
                                     shape="cosine",
                                     spec=shape_spec("cosine", steps, int(round(0.05 * steps)))))
                for h in (50, 100):
                    jobs.append(dict(kind="schedule", task=task, seed=seed, steps=h, lr=lr,
                                     shape="cosine", spec=shape_spec("cosine", h, int(round(0.05 * h))),
                                     short=True))
    t0 = time.perf_counter()
    data = {"finders": _pool_map(finder_job, finders, workers),
            "runs": _pool_map(run_job, jobs, workers)}
    data["seconds"] = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return data


#: the shrink of many-epoch runs re-measured at the benchmark's own setting (2000 steps, the
#: recipe's cosine, 3 seeds) on the tasks of that kind that are not in the benchmark
TUNE_SHRINK = {"digits-cnn": 2000, "cancer-mlp": 2000, "wine-logreg": 2000}
SHRINKS = (1.0, 0.5, 0.3)
SHRINK_SEEDS = (0, 1, 2)


def tune_shrink(workers: int) -> dict:
    """For each task and seed: the recipe's confirmation runs (policy as it is), then full runs
    at the best short run's rate times each of ``SHRINKS``, and the oracle grid of the same
    schedule. Prints each shrink's regret against the oracle (mean over seeds, as in the
    benchmark)."""
    from lrkit.recommend.shapes import shape_spec

    path = RESULTS / "recipe_tune3.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if not data:
        t0 = time.perf_counter()
        picks = _pool_map(pick_job, [dict(task=t, seed=s, steps=n) for t, n in TUNE_SHRINK.items()
                                     for s in SHRINK_SEEDS], workers)
        jobs = []
        for task, steps in TUNE_SHRINK.items():
            spec = shape_spec("cosine", steps, int(round(0.05 * steps)))
            for seed in SHRINK_SEEDS:
                best = next(p["best_short"] for p in picks if p["task"] == task and p["seed"] == seed)
                for shrink in SHRINKS:
                    jobs.append(dict(kind="schedule", group=f"shrink{shrink:g}", task=task,
                                     seed=seed, steps=steps, lr=best * shrink, spec=spec))
                for lr in grid(1e-4, 3.0):
                    jobs.append(dict(kind="schedule", group="oracle", task=task, seed=seed,
                                     steps=steps, lr=lr, spec=spec))
        data = {"picks": picks, "runs": _pool_map(run_job, jobs, workers),
                "seconds": time.perf_counter() - t0}
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(data, indent=1, default=_json_default))
    for task in TUNE_SHRINK:
        runs = [r for r in data["runs"] if r["task"] == task]
        lr, oracle = _best([r for r in runs if r["group"] == "oracle"])
        parts = [f"oracle {oracle:.4g} at {lr:.3g}"]
        for shrink in SHRINKS:
            mean = _mean_val([r for r in runs if r["group"] == f"shrink{shrink:g}"])
            parts.append(f"shrink {shrink:g}: {mean / oracle - 1:+.1%}")
        # policy version 5: no shrink when the highest candidate won, else the many-epoch shrink
        rule = []
        for pick in (p for p in data["picks"] if p["task"] == task):
            top = pick["best_short"] >= max(c["lr"] for c in pick["confirmations"])
            group = f"shrink{1.0 if top else min(SHRINKS):g}"
            rule += [r for r in runs if r["group"] == group and r["seed"] == pick["seed"]]
        parts.append(f"{min(SHRINKS):g} unless the highest won: {_mean_val(rule) / oracle - 1:+.1%}")
        picks = [p["best_short"] for p in data["picks"] if p["task"] == task]
        print(f"{task}: best short runs {', '.join(f'{v:.3g}' for v in picks)}; " + "; ".join(parts))
    return data


def pick_job(job: dict) -> dict:
    """The recipe's range test and confirmation runs: the best short run's rate (unshrunk)."""
    _setup()
    import lrkit

    recipe = lrkit.recommend(job["task"], steps=job["steps"], seed=job["seed"], progress=False)
    confirmations = recipe.evidence["confirmations"]
    ok = [c for c in confirmations if not c["diverged"]]
    out = dict(job)
    out.update(confirmations=confirmations, anchor=recipe.evidence["anchor_lr"],
               best_short=min(ok, key=lambda c: c["score"])["lr"], peak=recipe.peak_lr)
    return out


def _json_default(value):
    if isinstance(value, float):
        return None
    raise TypeError(type(value))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tune", action="store_true", help="record the policy-tuning data")
    parser.add_argument("--tune-shrink", action="store_true",
                        help="re-measure the many-epoch shrink at the benchmark's setting")
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    parser.add_argument("--tasks", nargs="*", default=None, help="a subset of the tasks")
    args = parser.parse_args(argv)
    if args.tune_shrink:
        data = tune_shrink(args.workers)
        print(f"tune_shrink: {len(data['runs'])} runs, {data.get('seconds', 0):.0f} s")
        return 0
    if args.tune:
        for phase in (tune, tune_extra):
            data = phase(args.workers)
            print(f"{phase.__name__}: {len(data['runs'])} runs, {data.get('seconds', 0):.0f} s")
        return 0
    return benchmark(args)


CONST_GRID = (1e-4, 3.0)


def _task_jobs_a(task: str, steps: int) -> list[dict]:
    """Phase A: the recipe itself, the constant grid and the untuned/tuning-free baselines."""
    import lrkit

    example = lrkit.examples.get(task)
    jobs = []
    for seed in SEEDS:
        jobs.append(dict(kind="recommend", task=task, seed=seed, steps=steps))
        for lr in grid(*CONST_GRID):
            jobs.append(dict(kind="schedule", group="const", task=task, seed=seed, steps=steps,
                             lr=lr, spec=None))
        default = 0.01 if example.optimizer.startswith("sgd") else 1e-3
        jobs.append(dict(kind="schedule", group="default", task=task, seed=seed, steps=steps,
                         lr=default, spec=None))
        jobs.append(dict(kind="prodigy", group="prodigy", task=task, seed=seed, steps=steps))
        jobs.append(dict(kind="sf-adamw", group="sf-adamw", task=task, seed=seed, steps=steps))
    return jobs


def _any_job(job: dict) -> dict:
    return recommend_job(job) if job["kind"] == "recommend" else run_job(job)


def _mean_val(rows: list[dict]) -> float:
    vals = [r["val"] if r["val"] is not None else math.inf for r in rows]
    return statistics.fmean(vals) if all(math.isfinite(v) for v in vals) else math.inf


def _best(rows: list[dict]) -> tuple[float, float]:
    """(rate, mean val over seeds) of the best rate in a grid."""
    by_lr: dict[float, list[dict]] = {}
    for r in rows:
        by_lr.setdefault(r["lr"], []).append(r)
    scored = {lr: _mean_val(rs) for lr, rs in by_lr.items()}
    lr = min(scored, key=scored.get)
    return lr, scored[lr]


def _policy_version() -> int:
    from lrkit.recommend import policy

    return policy.VERSION


def run_task(task: str, steps: int, workers: int) -> dict:
    """Baselines (cached once) and the recipe (recomputed when the policy's VERSION changes)."""
    path = RESULTS / f"recipe_{task}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if data.get("steps") != steps:
        data = {}
    version = _policy_version()
    t0 = time.perf_counter()
    recipes = data.get("recipes", [])
    fresh = (len(recipes) == len(SEEDS) and all(
        r["recipe"]["evidence"].get("policy") == version and "train_seconds" in r for r in recipes))
    if data and fresh:
        return data
    print(f"{task}: {steps} steps", file=sys.stderr, flush=True)
    jobs = [dict(kind="recommend", task=task, seed=seed, steps=steps) for seed in SEEDS]
    if "runs" not in data:
        jobs += [j for j in _task_jobs_a(task, steps) if j["kind"] != "recommend"]
    first = _pool_map(_any_job, jobs, workers)
    recipes = [r for r in first if r["kind"] == "recommend"]
    runs = data.get("runs") or [r for r in first if r["kind"] != "recommend"]
    runs = [r for r in runs if r.get("group") not in ("recipe",) and r["kind"] != "recommend"]
    spec = recipes[0]["recipe"]["schedule"]
    if not any(r.get("group") == "oracle" and r.get("spec") == spec for r in runs):
        # the oracle grid for the recipe's own shape; a decayed schedule's best peak is at or
        # above the best constant rate, so the grid starts a little below that
        runs = [r for r in runs if r.get("group") != "oracle"]
        best_const, _ = _best([r for r in runs if r.get("group") == "const"])
        oracle = [dict(kind="schedule", group="oracle", task=task, seed=seed, steps=steps,
                       lr=lr, spec=spec)
                  for seed in SEEDS for lr in grid(*CONST_GRID) if lr >= best_const / 5]
        runs += _pool_map(_any_job, oracle, workers)
    data = {"task": task, "steps": steps, "seeds": list(SEEDS), "recipes": recipes, "runs": runs,
            "seconds": (data.get("seconds") or 0) + time.perf_counter() - t0}
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return data


def summarise(data: dict) -> dict:
    runs = data["runs"]
    group = lambda g: [r for r in runs if r.get("group") == g]  # noqa: E731
    recipes = data["recipes"]
    recipe_runs = [r["run"] for r in recipes]
    const_lr, const_val = _best(group("const"))
    oracle_lr, oracle_val = _best(group("oracle"))
    return {
        "task": data["task"], "steps": data["steps"],
        "optimizer": recipes[0]["recipe"]["optimizer"],
        "recipe_peaks": [r["recipe"]["peak_lr"] for r in recipes],
        "schedule": recipes[0]["recipe"]["schedule"],
        "recipe": _mean_val(recipe_runs),
        "recipe_diverged": any(r["diverged"] for r in recipe_runs),
        "const": const_val, "const_lr": const_lr,
        "oracle": oracle_val, "oracle_lr": oracle_lr,
        "default": _mean_val(group("default")),
        "prodigy": _mean_val(group("prodigy")),
        "sf-adamw": _mean_val(group("sf-adamw")),
        "cost_steps": max(r["recipe"]["evidence"]["cost"]["steps"] / data["steps"] for r in recipes),
        "cost_time": max(r["tuning_seconds"] / r["train_seconds"] for r in recipes),
        "seconds": data.get("seconds"),
    }


BASELINES = ("oracle", "const", "default", "prodigy", "sf-adamw")


def _gap(recipe: float, other: float) -> float:
    """Recipe's loss relative to the baseline's: -3.0 means 3% lower (better)."""
    if not math.isfinite(other):
        return -math.inf
    if not math.isfinite(recipe):
        return math.inf
    return 100 * (recipe / other - 1)


def tables(rows: list[dict], markdown: bool) -> str:
    out = []
    head = ["task", "opt", "steps", "recipe peak", "recipe", "oracle (peak)", "const (lr)",
            "default", "prodigy", "sf-adamw", "cost steps", "cost time"]
    lines = [head]
    for r in rows:
        lines.append([
            r["task"], r["optimizer"], str(r["steps"]),
            "/".join(f"{p:.3g}" for p in r["recipe_peaks"]),
            f"{r['recipe']:.4f}" + (" DIVERGED" if r["recipe_diverged"] else ""),
            f"{r['oracle']:.4f} ({r['oracle_lr']:.3g})", f"{r['const']:.4f} ({r['const_lr']:.3g})",
            f"{r['default']:.4f}", f"{r['prodigy']:.4f}", f"{r['sf-adamw']:.4f}",
            f"{100 * r['cost_steps']:.0f}%", f"{100 * r['cost_time']:.0f}%"])
    out.append(_format(lines, markdown))
    out.append("")
    gaps = [["task"] + [f"vs {b}" for b in BASELINES]]
    for r in rows:
        gaps.append([r["task"]] + [f"{_gap(r['recipe'], r[b]):+.1f}%" for b in BASELINES])
    medians = ["**median**" if markdown else "median"]
    for b in BASELINES:
        medians.append(f"{statistics.median(_gap(r['recipe'], r[b]) for r in rows):+.1f}%")
    gaps.append(medians)
    out.append(_format(gaps, markdown))
    return "\n".join(out)


def _format(lines: list[list[str]], markdown: bool) -> str:
    if markdown:
        text = ["| " + " | ".join(lines[0]) + " |", "|" + "|".join("---" for _ in lines[0]) + "|"]
        text += ["| " + " | ".join(row) + " |" for row in lines[1:]]
        return "\n".join(text)
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                               enumerate(zip(row, widths))) for row in lines)


def benchmark(args) -> int:
    tasks = args.tasks or list(TASKS)
    rows = []
    t0 = time.perf_counter()
    for task in tasks:
        rows.append(summarise(run_task(task, TASKS[task], args.workers)))
    print(tables(rows, args.markdown))
    goals = {
        "median beats best constant": statistics.median(_gap(r["recipe"], r["const"]) for r in rows) < 0,
        "median beats default, prodigy, sf-adamw": all(
            statistics.median(_gap(r["recipe"], r[b]) for r in rows) < 0
            for b in ("default", "prodigy", "sf-adamw")),
        "median within 2% of oracle": statistics.median(_gap(r["recipe"], r["oracle"]) for r in rows) <= 2,
        "never diverges": not any(r["recipe_diverged"] for r in rows),
        "tuning cost <= 20% of a run (steps)": all(r["cost_steps"] <= 0.2 for r in rows),
        "tuning cost <= 20% of a run (time)": all(r["cost_time"] <= 0.2 for r in rows),
    }
    print()
    for goal, met in goals.items():
        print(f"{'met ' if met else 'MISSED'}  {goal}")
    print(f"\n(tables from cache or computed in {time.perf_counter() - t0:.0f} s; "
          f"computing all: {sum(r['seconds'] or 0 for r in rows):.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
