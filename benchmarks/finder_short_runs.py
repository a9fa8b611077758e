"""Could short confirmation runs fix the range test's suggestion? Evidence that they cannot, in
the finder's 30% budget.

For every task of ``finder_quality.py``, constant-rate runs at the grid's rates within
[anchor / 40, anchor x 3.5] (anchor: median over the 6 seeds of the rate at the range test's
smoothed minimum), seeds 0-2, the whole budget, with the validation loss every 25 steps. For a
horizon k, "pick" is the rate with the lowest mean validation loss at step k; its regret is its
mean final loss over the best rate's. If short horizons ranked rates as the full budget does, a
few short runs after the range test would find the best rate; they do not (see the printout:
at k = 100, a quarter of the budget, the pick is up to 21% off, and the best rate at k is
0.2-5.6x the best rate at the full budget, with no pattern across tasks).

    python benchmarks/finder_short_runs.py        # ~8 minutes on one core (cached afterwards)
"""
from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
CACHE = RESULTS / "finder_short_runs.json"
CURVES = RESULTS / "finder_curves_s6.json"
TASKS = ["digits-mlp", "digits-cnn", "regression-mlp", "tiny-transformer", "moons-mlp", "logreg",
         "digits-gru", "friedman-deep", "hastie-mlp", "blobs-wide"]
GRID = [float(10 ** e) for e in np.arange(-5.0, 1.01, 0.25)]
SEEDS = (0, 1, 2)
HORIZONS = (50, 100, 200)


def collect() -> dict:
    import torch

    import lrkit
    from lrkit.find.suggest import prepare
    from lrkit.training import train

    torch.set_num_threads(1)
    curves = json.loads(CURVES.read_text())
    out = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    for task in TASKS:
        mins = []
        for c in curves:
            if c["task"] == task:
                curve = prepare(c["lrs"], c["losses"])
                mins.append(curve.lrs[curve.min_index])
        anchor = statistics.median(mins)
        for seed in SEEDS:
            for lr in (r for r in GRID if anchor / 40 <= r <= anchor * 3.5):
                key = f"{task}|{lr:.6g}|{seed}"
                if key in out:
                    continue
                problem = lrkit.examples.build(task, seed=seed, lr=lr)
                run = train(problem, lr=lr, steps=problem.budget_steps, seed=seed, eval_every=25)
                out[key] = {"val": run.val_curve, "final": None if run.diverged else run.val_loss}
            RESULTS.mkdir(exist_ok=True)
            CACHE.write_text(json.dumps(out))
    return out


def main() -> None:
    data = collect()
    tasks: dict[str, dict[float, dict[int, dict]]] = {}
    for key, value in data.items():
        task, lr, seed = key.split("|")
        tasks.setdefault(task, {}).setdefault(float(lr), {})[int(seed)] = value
    print("pick at horizon k: the pick's rate / the full budget's best rate (its regret)")
    for task in TASKS:
        runs = tasks[task]
        final = {lr: statistics.fmean(runs[lr][s]["final"] if runs[lr][s]["final"] is not None
                                      else 99.0 for s in SEEDS) for lr in runs}
        best = min(final, key=final.get)
        cells = []
        for k in HORIZONS:
            at_k = {lr: statistics.fmean(dict(map(tuple, runs[lr][s]["val"])).get(k, 99.0)
                                         for s in SEEDS) for lr in runs}
            pick = min(at_k, key=at_k.get)
            cells.append(f"k={k}: {pick / best:5.2f}x ({100 * (final[pick] / final[best] - 1):+.0f}%)")
        print(f"  {task:<17} best {best:<8.3g} " + "   ".join(cells))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
