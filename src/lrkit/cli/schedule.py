"""``lrkit schedule``: preview, lint and plot a learning-rate schedule before training with it."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "schedule", help="preview, lint and plot learning-rate schedules",
        description="Learning-rate schedules as short specs, e.g. "
                    "'warmup(500) >> cosine(10000, floor=0.1)'. See docs/schedules.md.")
    sub = p.add_subparsers(dest="schedule_command", metavar="ACTION")

    show = sub.add_parser(
        "show", help="key points, lint warnings and an optional plot of a schedule",
        description="Print the key points (start, peak, boundaries, end) and lint warnings of "
                    "SPEC over a run of --steps optimizer steps. SPEC is a text spec or a "
                    ".json/.yaml file holding a schedule config.")
    show.add_argument("spec", metavar="SPEC", help="schedule spec or path to a .json/.yaml config")
    show.add_argument("--steps", type=int, default=None,
                      help="optimizer steps in the run (default: the schedule's own length)")
    show.add_argument("--lr", type=float, default=None, metavar="PEAK",
                      help="optimizer learning rate a relative schedule multiplies (default 1)")
    show.add_argument("--steps-per-epoch", type=float, default=None,
                      help="optimizer steps per epoch, for lengths in epochs")
    show.add_argument("--batches-per-epoch", type=int, default=None,
                      help="batches per epoch (with --grad-accum), for lengths in epochs")
    show.add_argument("--grad-accum", type=int, default=1, help="batches per optimizer step")
    show.add_argument("--epochs", type=float, default=None,
                      help="run length in epochs (instead of --steps)")
    show.add_argument("--compare", action="append", default=[], metavar="SPEC",
                      help="another schedule to draw on the same plot (repeatable)")
    show.add_argument("--plot", metavar="FILE", help="save the curve (png, svg, pdf)")
    show.add_argument("--log", action="store_true", help="log scale for the plot's rate axis")
    show.add_argument("--json", nargs="?", const="-", metavar="FILE",
                      help="write the preview as JSON to FILE, or to stdout without FILE")
    show.add_argument("--strict", action="store_true",
                      help="exit with status 1 when the lint finds anything")
    show.set_defaults(func=run_show)

    lst = sub.add_parser("list", help="the schedule families and combinators with their parameters")
    lst.set_defaults(func=run_list)

    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _units(args: argparse.Namespace) -> dict:
    from lrkit.schedules import steps_per_epoch_from

    spe = args.steps_per_epoch
    if spe is None and args.batches_per_epoch is not None:
        spe = steps_per_epoch_from(args.batches_per_epoch, args.grad_accum)
    return {"steps_per_epoch": spe}


def run_show(args: argparse.Namespace) -> int:
    from lrkit.errors import LrkitError
    from lrkit.schedules import load, plot, preview

    units = _units(args)
    steps = args.steps
    if steps is None and args.epochs is not None:
        if units["steps_per_epoch"] is None:
            raise LrkitError("--epochs needs --steps-per-epoch or --batches-per-epoch")
        steps = int(args.epochs * units["steps_per_epoch"] + 0.5)
    schedule = load(args.spec)
    if steps is None:
        if schedule.is_resolved and isinstance(schedule.length, int):
            steps = schedule.length + 1
        else:
            raise LrkitError("give --steps N (the planned run length): "
                             f"{schedule.to_spec()} has no fixed length of its own")
    if steps <= 0:
        raise LrkitError(f"--steps must be > 0, got {steps}")
    main = preview(schedule, steps, lr=args.lr, **units)
    others = [preview(load(spec), steps, lr=args.lr, **units) for spec in args.compare]

    if args.json:
        data = main.to_dict()
        if others:
            data["compare"] = [o.to_dict() for o in others]
        text = json.dumps(data, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
    if not args.json or args.json != "-":
        print(main.format())
        for o in others:
            print()
            print(o.format())
    if args.plot:
        plot([main, *others], args.plot, log=args.log)
        print(f"plot written to {args.plot}", file=sys.stderr if args.json == "-" else sys.stdout)
    if args.strict and (main.warnings or any(o.warnings for o in others)):
        return 1
    return 0


def run_list(args: argparse.Namespace) -> int:
    from lrkit.schedules import REGISTRY

    for name in sorted(REGISTRY):
        cls = REGISTRY[name]
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{cls.signature()}\n    {doc}")
    return 0
