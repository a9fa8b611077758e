"""Wall-clock of the same sweep with 1 and 2 local worker processes (``lrkit sweep --workers``).

Each measurement is a fresh ``lrkit sweep`` process on a fresh journal file, so interpreter start,
imports, worker spawning and data loading all count. Runs alternate 1, 2, 1, 2, ... so that a
change in the machine's load hits both alike. Because other programs may share the CPU, each run
also records how busy the machine was with *other* work (from /proc/stat, minus this sweep's own
CPU time): a speed-up measured on a machine whose cores are taken by others is not the speed-up
of an idle one.

    python benchmarks/sweep_scaling.py                  # digits-cnn, 2 optimizers, 1200 steps, 3 rounds
    python benchmarks/sweep_scaling.py --target moons-mlp --rounds 5 --budget 2000
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def cpu_ticks() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        values = [float(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    return sum(values) - idle, sum(values)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy_fraction(storage: str, study_name: str, workers: int) -> float:
    """Share of the sweep's span (first trial start to last trial end) during which the workers
    were inside trials: 1.0 means no worker ever waited for the plan, a lock or the others."""
    import optuna

    from lrkit.sweep.optuna_engine import StorageHandle

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=study_name,
                               storage=StorageHandle(storage).open()).get_trials(deepcopy=False)
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    inside = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    return inside / (workers * (end - start).total_seconds())


def one_run(args, workers: int, directory: str, index: int) -> dict:
    storage = os.path.join(directory, f"run{index}-w{workers}.journal")
    command = [sys.executable, "-m", "lrkit", "sweep", args.target, "--lrs", args.lrs,
               "--optimizers", args.optimizers, "--workers", str(workers), "--storage", storage,
               "--no-progress", "--json"]
    if args.budget:
        command += ["--budget", str(args.budget)]
    if args.seeds > 1:
        command += ["--seeds", str(args.seeds)]
    busy0, total0 = cpu_ticks()
    own0 = children_cpu()
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    busy1, total1 = cpu_ticks()
    own = children_cpu() - own0
    if out.returncode != 0:
        raise SystemExit(f"sweep failed:\n{out.stderr}")
    result = json.loads(out.stdout)
    busy = busy_fraction(storage, result["study_name"], workers)
    tick = os.sysconf("SC_CLK_TCK")
    cores = os.cpu_count() or 1
    machine_busy = (busy1 - busy0) / tick  # CPU-seconds used by everything
    others = max(0.0, machine_busy - own)
    return {"workers": workers, "wall": wall, "own_cpu": own, "busy": busy,
            "others_cores": others / wall, "cores": cores,
            "trials": len(result["trials"]), "steps": result["total_steps"],
            "best_lr": result["best"]["lr"] if result["best"] else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="digits-cnn")
    parser.add_argument("--optimizers", default="sgd-momentum,adam")
    parser.add_argument("--lrs", default="1e-4:1")
    parser.add_argument("--budget", type=int, default=1200,
                        help="steps per trial (default 1200: a sweep of about a minute)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for index in range(args.rounds):
            for workers in (1, 2):
                row = one_run(args, workers, directory, index)
                rows.append(row)
                print(f"round {index + 1}: {workers} worker(s) {row['wall']:6.1f} s, "
                      f"{row['trials']} trials, {row['steps']} steps, workers busy "
                      f"{row['busy']:.0%} of the sweep, other programs used "
                      f"{row['others_cores']:.2f} of {row['cores']} cores", flush=True)
    one = [r["wall"] for r in rows if r["workers"] == 1]
    two = [r["wall"] for r in rows if r["workers"] == 2]
    pairs = [a / b for a, b in zip(one, two)]
    seeds = f", {args.seeds} seeds" if args.seeds > 1 else ""
    print(f"\n{args.target} ({args.optimizers}{seeds}, {args.budget} steps): "
          f"1 worker median {statistics.median(one):.1f} s, "
          f"2 workers median {statistics.median(two):.1f} s")
    print(f"speed-up: median of the ratios {statistics.median(pairs):.2f}x, best round "
          f"{max(pairs):.2f}x, ratio of medians "
          f"{statistics.median(one) / statistics.median(two):.2f}x"
          f" (goal >= 1.7x)")
    print(f"with 2 workers, the workers were inside trials "
          f"{statistics.fmean(r['busy'] for r in rows if r['workers'] == 2):.0%} of the sweep")
    print(f"other programs used on average {statistics.fmean(r['others_cores'] for r in rows):.2f}"
          f" of {rows[0]['cores']} cores during the runs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
