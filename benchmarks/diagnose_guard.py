"""Guard: does it rescue runs that diverge, and what does it cost when nothing goes wrong?

1. Rescue: for built-in examples at a rate where the plain run diverges (non-finite, or ends no
   lower than it started), train the same run under ``lrkit.Guard`` and compare its final
   validation loss, per seed, with the run at the good rate (the grid rate whose mean loss over
   the seeds is lowest; grid 10^-4 ... 10^-0.5, half-decade steps), with the best grid run of
   that seed (the minimum of eight noisy runs: a stricter, optimistic yardstick) and with the
   example's default rate.
2. False alarms: every example at its good rate (the lowest mean loss of the finder
   benchmark's grid, ``results/finder_grid_s12.json``) and at its default rate, trained for 3x
   its budget (near convergence, where batch losses turn heavy-tailed), with the training loader
   as built and with a ragged last batch (``drop_last=False``: a batch of a few samples each
   epoch); the guarded run against the plain one, per seed: interventions, rate cuts, final
   validation loss. And a user's script from a review (``user_script_runs``): an MLP on
   breast-cancer with AdamW, a shuffled ``DataLoader`` of batch 32 over 450 samples (a last batch
   of 2), warmup + cosine over 1,500 steps at the range test's suggestion and at recommend's
   peak, where batch losses 50x the median came once an epoch near convergence.
3. Overhead: time per optimizer step of a plain loop (zero_grad, forward, backward, step) against
   the same loop through ``guard.step(closure)`` at a healthy rate (no incidents), interleaved
   blocks, median per-step time.

    python benchmarks/diagnose_guard.py              # about 12 minutes on one core
    python benchmarks/diagnose_guard.py --skip-rescue --examples digits-mlp
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from lrkit import examples
from lrkit.adapters.torch import cycle_batches
from lrkit.diagnose import Guard
from lrkit.examples.data import ShuffledBatches
from lrkit.training import evaluate, train
from paired_blocks import interleave, print_medians  # benchmarks/, the script's own folder

RESCUE_CASES = [("friedman-deep", 0.3), ("friedman-deep", 1.0), ("regression-mlp", 1.0),
                ("blobs-wide", 0.3), ("digits-mlp", 0.3)]
GRID = [10 ** (k / 2) for k in range(-8, 0)]


def build(name: str, seed: int, lr: float, ragged: bool = False):
    """An example; ``ragged``: its training loader keeps the last, smaller batch of each pass."""
    problem = examples.build(name, seed=seed, lr=lr)
    if ragged:
        loader = problem.train_loader
        problem.train_loader = ShuffledBatches(*loader.tensors, batch_size=loader.batch_size,
                                               seed=loader.seed, drop_last=False)
    return problem


def guarded_run(name: str, lr: float, seed: int, steps: int, ragged: bool = False,
                **options) -> tuple[float, Guard]:
    problem = build(name, seed, lr, ragged)
    guard = Guard(problem.model, problem.optimizer, **options)
    batches = cycle_batches(problem.train_loader)
    torch.manual_seed(seed)
    for _ in range(steps):
        batch = next(batches)

        def closure(batch=batch):
            problem.optimizer.zero_grad()
            loss = problem.criterion(problem.model(batch[0]), batch[1])
            loss.backward()
            return loss

        guard.step(closure)
    guard.close()
    return evaluate(problem), guard


def rescue(seeds: list[int], cases: list[tuple[str, float]] | None = None,
           **options) -> list[dict]:
    rows = []
    for name, bad_lr in cases or RESCUE_CASES:
        ex = examples.get(name)
        for seed in seeds:
            plain = train(examples.build(name, seed=seed, lr=bad_lr), lr=bad_lr,
                          steps=ex.budget_steps, seed=seed)
            t0 = plain.losses[0]
            tail = [v for v in plain.losses[-max(1, len(plain.losses) // 10):]]
            failed = plain.diverged or not all(math.isfinite(v) for v in tail) or \
                statistics.median(tail) >= t0
            val, guard = guarded_run(name, bad_lr, seed, ex.budget_steps, **options)
            grid = {lr: train(examples.build(name, seed=seed, lr=lr), lr=lr, steps=ex.budget_steps,
                              seed=seed).val_loss for lr in GRID}
            best_lr = min(grid, key=lambda k: grid[k])
            default = train(examples.build(name, seed=seed), lr=ex.default_lr,
                            steps=ex.budget_steps, seed=seed).val_loss
            rows.append({"example": name, "seed": seed, "lr": bad_lr, "plain_failed": failed,
                         "plain_val": plain.val_loss, "guard_val": val,
                         "interventions": len(guard.interventions), "final_lr": guard.lrs[0],
                         "best_grid_lr": best_lr, "best_grid_val": grid[best_lr],
                         "grid": {str(lr): v for lr, v in grid.items()},
                         "default_val": default})
            r = rows[-1]
            print(f"  {name} lr {bad_lr:g} seed {seed}: plain {'FAILED' if failed else 'ok'} "
                  f"(val {r['plain_val']:.4g}); guarded val {val:.4g} after "
                  f"{r['interventions']} interventions (rate now {r['final_lr']:.3g}); best grid "
                  f"val {r['best_grid_val']:.4g} at {best_lr:.3g}; default-rate val {default:.4g}",
                  flush=True)
        _add_good_rate([r for r in rows if r["example"] == name and r["lr"] == bad_lr])
    return rows


def false_alarms(seeds: list[int], names: list[str], length: float = 3.0,
                 **options) -> list[dict]:
    """Guarded against plain runs at rates where nothing goes wrong (see the docstring)."""
    grid = json.loads((Path(__file__).parent / "results" / "finder_grid_s12.json").read_text())
    rows = []
    for name in names:
        ex = examples.get(name)
        losses = grid[name]
        good = float(min(losses, key=lambda k: statistics.fmean(losses[k])))
        steps = int(length * ex.budget_steps)
        for lr in dict.fromkeys((good, ex.default_lr)):
            for ragged in (False, True):
                for seed in seeds:
                    plain = train(build(name, seed, lr, ragged), lr=lr, steps=steps,
                                  seed=seed).val_loss
                    val, guard = guarded_run(name, lr, seed, steps, ragged, **options)
                    reasons = [i.reason for i in guard.interventions]
                    rows.append({"example": name, "lr": lr, "ragged": ragged, "seed": seed,
                                 "plain_val": plain, "guard_val": val, "interventions": reasons,
                                 "rate_scale": guard.lrs[0] / lr})
                    if reasons:
                        print(f"  {name:<16} lr {lr:<8.3g} {'ragged' if ragged else 'as built'}"
                              f" seed {seed}: {len(reasons)} interventions "
                              f"({', '.join(sorted(set(reasons)))}), "
                              f"rate x{rows[-1]['rate_scale']:.3g}, "
                              f"val x{val / plain:.3f} of the plain run", flush=True)
    return rows


def user_script_runs(seeds: list[int], **options) -> list[dict]:
    """The review's breast-cancer script (see the module docstring), plain and guarded."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    from lrkit.schedules import parse, to_torch

    x, y = load_breast_cancer(return_X_y=True)
    x = torch.tensor(StandardScaler().fit_transform(x), dtype=torch.float32)
    y = torch.tensor(y)
    train_set = torch.utils.data.TensorDataset(x[:450], y[:450])
    x_val, y_val = x[450:], y[450:]
    total = 1500

    def run(lr: float, seed: int, guarded: bool) -> tuple[float, Guard | None]:
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(30, 64), torch.nn.ReLU(),
                                    torch.nn.Linear(64, 2))
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True)
        scheduler = to_torch(optimizer, parse(f"warmup(30, start=0.01) >> cosine({total - 30}, "
                                              "floor=0.1)"))
        guard = Guard(model, optimizer, scheduler=scheduler, **options) if guarded else None
        criterion = torch.nn.CrossEntropyLoss()
        while scheduler.last_epoch < total:
            for xb, yb in loader:
                def closure(xb=xb, yb=yb):
                    optimizer.zero_grad()
                    loss = criterion(model(xb), yb)
                    loss.backward()
                    return loss
                if guard is None:
                    closure()
                    optimizer.step()
                else:
                    guard.step(closure)
                scheduler.step()
                if scheduler.last_epoch >= total:
                    break
        with torch.no_grad():
            return criterion(model(x_val), y_val).item(), guard

    rows = []
    for lr in (0.0031, 0.00453):  # recommend's peak and the range test's suggestion there
        for seed in seeds:
            plain, _ = run(lr, seed, False)
            val, guard = run(lr, seed, True)
            reasons = [i.reason for i in guard.interventions]
            rows.append({"example": "user-script", "lr": lr, "ragged": True, "seed": seed,
                         "plain_val": plain, "guard_val": val, "interventions": reasons,
                         "rate_scale": guard._cut_scale})
            print(f"  user script lr {lr:g} seed {seed}: {len(reasons)} interventions "
                  f"({', '.join(sorted(set(reasons))) or '-'}), the guard's cuts "
                  f"x{guard._cut_scale:.3g}, val x{val / plain:.3f} of the plain run", flush=True)
    return rows


def _add_good_rate(rows: list[dict]) -> None:
    """The good rate of a case: the grid rate with the lowest mean loss over its seeds."""
    keys = list(rows[0]["grid"])
    good = min(keys, key=lambda k: statistics.fmean(r["grid"][k] for r in rows))
    for r in rows:
        r["good_lr"], r["good_val"] = float(good), r["grid"][good]


def step_times(name: str, blocks: int, block_steps: int, seed: int = 0, **options) -> dict:
    """Median seconds per step for the plain loop and the guarded loop, interleaved."""
    problem = examples.build(name, seed=seed)
    model, optimizer, criterion = problem.model, problem.optimizer, problem.criterion
    batches = cycle_batches(problem.train_loader)
    guard = Guard(model, optimizer, **options)

    def plain_block():
        for _ in range(block_steps):
            x, y = next(batches)
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()

    own = [0.0, 0]  # seconds inside guard.step minus the closure and optimizer.step, calls
    inner = [0.0]
    real_step = optimizer.step

    def timed_step(*args, **kwargs):
        start = time.perf_counter()
        result = real_step(*args, **kwargs)
        inner[0] += time.perf_counter() - start
        return result

    def bare_block():  # what a user's loop pays: timed as a whole, against plain_block
        for _ in range(block_steps):
            x, y = next(batches)

            def closure():
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                return loss

            guard.step(closure)

    def timed_block():  # the guard's own time inside each step (instrumented: not in the A/B)
        for _ in range(block_steps):
            x, y = next(batches)

            def closure():
                start = time.perf_counter()
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                inner[0] += time.perf_counter() - start
                return loss

            inner[0] = 0.0
            optimizer.step = timed_step
            start = time.perf_counter()
            guard.step(closure)
            own[0] += time.perf_counter() - start - inner[0]
            own[1] += 1
            optimizer.step = real_step

    timed_block(), plain_block()  # warm up (the guard sees the run from its start)
    ab = interleave(plain_block, bare_block, blocks=blocks, block_steps=block_steps,
                    between=timed_block)
    own_per_step = own[0] / own[1]
    return {"example": name, "plain_ms": ab["plain_s"] * 1e3, "guard_ms": ab["other_s"] * 1e3,
            "own_us": own_per_step * 1e6, "own_share": own_per_step / ab["fastest_plain_s"],
            "overhead": ab["overhead"], "overhead_fastest": ab["overhead_fastest"],
            "paired": ab["paired"], "interventions": len(guard.interventions)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--examples", nargs="*", default=None,
                        help="examples for the overhead part (default: all)")
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--block-steps", type=int, default=50)
    parser.add_argument("--skip-rescue", action="store_true")
    parser.add_argument("--cases", nargs="*", default=None, metavar="EXAMPLE:LR",
                        help="rescue cases other than the benchmark's (a held-out check)")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-false-alarms", action="store_true")
    parser.add_argument("--false-alarm-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lr-factor", type=float, default=None, help="Guard's lr_factor")
    parser.add_argument("--check-grads", action="store_true", help="Guard(check_grads=True)")
    parser.add_argument("--confirm-spikes", type=int, default=None, help="Guard's confirm_spikes")
    parser.add_argument("--out", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("lrkit.diagnose").setLevel(logging.ERROR)  # interventions are counted
    options = {"check_grads": args.check_grads}
    if args.lr_factor is not None:
        options["lr_factor"] = args.lr_factor
    if args.confirm_spikes is not None:
        options["confirm_spikes"] = args.confirm_spikes
    figures: dict = {"guard_options": options}
    if not args.skip_rescue:
        print("rescue: runs that fail at a too-high rate, trained again under the Guard")
        cases = ([(c.rsplit(":", 1)[0], float(c.rsplit(":", 1)[1])) for c in args.cases]
                 if args.cases else RESCUE_CASES)
        rows = rescue(args.seeds, cases, **options)
        figures["rescue"] = rows
        print("\n  per case (median over seeds): guarded val / good-rate val, / best grid val of "
              "the seed, / default-rate val")
        for name, lr in cases:
            part = [r for r in rows if r["example"] == name and r["lr"] == lr]
            vs_good = statistics.median(r["guard_val"] / r["good_val"] for r in part)
            vs_best = statistics.median(r["guard_val"] / r["best_grid_val"] for r in part)
            vs_default = statistics.median(r["guard_val"] / r["default_val"] for r in part)
            failed = sum(r["plain_failed"] for r in part)
            finite = sum(math.isfinite(r["guard_val"]) for r in part)
            print(f"  {name:<15} lr {lr:<4g} plain failed {failed}/{len(part)}, guarded finite "
                  f"{finite}/{len(part)}, vs good rate {part[0]['good_lr']:.3g} x{vs_good:.3f}, "
                  f"vs best grid x{vs_best:.3f}, vs default x{vs_default:.3f}")
        for key, label in (("good_val", "the good rate"), ("best_grid_val", "the seed's best")):
            ratios = sorted(r["guard_val"] / r[key] for r in rows)
            print(f"  all {len(ratios)} runs vs {label}: median x{statistics.median(ratios):.3f}, "
                  f"within 5% {sum(v <= 1.05 for v in ratios)}, within 10% "
                  f"{sum(v <= 1.10 for v in ratios)}, worst x{ratios[-1]:.2f}")
    if not args.skip_false_alarms:
        print("\nfalse alarms: healthy runs (good and default rates, 3x the budget), guarded "
              "against plain")
        rows = false_alarms(args.false_alarm_seeds, args.examples or examples.names(), **options)
        user = user_script_runs(list(range(5)), **options)
        figures["false_alarms"] = rows + user
        for label, part in (("loaders as built", [r for r in rows if not r["ragged"]]),
                            ("ragged last batch", [r for r in rows if r["ragged"]]),
                            ("user script", user)):
            ratios = sorted(r["guard_val"] / r["plain_val"] for r in part)
            print(f"  {label}: {len(part)} runs, "
                  f"{sum(bool(r['interventions']) for r in part)} with interventions, "
                  f"{sum(r['rate_scale'] < 0.999 for r in part)} with the rate cut; val vs plain "
                  f"median x{statistics.median(ratios):.4f}, within 5% "
                  f"{sum(v <= 1.05 for v in ratios)}, worst x{ratios[-1]:.2f}")
    if args.skip_overhead:
        _write(args.out, figures)
        return 0
    print("\noverhead per step without incidents (median of interleaved blocks, one thread)")
    names = args.examples or examples.names()
    figures["overhead"] = []
    for name in names:
        row = step_times(name, args.blocks, args.block_steps, **options)
        figures["overhead"].append(row)
        print(f"  {name:<17} step {row['plain_ms']:.3f} ms; guard's own time {row['own_us']:.1f} us"
              f" = {row['own_share']:.2%} of the fastest plain step; A/B blocks "
              f"{row['overhead']:+.1%}, paired blocks {row['paired']:+.1%} "
              f"({row['interventions']} interventions)", flush=True)
    print_medians(figures["overhead"])
    _write(args.out, figures)
    return 0


def _write(path: str | None, figures: dict) -> None:
    if path:
        with open(path, "w") as handle:
            json.dump(figures, handle, indent=2, default=str)


if __name__ == "__main__":
    sys.exit(main())
