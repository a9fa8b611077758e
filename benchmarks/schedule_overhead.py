"""Per-step cost of lrkit's scheduler against torch's own scheduler for the same schedule.

Each case runs ``optimizer.step(); scheduler.step()`` for N steps on a one-parameter SGD
optimizer (no gradients, so the optimizer itself does almost nothing), and subtracts the same
loop without any scheduler. What is left is the scheduler's cost per step: for torch, its
``step()``; for lrkit, the optimizer post-step hook that advances the count and sets the rate,
plus the (then idempotent) ``step()``. Repeats are interleaved; the fastest repeat of each loop is
kept (the usual microbenchmark choice: other processes only ever add time).

    python benchmarks/schedule_overhead.py [--steps 5000] [--repeats 9] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from functools import partial


def _hf_wsd(step, *, w, s, d):
    """transformers' get_wsd_schedule lambda (linear warmup, 1-sqrt decay), as users write it."""
    if step < w:
        return step / max(1, w)
    if step < w + s:
        return 1.0
    if step < w + s + d:
        return max(0.0, 1.0 - math.sqrt((step - w - s) / max(1, d)))
    return 0.0


def cases(n: int):
    from torch.optim import lr_scheduler as L

    w = n // 20
    return [
        ("cosine", lambda o: L.CosineAnnealingLR(o, T_max=n, eta_min=0.001),
         f"cosine({n}, floor=0.01)"),
        ("onecycle", lambda o: L.OneCycleLR(o, max_lr=0.1, total_steps=n + 1, cycle_momentum=False),
         f"onecycle({n + 1})"),
        ("warmup+cosine vs SequentialLR",
         lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.01, total_iters=w),
                                      L.CosineAnnealingLR(o, T_max=n - w, eta_min=0.001)],
                                  milestones=[w]),
         f"warmup({w}, start=0.01) >> cosine({n - w}, floor=0.01)"),
        ("step", lambda o: L.StepLR(o, step_size=n // 10, gamma=0.5), f"step({n // 10}, gamma=0.5)"),
        ("wsd vs LambdaLR", lambda o: L.LambdaLR(o, partial(_hf_wsd, w=w, s=n - w - n // 5, d=n // 5)),
         f"wsd({n}, decay={n // 5}, warmup={w}, shape='1-sqrt')"),
    ]


def _loop(factory, n: int) -> float:
    import torch

    param = torch.nn.Parameter(torch.zeros(16))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = factory(opt) if factory is not None else None
    step = opt.step
    start = time.perf_counter()
    if sched is None:
        for _ in range(n):
            step()
    else:
        sstep = sched.step
        for _ in range(n):
            step()
            sstep()
    return (time.perf_counter() - start) / n * 1e6  # microseconds per step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)

    import torch

    from lrkit.schedules import to_torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    n = args.steps
    rows = []
    for name, torch_factory, spec in cases(n):
        lrkit_factory = partial(to_torch, schedule=spec)
        base, theirs, ours = [], [], []
        _loop(torch_factory, 200), _loop(lambda o: lrkit_factory(o), 200)  # warm up
        for _ in range(args.repeats):
            base.append(_loop(None, n))
            theirs.append(_loop(torch_factory, n))
            ours.append(_loop(lambda o: lrkit_factory(o), n))
        b, t, o = (min(x) for x in (base, theirs, ours))
        rows.append({"case": name, "spec": spec, "baseline_us": b, "torch_us": t - b,
                     "lrkit_us": o - b, "ratio": (o - b) / (t - b)})

    print(f"torch {torch.__version__}, python {sys.version.split()[0]}, 1 thread, "
          f"{n} steps x {args.repeats} repeats (fastest); optimizer.step() alone: "
          f"{statistics.median(r['baseline_us'] for r in rows):.2f} us")
    print()
    print(f"{'schedule':<32} {'torch us/step':>14} {'lrkit us/step':>14} {'lrkit/torch':>12}")
    for r in rows:
        print(f"{r['case']:<32} {r['torch_us']:>14.2f} {r['lrkit_us']:>14.2f} {r['ratio']:>12.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"torch": torch.__version__, "steps": n, "repeats": args.repeats,
                       "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
