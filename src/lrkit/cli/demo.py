"""``lrkit demo``: what lrkit is for, on a built-in example, as one self-contained HTML page."""
from __future__ import annotations

import argparse
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="the whole story on a built-in example: find, compare, schedule, recommend",
        description="On the built-in digits-mlp example: (1) the range test and its suggestion, "
                    "(2) SGD at 0.5, 0.1 and 0.001 for the same budget, each diagnosed, "
                    "(3) schedule previews, (4) the recommended recipe against the untuned "
                    "default. Writes DIR/index.html (self-contained), DIR/summary.json and "
                    "DIR/overview.png (the four parts in one figure).")
    p.add_argument("--out", default="lrkit-demo", metavar="DIR",
                   help="output directory, created when missing; the files the demo writes "
                        "there are replaced (default: lrkit-demo)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of every run, 0 .. 2**32 - 1 (default 0)")
    p.add_argument("--quick", action="store_true",
                   help="shorter runs (100 steps): the same page in a few seconds, for tests")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from pathlib import Path

    from lrkit.cli import check_output_dir
    from lrkit.errors import LrkitError
    from lrkit.show.demo import check_seed, run_demo, write_demo

    check_seed(args.seed, "--seed")
    check_output_dir(args.out, "--out")
    for name in ("index.html", "summary.json", "overview.png"):  # refused before the training
        if (Path(args.out) / name).is_dir():
            raise LrkitError(f"--out {str(args.out)!r}: {name} there is a directory; the demo "
                             "writes a file by that name: give another --out or move it")
    torch.set_num_threads(1)  # tiny models: threads only add contention
    start = time.perf_counter()
    print(f"lrkit demo: {'quick run, ' if args.quick else ''}seed {args.seed}", flush=True)
    summary = run_demo(seed=args.seed, quick=args.quick,
                       progress=False if args.no_progress else None,
                       log=lambda line: tqdm.write(line, file=sys.stdout))
    paths = write_demo(summary, args.out)
    elapsed = time.perf_counter() - start
    print(f"\npage:    {paths['page']}")
    print(f"summary: {paths['summary']}")
    if summary.get("recipe_unavailable"):
        print(f"note: {summary['recipe_unavailable']}")
    print(f"done in {elapsed:.0f} s; open the page in a browser (it needs no network)")
    sys.stdout.flush()
    return 0
