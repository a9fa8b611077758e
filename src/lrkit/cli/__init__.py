"""The ``lrkit`` command: one sub-command per part, each in its own module.

Each module in ``COMMANDS`` provides ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit code. Modules keep their
heavy imports (torch, matplotlib, optuna) inside that callable so that ``lrkit --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from lrkit.errors import LrkitError

#: sub-command modules, in the order ``lrkit --help`` lists them
COMMANDS = [
    "lrkit.cli.find",
    "lrkit.cli.recommend",
    "lrkit.cli.diagnose",
    "lrkit.cli.sweep",
    "lrkit.cli.schedule",
    "lrkit.cli.demo",
    "lrkit.cli.report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrkit",
        description="Find, schedule, sweep and diagnose learning rates for PyTorch models.",
    )
    from lrkit import __version__

    parser.add_argument("--version", action="version", version=f"lrkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LrkitError as exc:
        print(f"lrkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lrkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
