"""``lrkit recommend``: a complete training recipe (optimizer, peak rate, warmup, schedule) for a
built-in example or a user's ``file.py:function``."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "recommend", help="recommend a training recipe: optimizer, peak rate, warmup, schedule",
        description="Measure the model (range test and a few short confirmation runs, at most "
                    "~20% of one training run when it is long enough; the range test alone takes "
                    "about 100 steps, and the recipe says what it cost) and recommend a complete "
                    "recipe for a planned "
                    "training length. TARGET is a built-in example name or path/to/file.py:function "
                    "returning the model, optimizer, data and loss.")
    p.add_argument("target", nargs="?", default=None,
                   help="example name or file.py:function (default: the default example)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None,
                        help="planned training length in optimizer steps (default: the target's own "
                             "budget_steps, as a built-in example has; needed, or --epochs, "
                             "otherwise)")
    length.add_argument("--epochs", type=float, default=None,
                        help="planned training length in epochs (passes over the train loader)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for building the problem and the measuring runs, 0 .. 2**32 - 1 "
                        "(default 0)")
    p.add_argument("--no-confirm", action="store_true",
                   help="skip the short confirmation runs (range test only)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="also rescale the recipe to batch size B (linear rule for SGD, "
                        "square root for adaptive optimizers)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the recipe as JSON to FILE, or to stdout without FILE")
    p.add_argument("--yaml", metavar="FILE", help="write the recipe as YAML to FILE")
    p.add_argument("--code", action="store_true",
                   help="print plain PyTorch code that builds the optimizer and schedule")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run, option_names=OPTION_NAMES)


#: the library's wording of its parameters, as this command's options (for its error messages)
OPTION_NAMES = {"steps=N": "--steps N", "epochs=E": "--epochs E", "steps=": "--steps",
                "epochs=": "--epochs", "batch_size": "--batch-size"}


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad options before the problem is built or anything trains."""
    import math

    from lrkit.cli import (check_distinct_paths, check_output_path, check_positive_int,
                           check_target, recipe_path)
    from lrkit.errors import LrkitError
    from lrkit.show.demo import check_seed

    check_target(args.target)
    check_seed(args.seed, "--seed")  # the range lrkit demo takes (numpy's generators need it)
    check_positive_int(args.steps, "--steps", what=" (optimizer steps)")
    if args.epochs is not None and not (math.isfinite(args.epochs) and args.epochs > 0):
        raise LrkitError(f"--epochs must be a positive number, got {args.epochs:g}")
    check_positive_int(args.batch_size, "--batch-size", what=" (samples per batch)")
    check_output_path(args.json, "--json")
    check_output_path(args.yaml, "--yaml")
    if args.yaml:  # before measuring, not after (about 5 s lost on the built-in example)
        try:
            import yaml  # noqa: F401
        except ImportError:
            raise LrkitError("--yaml needs PyYAML: pip install 'lrkit[yaml]' (or use --json)"
                             ) from None
    check_distinct_paths({"--json": args.json, "--yaml": args.yaml},
                         {"the recipe file": recipe_path(args.target)})


def run(args: argparse.Namespace) -> int:
    from lrkit import examples
    from lrkit.recommend import recommend

    check_args(args)
    from lrkit.cli import recipe_output_to_stderr

    target = examples.DEFAULT if args.target is None else args.target
    # with --json - or --code, stdout holds the JSON or the code alone (redirected into a file,
    # a recipe's own prints made the pasted code a SyntaxError)
    quiet_stdout = args.json == "-" or bool(getattr(args, "code", False))
    with recipe_output_to_stderr("-" if quiet_stdout else args.json):
        recipe = recommend(target, steps=args.steps, epochs=args.epochs, seed=args.seed,
                           confirm=not args.no_confirm,
                           progress=False if args.no_progress or quiet_stdout else None)
    from lrkit.adapters.distributed import is_main

    if not is_main():  # under torchrun every rank tuned alike; rank 0 alone reports
        return 0
    if args.batch_size is not None:
        from lrkit.errors import LrkitError

        try:
            recipe = recipe.for_batch_size(args.batch_size)
        except LrkitError as exc:
            if "not a training run" in str(exc):  # the library's advice names keep='steps'
                raise LrkitError(f"--batch-size {args.batch_size}: "
                                 + str(exc).split(": not a training run")[0]
                                 + ": not a training run; use a smaller --batch-size or more "
                                 "--steps") from None
            if "old=" not in str(exc):
                raise
            raise LrkitError(f"--batch-size {args.batch_size}: the recipe cannot be rescaled, "
                             "because the batch size it was measured at is unknown (the train "
                             "loader has no batch size)") from None
    written = []
    if args.yaml:
        recipe.to_yaml(args.yaml)
        written.append(f"recipe written to {args.yaml}")
    if args.json == "-":
        print(recipe.to_json())
        if args.code:
            print(recipe.to_code(), file=sys.stderr)
        for line in written:  # stdout holds the JSON alone
            print(line, file=sys.stderr)
        return 0
    if args.json:
        recipe.to_json(args.json)
        written.append(f"recipe written to {args.json}")
    if args.code:
        print(recipe.to_code())
        for line in written:  # stdout holds the code alone, to paste
            print(line, file=sys.stderr)
        return 0
    print(recipe.summary())
    for line in written:
        print(line)
    return 0
