"""Monitor overhead: time per training step with and without ``monitor.update(loss, lr=...)``.

For each built-in example: a plain loop (zero_grad, forward, backward, step) against the same loop
that also calls ``monitor.update(loss, lr=lr)`` with the loss *tensor* (no host sync; reports every
1000 steps, the default) -- interleaved blocks, median per-step time, one thread; and the
monitor's own time inside the loop per step. Also: the cost of one
``update`` call and of one report (a diagnosis of the history) on their own.

    python benchmarks/diagnose_monitor.py          # about 1-2 minutes on one core
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from lrkit import examples
from lrkit.adapters.torch import cycle_batches
from lrkit.diagnose import Monitor, diagnose
from paired_blocks import interleave, print_medians  # benchmarks/, the script's own folder


def step_times(name: str, blocks: int, block_steps: int, report_every: int,
               log_dir: str | None = None) -> dict:
    problem = examples.build(name, seed=0)
    model, optimizer, criterion = problem.model, problem.optimizer, problem.criterion
    batches = cycle_batches(problem.train_loader)
    log_file = None if log_dir is None else f"{log_dir}/{name}.jsonl"
    monitor = Monitor(report_every=report_every, logger="lrkit.bench.quiet", log_file=log_file)
    lr = optimizer.param_groups[0]["lr"]

    own = [0.0, 0]  # seconds spent inside monitor.update (reports included), calls

    def train_step():
        x, y = next(batches)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    def block(watch: bool):  # the A/B pair: plain, or watched as a user's loop would be
        for _ in range(block_steps):
            loss = train_step()
            if watch:
                monitor.update(loss, lr=lr)

    def timed_block():  # the monitor's own time per call (instrumented: not in the A/B)
        for _ in range(block_steps):
            loss = train_step()
            start = time.perf_counter()
            monitor.update(loss, lr=lr)
            own[0] += time.perf_counter() - start
            own[1] += 1

    block(False), timed_block()
    ab = interleave(lambda: block(False), lambda: block(True), blocks=blocks,
                    block_steps=block_steps, between=timed_block)
    # the monitor's own time per step against the plain step: the figure that other work on a
    # shared machine does not blur (the A/B difference of whole blocks is reported too)
    own_per_step = own[0] / own[1]
    return {"example": name, "plain_ms": ab["plain_s"] * 1e3, "monitor_ms": ab["other_s"] * 1e3,
            "own_us": own_per_step * 1e6, "own_share": own_per_step / ab["fastest_plain_s"],
            "overhead": ab["overhead"], "overhead_fastest": ab["overhead_fastest"],
            "paired": ab["paired"], "reports": len(monitor.reports)}


def micro() -> dict:
    monitor = Monitor(report_every=0)
    n = 200_000
    start = time.perf_counter()
    for i in range(n):
        monitor.update(1.0 / (i + 1), lr=0.1)
    per_float = (time.perf_counter() - start) / n
    tensors = [torch.tensor(1.0 / (i + 1)) for i in range(20_000)]
    monitor = Monitor(report_every=0)
    start = time.perf_counter()
    for t in tensors:
        monitor.update(t, lr=0.1)
    per_tensor = (time.perf_counter() - start) / len(tensors)
    start = time.perf_counter()
    monitor.losses  # noqa: B018 -- the one host copy at report time
    flush = time.perf_counter() - start
    rng = np.random.default_rng(0)
    reports = {}
    for points in (400, 4000):
        values = 2.3 * np.exp(-np.linspace(0, 5, points)) * np.exp(rng.normal(0, 0.2, points))
        diagnose(values, 0.1)  # the first report of a process imports scipy.ndimage (~0.1 s)
        start = time.perf_counter()
        for _ in range(20):
            diagnose(values, 0.1)
        reports[points] = (time.perf_counter() - start) / 20
    return {"update_float_us": per_float * 1e6, "update_tensor_us": per_tensor * 1e6,
            "flush_20000_tensors_ms": flush * 1e3,
            "report_ms": {k: v * 1e3 for k, v in reports.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", nargs="*", default=None)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--block-steps", type=int, default=100)
    parser.add_argument("--report-every", type=int, default=1000)
    parser.add_argument("--log-file", action="store_true",
                        help="the monitor also writes its JSONL log (a file per example, in a "
                             "temporary directory), as the docs' loop does")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    figures = {"micro": micro(), "overhead": []}
    m = figures["micro"]
    print(f"update(float): {m['update_float_us']:.2f} us, update(tensor): "
          f"{m['update_tensor_us']:.2f} us, host copy of 20000 tensors at report time: "
          f"{m['flush_20000_tensors_ms']:.1f} ms; one report: "
          + ", ".join(f"{k} points {v:.2f} ms" for k, v in m["report_ms"].items()))
    import tempfile

    log_dir = tempfile.mkdtemp(prefix="lrkit-monitor-bench-") if args.log_file else None
    print(f"\noverhead per step, loss tensor passed each step, report every {args.report_every}"
          + (", JSONL log written" if log_dir else ""))
    for name in args.examples or examples.names():
        row = step_times(name, args.blocks, args.block_steps, args.report_every, log_dir)
        figures["overhead"].append(row)
        print(f"  {name:<17} step {row['plain_ms']:.3f} ms; monitor's own time "
              f"{row['own_us']:.1f} us = {row['own_share']:.2%} of the fastest plain step; "
              f"A/B blocks {row['overhead']:+.1%}, paired blocks {row['paired']:+.1%} "
              f"({row['reports']} reports)", flush=True)
    print_medians(figures["overhead"])
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
