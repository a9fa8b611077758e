"""The default sweep strategy against a full grid of the same resolution, on built-in examples.

For each task (each with its own optimizer, rates 1e-4..1 at 8 per decade: 33 rates):

* the **full grid** runs every rate to the full budget (a diverged run stops at once, in both),
  with seeds 0, 1 and 2;
* the **default strategy** (bracket walk, refine, bias-safe successive halving; seed 0) runs
  in its own study.

Reported per task:

* ``steps``: training steps of the strategy / training steps of the seed-0 grid (goal <= 35%);
* ``regret``: how much worse, in expected final validation loss, the strategy's chosen rate is
  than the grid's chosen rate (both chosen from seed-0 runs; expected loss = mean over the 3
  grid seeds at that rate). This is the goal metric (<= 1% on every task): it asks whether the
  cheap strategy picks as good a rate as the full grid would;
* ``same-seed``: the strict variant on the seed-0 grid alone, (L0(strategy pick) - min L0) / min
  L0, which also counts differences within seed noise;
* ``exp. regret``: both picks against the best rate in expected loss (how far any single-seed
  choice is from the truth);
* ``max |diff|``: the largest difference between a strategy trial's loss and the grid trial at
  the same rate and seed (0: trials are deterministic and early evaluation changes nothing).

    python benchmarks/sweep_efficiency.py                   # all default tasks (~10 min on 2 cores)
    python benchmarks/sweep_efficiency.py --tasks moons-mlp,cancer-mlp --json out.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time

DEFAULT_TASKS = ("moons-mlp,cancer-mlp,digits-mlp,regression-mlp,blobs-wide,hastie-mlp,logreg,"
                 "wine-logreg,friedman-deep,digits-gru")


def finished_losses(result, seed: int) -> dict[float, float]:
    return {r.lr: r.loss for r in result.completed() if r.seed == seed and r.status == "finished"}


def run_task(task: str, lrs: str, storage: str, workers: int, truth_seeds: int) -> dict:
    import lrkit

    start = time.perf_counter()
    grid = lrkit.sweep(task, lrs=lrs, storage=storage, study_name=f"grid-{task}",
                       strategy="grid", seeds=truth_seeds, workers=workers, progress=False,
                       diagnose=False, continue_study=True)  # grid trials do not depend on the
    # strategy's settings, so a stored grid (--storage) is reused as it is
    grid_seconds = time.perf_counter() - start
    import optuna

    from lrkit.sweep.optuna_engine import StorageHandle

    with contextlib.suppress(KeyError):  # a fresh run of the strategy, always
        optuna.delete_study(study_name=f"default-{task}", storage=StorageHandle(storage).open())
    start = time.perf_counter()
    default = lrkit.sweep(task, lrs=lrs, storage=storage, study_name=f"default-{task}",
                          progress=False, diagnose=False)
    default_seconds = time.perf_counter() - start

    g0 = finished_losses(grid, 0)
    per_seed = [finished_losses(grid, s) for s in range(truth_seeds)]
    expected = {lr: statistics.fmean(d[lr] for d in per_seed) for lr in g0
                if all(lr in d for d in per_seed)}
    grid_steps = sum(r.steps for r in grid.completed() if r.seed == 0)
    strategy_steps = default.total_steps
    grid_pick = min(g0, key=g0.get)
    pick = default.best_lr
    s0 = finished_losses(default, 0)
    diff = max((abs(s0[lr] - g0[lr]) for lr in s0 if lr in g0), default=0.0)
    best_expected = min(expected.values())

    def rel(a: float, b: float) -> float:
        return (a - b) / abs(b)

    return {
        "task": task, "optimizer": grid.optimizers[0], "rates": len(g0) + sum(
            1 for r in grid.completed() if r.seed == 0 and r.status != "finished"),
        "grid_trials": sum(1 for r in grid.completed() if r.seed == 0),
        "strategy_trials": len(default.completed()),
        "grid_steps": grid_steps, "strategy_steps": strategy_steps,
        "steps_ratio": strategy_steps / grid_steps,
        "grid_pick": grid_pick, "strategy_pick": pick,
        "regret": rel(expected.get(pick, math.inf), expected[grid_pick]),
        "same_seed_regret": rel(g0[pick], g0[grid_pick]),
        "expected_regret_strategy": rel(expected.get(pick, math.inf), best_expected),
        "expected_regret_grid": rel(expected[grid_pick], best_expected),
        "seed_sd_at_pick": (statistics.stdev(d[pick] for d in per_seed)
                            if pick in expected and truth_seeds > 1 else None),
        "max_abs_diff": diff,
        "statuses": {s: sum(1 for r in default.completed() if r.status == s)
                     for s in ("finished", "pruned", "diverged")},
        "grid_seconds": grid_seconds, "strategy_seconds": default_seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--lrs", default="1e-4:1")
    parser.add_argument("--truth-seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the grid")
    parser.add_argument("--storage", default=None, help="journal file (default: a temporary one)")
    parser.add_argument("--json", default=None, help="write the rows as JSON to this file")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory()
    storage = args.storage or os.path.join(tmp.name, "bench.journal")
    rows = []
    for task in args.tasks.split(","):
        row = run_task(task, args.lrs, storage, args.workers, args.truth_seeds)
        rows.append(row)
        print(f"{task}: steps {row['steps_ratio']:.1%}, regret {row['regret']:+.2%}, "
              f"same-seed {row['same_seed_regret']:+.2%}", file=sys.stderr, flush=True)
    head = (f"{'task':<15}{'optimizer':<18}{'trials':>8}{'steps':>8}{'regret':>9}{'same-seed':>11}"
            f"{'exp. regret (ours/grid)':>26}{'picks (ours/grid)':>20}{'max|diff|':>11}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['task']:<15}{r['optimizer']:<18}"
              f"{r['strategy_trials']:>3}/{r['grid_trials']:<4}{r['steps_ratio']:>8.1%}"
              f"{r['regret']:>+9.2%}{r['same_seed_regret']:>+11.2%}"
              f"{r['expected_regret_strategy']:>14.2%} / {r['expected_regret_grid']:<9.2%}"
              f"{r['strategy_pick']:>10.3g} / {r['grid_pick']:<7.3g}{r['max_abs_diff']:>11.1e}")
    worst_steps = max(r["steps_ratio"] for r in rows)
    worst_regret = max(r["regret"] for r in rows)
    print(f"\nworst steps ratio {worst_steps:.1%} (goal <= 35%), worst regret {worst_regret:+.2%} "
          f"(goal <= 1%), mean steps ratio {statistics.fmean(r['steps_ratio'] for r in rows):.1%}")
    print(f"goals met: steps {'yes' if worst_steps <= 0.35 else 'NO'}, "
          f"regret {'yes' if worst_regret <= 0.01 else 'NO'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
