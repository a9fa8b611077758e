"""``lrkit find``: the range test on a built-in example or a user's ``file.py:function``."""
from __future__ import annotations

import argparse
import math
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "find", help="learning-rate range test: suggest a rate",
        description="Run a learning-rate range test and suggest a rate. TARGET is a built-in "
                    "example name (see --list-examples) or path/to/file.py:function returning the "
                    "model, optimizer, data and loss (an lrkit.Problem, a dict or a tuple). "
                    "Exit status: 0 with a suggestion, 1 when the curve gave none (the warnings "
                    "say why), 2 for bad input.")
    p.add_argument("target", nargs="?", default=None,
                   help="example name or file.py:function (default: the default example)")
    p.add_argument("--list-examples", action="store_true", help="list the built-in examples and exit")
    p.add_argument("--start-lr", type=float, default=1e-7, help="first rate (default 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last rate (default 10)")
    p.add_argument("--steps", type=int, default=100, help="number of steps, >= 10 (default 100)")
    p.add_argument("--ramp", choices=["exp", "linear"], default="exp", help="rate ramp (default exp)")
    p.add_argument("--smoothing", type=float, default=0.9,
                   help="EMA beta of the divergence check (default 0.9)")
    p.add_argument("--diverge-threshold", type=float, default=4.0,
                   help="stop when the smoothed loss rises above its best by (this - 1) times "
                        "its fall so far (default 4: by 3x)")
    # these three default to the recipe's own step_options (as recommend and sweep take them),
    # else to 1 / off / none; given here, they override the recipe
    p.add_argument("--accumulation-steps", type=int, default=None,
                   help="micro-batches per step (default: the recipe's step_options, else 1)")
    p.add_argument("--amp", nargs="?", const=True, default=None, choices=["bf16", "fp16"],
                   metavar="bf16|fp16",
                   help="automatic mixed precision where supported: bare --amp is float16 with "
                        "loss scaling on CUDA and bfloat16 elsewhere; bf16 or fp16 choose "
                        "(default: the recipe's step_options, else off)")
    p.add_argument("--max-grad-norm", type=float, default=None, metavar="NORM",
                   help="clip gradients to this norm, as the training does (default: the "
                        "recipe's step_options, else none)")
    p.add_argument("--val-every", type=int, default=None, metavar="K",
                   help="evaluate a fixed validation subset every K >= 1 steps and use that curve "
                        "(needs a val_loader in the recipe)")
    p.add_argument("--val-batches", type=int, default=5, help="batches in the validation subset (default 5)")
    p.add_argument("--method", default="auto",
                   help="suggestion method: auto (= edge), edge, steepest, valley, minimum (default auto)")
    p.add_argument("--budget-steps", type=int, default=None,
                   help="planned training length in steps, >= 1 (default: the example's own)")
    p.add_argument("--noise-batches", type=int, default=16, metavar="K",
                   help="batches that measure the gradient's noise before the ramp, no update "
                        "(0: none; default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed for building the problem, 0 .. 2**32 - 1 (default 0)")
    p.add_argument("--device", default=None, help="torch device (default: the model's)")
    p.add_argument("--snapshot", choices=["cpu", "disk", "device"], default="cpu",
                   help="where the state snapshot is kept (default cpu)")
    p.add_argument("--snapshot-dir", default=None, help="directory for --snapshot disk")
    p.add_argument("--plot", metavar="FILE",
                   help="save the loss-rate plot (png, svg, pdf; an existing file is replaced)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the whole result as JSON to FILE, or to stdout without FILE")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run, option_names=OPTION_NAMES)


#: the library's parameter names, as this command's options (for its error messages)
OPTION_NAMES = {
    "num_steps": "--steps", "start_lr": "--start-lr", "end_lr": "--end-lr",
    "smoothing": "--smoothing", "diverge_threshold": "--diverge-threshold",
    "val_every": "--val-every", "val_batches": "--val-batches",
    "accumulation_steps": "--accumulation-steps", "budget_steps": "--budget-steps",
    "max_grad_norm": "--max-grad-norm", "noise_batches": "--noise-batches",
    "method": "--method",
}


def _recipe_step_options(problem, target: str, device_given: bool) -> dict:
    """The recipe's step_options (checked when the problem was built), its device checked as
    --device is (a recipe's 'cuda' on a machine without one failed deep inside the test),
    unless --device overrides it."""
    from lrkit.cli import check_device
    from lrkit.errors import LrkitError

    options = dict(problem.step_options or {})
    if options.get("device") is not None and not device_given:
        try:
            check_device(options["device"])
        except LrkitError as exc:
            raise LrkitError(f"{target}'s step_options: {str(exc).replace('--device', 'device')}"
                             ) from None
    return options


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad options before the problem is built or anything trains."""
    from lrkit import examples
    from lrkit.cli import (check_device, check_distinct_paths, check_output_path,
                           check_positive_int, check_target, recipe_path)
    from lrkit.errors import LrkitError

    check_target(args.target)
    if args.target is None and args.json not in (None, "-") and (
            ".py:" in args.json or args.json in examples.names()):
        # `--json wine-logreg`: the option took the target as its file, and the default example
        # ran in its place
        raise LrkitError(f"--json took {args.json!r} as the file to write, leaving no target to "
                         f"run: put the target first (lrkit find {args.json} --json), or write "
                         "--json=FILE")
    for option, value in (("--start-lr", args.start_lr), ("--end-lr", args.end_lr)):
        if not (math.isfinite(value) and value > 0):
            raise LrkitError(f"{option} must be a positive finite number, got {value:g}")
    if args.start_lr == args.end_lr:
        raise LrkitError(f"--start-lr and --end-lr are both {args.start_lr:g}; the range test "
                         "needs a range: give --start-lr smaller than --end-lr "
                         "(default 1e-7 .. 10)")
    if args.start_lr > args.end_lr:
        raise LrkitError(f"--start-lr ({args.start_lr:g}) must be smaller than --end-lr "
                         f"({args.end_lr:g}); swap them")
    check_positive_int(args.steps, "--steps", minimum=10, what=" (a curve needs points)")
    check_positive_int(args.val_every, "--val-every", what=" (evaluate every K steps)")
    check_positive_int(args.val_batches, "--val-batches")
    check_positive_int(args.accumulation_steps, "--accumulation-steps")
    check_positive_int(args.budget_steps, "--budget-steps", what=" (training steps)")
    check_device(args.device)
    if args.max_grad_norm is not None and not (math.isfinite(args.max_grad_norm)
                                               and args.max_grad_norm > 0):
        raise LrkitError(f"--max-grad-norm must be a positive number (the gradient norm to clip "
                         f"at), got {args.max_grad_norm:g}; leave it out for no clipping")
    if args.snapshot_dir is not None and args.snapshot != "disk":
        raise LrkitError(f"--snapshot-dir is where --snapshot disk writes its file, and the "
                         f"snapshot is kept in {args.snapshot} memory: add --snapshot disk, or "
                         "drop --snapshot-dir")
    check_output_path(args.plot, "--plot", plot=True)
    check_output_path(args.json, "--json")
    check_distinct_paths({"--plot": args.plot, "--json": args.json},
                         {"the recipe file": recipe_path(args.target)})


def curve_table(result, rows: int = 10) -> str:
    """A few evenly spaced points of the curve, so the shape is visible without a plot."""
    n = len(result.lrs)
    idx = sorted({round(i * (n - 1) / (rows - 1)) for i in range(rows)}) if n > 1 else list(range(n))
    lines = [f"{'rate':>10} {'loss':>10} {'smoothed':>10}"]
    for i in idx:
        loss, smooth = result.losses[i], result.smoothed[i]
        fmt = lambda v: "nan" if v is None else f"{v:.4g}"  # inf as inf  # noqa: E731
        lines.append(f"{result.lrs[i]:>10.3g} {fmt(loss):>10} {fmt(smooth):>10}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from lrkit import examples

    if args.list_examples:
        if args.target is not None:  # it lists and exits: the target would be ignored silently
            from lrkit.errors import LrkitError

            raise LrkitError(f"--list-examples lists the examples and exits; drop the target "
                             f"{args.target!r} (or drop --list-examples to run it)")
        if args.json is not None:  # a script reading --json gets JSON
            import json

            listing = [{"name": name, "description": examples.get(name).description}
                       for name in examples.names()]
            text = json.dumps(listing, indent=2)
            if args.json == "-":
                print(text)
            else:
                from lrkit.cli import check_output_path
                from lrkit.files import write_atomically

                check_output_path(args.json, "--json")
                write_atomically(args.json, text + "\n")
            return 0
        for name in examples.names():
            e = examples.get(name)
            print(f"{name:<18} {e.description}")
        return 0

    check_args(args)
    from lrkit.show.demo import check_seed

    check_seed(args.seed, "--seed")  # as lrkit demo: numpy seeds only 0 .. 2**32 - 1
    from lrkit.cli import recipe_output_to_stderr

    target = examples.DEFAULT if args.target is None else args.target
    with recipe_output_to_stderr(args.json):  # with --json -, stdout holds the JSON alone
        result = _find(args, target)
    from lrkit.adapters.distributed import is_main

    if not is_main():  # under torchrun every rank ran the test; rank 0 alone reports it
        return 0 if result.suggested_lr is not None else 1
    code = 0 if result.suggested_lr is not None else 1  # the same with or without --json
    from lrkit.cli import save_plot

    # the result first, the plot last: a plot that fails (pgf without TeX) loses nothing
    if args.json == "-":
        print(result.to_json())
    else:
        if args.json:
            result.to_json(args.json)
        print(f"lrkit find: {target}")
        print(result.summary())
        print()
        print(curve_table(result))
        if args.json:
            print(f"result written to {args.json}")
    if args.plot:
        save_plot(result, args.plot)
        if args.json != "-":
            print(f"plot written to {args.plot}")
    return code


def _find(args: argparse.Namespace, target: str) -> Any:
    """Load the recipe and run the range test with the options given (the recipe's own step
    options where none is given)."""
    import lrkit
    from lrkit.errors import LrkitError
    from lrkit.problem import load_problem

    problem = load_problem(target, seed=args.seed)
    if args.val_every is not None and problem.val_loader is None:
        raise LrkitError(f"--val-every needs validation data, and {target} gives no val_loader; "
                         "add one to the recipe (a 'val_loader' key, or the tuple's 5th item) "
                         "or drop --val-every")
    budget = problem.budget_steps if args.budget_steps is None else args.budget_steps
    # the recipe's own way of taking a step (Problem.step_options), as recommend and sweep use
    # it; the options given here win
    explicit = dict(
        val_loader=problem.val_loader if args.val_every is not None else None,
        val_every=args.val_every, val_batches=args.val_batches, start_lr=args.start_lr,
        end_lr=args.end_lr, num_steps=args.steps, ramp=args.ramp, smoothing=args.smoothing,
        diverge_threshold=args.diverge_threshold, method=args.method, budget_steps=budget,
        noise_batches=args.noise_batches, snapshot=args.snapshot, snapshot_dir=args.snapshot_dir,
        progress=False if args.no_progress else None)
    given = {"accumulation_steps": args.accumulation_steps, "amp": args.amp,
             "max_grad_norm": args.max_grad_norm, "device": args.device}
    recipe_options = _recipe_step_options(problem, target, args.device is not None)
    options = {**recipe_options, **{k: v for k, v in given.items() if v is not None}}
    from_recipe = {k for k in recipe_options if given.get(k) is None}
    # a bad value from the recipe is not a bad flag: its message names the recipe instead
    args.option_names = {k: v for k, v in OPTION_NAMES.items() if k not in from_recipe}
    try:
        result = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                               **problem.loss_arguments(), **explicit, **options)
    except LrkitError as exc:
        if any(key in str(exc) for key in from_recipe):
            raise LrkitError(f"{target}'s step_options: {exc}") from None
        raise
    if problem.val_loader is not None and args.val_every is None:
        # as find_lr says it for a val_loader without val_every (the CLI left it out silently)
        result.warnings.append(f"{target} gives a val_loader, and the curve is the training "
                               "loss: add --val-every K to evaluate the validation subset every "
                               "K steps and suggest from that curve")
    return result
