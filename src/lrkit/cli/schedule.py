"""``lrkit schedule``: preview, lint and plot a learning-rate schedule before training with it."""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "schedule", help="preview, lint and plot learning-rate schedules",
        description="Learning-rate schedules as short specs, e.g. "
                    "'warmup(500) >> cosine(10000, floor=0.1)'. See docs/schedules.md.")
    sub = p.add_subparsers(dest="schedule_command", metavar="ACTION")

    show = sub.add_parser(
        "show", help="key points, lint warnings and an optional plot of a schedule",
        usage="%(prog)s SPEC [--steps N | --epochs E] [--lr PEAK]\n"
              "       [--steps-per-epoch K | --batches-per-epoch B [--grad-accum A]]\n"
              "       [--compare SPEC [SPEC ...]] [--plot FILE [--log]] [--json [FILE]] "
              "[--strict]",
        description="Print the key points (start, peak, boundaries, end) and lint warnings of "
                    "SPEC over a run of --steps optimizer steps. SPEC is a text spec or a "
                    ".json/.yaml file holding a schedule config.")
    # optional for argparse, so that a SPEC swallowed by --compare (which takes every spec after
    # it) gets an error that says so, not "the following arguments are required: SPEC"
    show.add_argument("spec", metavar="SPEC", nargs="?", default=None,
                      help="schedule spec or path to a .json/.yaml config (before --compare)")
    show.add_argument("--steps", type=int, default=None, metavar="N",
                      help="optimizer steps in the run (default: the schedule's own length)")
    show.add_argument("--lr", type=float, default=None, metavar="PEAK",
                      help="optimizer learning rate a relative schedule multiplies (default 1; "
                           "a peak(...) schedule sets its own rates)")
    show.add_argument("--steps-per-epoch", type=float, default=None, metavar="K",
                      help="optimizer steps per epoch, for lengths in epochs")
    show.add_argument("--batches-per-epoch", type=int, default=None, metavar="B",
                      help="batches per epoch (with --grad-accum), for lengths in epochs")
    show.add_argument("--grad-accum", type=int, default=1, metavar="A",
                      help="batches per optimizer step (default 1; with --batches-per-epoch)")
    show.add_argument("--epochs", type=float, default=None, metavar="E",
                      help="run length in epochs (instead of --steps)")
    show.add_argument("--compare", nargs="+", action="extend", default=[], metavar="SPEC",
                      help="other schedules to preview and draw on the same plot: one or more "
                           "specs after one --compare, or --compare repeated")
    show.add_argument("--plot", metavar="FILE", help="save the curve (png, svg, pdf)")
    show.add_argument("--log", action="store_true",
                      help="log scale for the plot's rate axis (with --plot)")
    show.add_argument("--json", nargs="?", const="-", metavar="FILE",
                      help="write the preview as JSON to FILE, or to stdout without FILE")
    show.add_argument("--strict", action="store_true",
                      help="exit with status 1 when the lint finds anything")
    show.set_defaults(func=run_show, option_names={
        "steps_per_epoch": "--steps-per-epoch", "batches_per_epoch": "--batches-per-epoch",
        "grad_accum": "--grad-accum", "total_steps": "--steps"})

    lst = sub.add_parser("list", help="the schedule families and combinators with their parameters")
    lst.set_defaults(func=run_list)

    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _finite_positive(value: float | None, option: str) -> None:
    from lrkit.errors import LrkitError

    if value is not None and not (math.isfinite(value) and value > 0):
        raise LrkitError(f"{option} must be a finite number > 0, got {value:g}")


def _check_options(args: argparse.Namespace) -> None:
    """Refuse out-of-range values and options that contradict or have no effect, naming them."""
    from lrkit.errors import LrkitError

    if args.spec is None:
        if args.compare:
            raise LrkitError("no SPEC: --compare takes every spec after it, so give SPEC first, "
                             "e.g. lrkit schedule show SPEC --compare OTHER [OTHER ...]")
        raise LrkitError("give SPEC, a schedule spec such as 'cosine(1000)' or a .json/.yaml "
                         "config (see lrkit schedule list)")
    if args.steps is not None and args.epochs is not None:
        raise LrkitError(f"give --steps or --epochs, not both (got --steps {args.steps} and "
                         f"--epochs {args.epochs:g})")
    if args.steps_per_epoch is not None and args.batches_per_epoch is not None:
        raise LrkitError("give --steps-per-epoch or --batches-per-epoch (with --grad-accum), not "
                         "both: --steps-per-epoch already counts optimizer steps")
    if args.grad_accum != 1 and args.batches_per_epoch is None:
        if args.steps_per_epoch is not None:
            raise LrkitError(f"--grad-accum goes with --batches-per-epoch, not --steps-per-epoch "
                             f"(got --grad-accum {args.grad_accum} with --steps-per-epoch "
                             f"{args.steps_per_epoch:g}): --steps-per-epoch already counts "
                             "optimizer steps (batches / grad-accum); drop --grad-accum, or give "
                             "--batches-per-epoch B instead of --steps-per-epoch")
        raise LrkitError(f"--grad-accum {args.grad_accum} has no effect without "
                         "--batches-per-epoch B (steps per epoch = B / grad-accum, for lengths in "
                         "epochs); add --batches-per-epoch B or drop --grad-accum")
    if args.steps is not None and args.steps <= 0:
        raise LrkitError(f"--steps must be > 0, got {args.steps}")
    _finite_positive(args.epochs, "--epochs")
    _finite_positive(args.steps_per_epoch, "--steps-per-epoch")
    _finite_positive(args.lr, "--lr")
    if args.batches_per_epoch is not None and args.batches_per_epoch <= 0:
        raise LrkitError(f"--batches-per-epoch must be > 0, got {args.batches_per_epoch}")
    if args.grad_accum <= 0:
        raise LrkitError(f"--grad-accum must be > 0, got {args.grad_accum}")
    if args.log and not args.plot:
        raise LrkitError("--log sets the plot's rate axis; it needs --plot FILE")
    try:
        from lrkit.cli import check_distinct_paths, check_output_path
    except ImportError:  # pragma: no cover - the shared check is optional
        return
    check_output_path(args.json, "--json")
    check_output_path(args.plot, "--plot", plot=True)
    check_distinct_paths({"--json": args.json, "--plot": args.plot}, {})


def _units(args: argparse.Namespace) -> dict:
    from lrkit.schedules import steps_per_epoch_from

    spe = args.steps_per_epoch
    if spe is None and args.batches_per_epoch is not None:
        spe = steps_per_epoch_from(args.batches_per_epoch, args.grad_accum)
    return {"steps_per_epoch": spe}


def _run_steps(args: argparse.Namespace, schedule: Any, spe: float | None) -> int:
    """--steps, --epochs x steps per epoch, or the schedule's own length."""
    from lrkit.errors import LrkitError
    from lrkit.schedules.inspection import MAX_STEPS

    if args.steps is not None:
        steps = args.steps
        if steps > MAX_STEPS:
            raise LrkitError(f"--steps {steps} is more than can be previewed (at most 2**53 = "
                             f"{MAX_STEPS})")
        return steps
    if args.epochs is not None:
        if spe is None:
            raise LrkitError("--epochs needs --steps-per-epoch or --batches-per-epoch")
        total = args.epochs * spe
        if not math.isfinite(total) or total > MAX_STEPS:  # (int() of inf raised OverflowError)
            raise LrkitError(f"--epochs {args.epochs:g} at {spe:g} steps per epoch is more steps "
                             f"than can be previewed (at most 2**53 = {MAX_STEPS})")
        steps = int(math.floor(total + 0.5))
        if steps <= 0:
            raise LrkitError(f"--epochs {args.epochs:g} at {spe:g} steps per epoch is "
                             f"{steps} optimizer steps; the run needs at least 1")
        if steps > MAX_STEPS:
            raise LrkitError(f"--epochs {args.epochs:g} at {spe:g} steps per epoch is more steps "
                             f"than can be previewed (at most 2**53 = {MAX_STEPS})")
        return steps
    own = schedule
    if not own.is_resolved and spe is not None:
        try:  # lengths in epochs resolve without a run length; fractions of the run do not
            own = schedule.resolve(steps_per_epoch=spe)
        except LrkitError:
            own = schedule
    length = own.length if own.is_resolved else None
    if not isinstance(length, int):
        raise LrkitError("give --steps N or --epochs E (the planned run length): "
                         f"{schedule.to_spec()} has no fixed length of its own")
    if length > MAX_STEPS:
        raise LrkitError(f"the schedule is {float(length):.4g} steps long, more than can be "
                         f"previewed (at most 2**53 = {MAX_STEPS}); give --steps N to preview "
                         "its start")
    return length


def _lr_note(args: argparse.Namespace, schedules: list) -> str | None:
    """Refuse ``--lr`` when every schedule is absolute (``peak(...)`` sets its own rates, so the
    optimizer's rate has no effect); with a mix, the note that says which ones it scales, or
    without ``--lr``, that the relative ones are shown for lr=1."""
    from lrkit.errors import LrkitError

    absolute = [s for s in schedules if s.is_absolute]
    if not absolute:
        return None
    if args.lr is None:
        if len(absolute) == len(schedules):
            return None
        # the relative ones are drawn for lr=1 beside absolute rates (3e-4: a flat line at 0)
        relative = ", ".join(s.to_spec() for s in schedules if not s.is_absolute)
        names = ", ".join(s.to_spec() for s in absolute)
        return (f"note: {relative} is relative and shown for lr=1, beside the absolute rates of "
                f"{names}; pass --lr PEAK to put them on one scale")
    if len(absolute) == len(schedules):
        which = ("the schedule sets" if len(schedules) == 1 else "every schedule here sets")
        raise LrkitError(f"--lr {args.lr:g} has no effect: {which} absolute rates with "
                         "peak(SCHEDULE, LR), which ignore the optimizer's rate; drop --lr, or "
                         "give the schedule without peak(...) to preview it at --lr")
    names = ", ".join(s.to_spec() for s in absolute)
    return (f"note: --lr {args.lr:g} scales the relative schedules only; {names} "
            "sets absolute rates of its own")


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats (inf, nan: not JSON) replaced by None (null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _recipe_peak_lr(spec: str) -> float | None:
    """The ``peak_lr`` of a recipe saved as JSON or YAML (``lrkit recommend --json/--yaml``),
    whose ``schedule`` is relative to it; None for any other spec."""
    from lrkit.schedules.spec import is_config_file, read_config_file

    if not is_config_file(spec):
        return None
    data = read_config_file(str(spec))  # (load() has read it: no error here)
    peak = data.get("peak_lr") if isinstance(data, dict) and "schedule" in data else None
    return float(peak) if isinstance(peak, (int, float)) and not isinstance(peak, bool) \
        and math.isfinite(peak) and peak > 0 else None


def run_show(args: argparse.Namespace) -> int:
    from lrkit.schedules import load, plot, preview

    _check_options(args)
    units = _units(args)
    specs = [args.spec, *args.compare]
    schedules = [load(spec) for spec in specs]
    schedule = schedules[0]
    # a recipe saved as JSON/YAML is drawn at its own peak_lr, which its relative schedule
    # multiplies (unless --lr is given); the others as --lr says
    peaks = [None if args.lr is not None or s.is_absolute else _recipe_peak_lr(spec)
             for spec, s in zip(specs, schedules)]
    plain = [s for s, peak in zip(schedules, peaks) if peak is None]
    note = _lr_note(args, plain) if plain else None
    recipes = [f"{spec} at its peak_lr {peak:g}" for spec, peak in zip(specs, peaks)
               if peak is not None]
    if recipes:
        note = "\n".join(filter(None, [note, f"note: {', '.join(recipes)} (a recipe; --lr to "
                                              "draw it at another)"]))
    steps = _run_steps(args, schedule, units["steps_per_epoch"])
    main, *others = [preview(s, steps, lr=peak if peak is not None else args.lr, **units)
                     for s, peak in zip(schedules, peaks)]
    if args.log and not any(k.rate > 0 for p in (main, *others) for k in p.key_points):
        # said before anything is printed or written (it came after the report and the JSON)
        from lrkit.errors import LrkitError

        raise LrkitError("--log needs a rate above 0, and every rate of the preview is 0 or "
                         "below; drop --log")

    if args.json:
        data = main.to_dict()
        if others:
            data["compare"] = [o.to_dict() for o in others]
        text = json.dumps(_json_safe(data), indent=2, allow_nan=False)
        if args.json == "-":
            print(text)
        else:
            from lrkit.files import write_atomically

            write_atomically(args.json, text + "\n")
    messages = sys.stderr if args.json == "-" else sys.stdout
    if args.json != "-":
        print(main.format())
        for o in others:
            print()
            print(o.format())
    if note:
        print(note, file=messages)
    if args.plot:
        plot([main, *others], args.plot, log=args.log)
        print(f"plot written to {args.plot}", file=messages)
    if args.json and args.json != "-":
        print(f"preview written to {args.json}")
    if args.strict and (main.warnings or any(o.warnings for o in others)):
        return 1
    return 0


def run_list(args: argparse.Namespace) -> int:
    from lrkit.schedules import REGISTRY

    for name in sorted(REGISTRY):
        cls = REGISTRY[name]
        # the first paragraph: a first line alone cut exponential's off at "...: a"
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        doc = re.sub(r"``(.+?)``", r"\1", doc)  # reStructuredText literals, as plain text
        print(f"{cls.signature()}\n    {doc}")
    return 0
