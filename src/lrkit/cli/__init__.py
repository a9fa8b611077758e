"""The ``lrkit`` command: one sub-command per part, each in its own module.

Each module in ``COMMANDS`` provides ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit code. Modules keep their
heavy imports (torch, matplotlib, optuna) inside that callable so that ``lrkit --help`` stays fast.

Shared checks for the sub-commands live here, so that every command refuses bad input the same way
(one line naming the option, exit status 2) and before any training: :func:`check_output_path`
and :func:`check_output_dir` for files and directories the command will write,
:func:`check_device` for ``--device``, :func:`check_positive_int` for counts. A sub-command may also
set ``option_names`` (``{"python_name": "--cli-option"}``) with ``set_defaults``: the parameter
names in an error message from the library are shown as those options.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from lrkit.errors import LrkitError, USER_CODE, plot_formats

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

#: the exit status after the reader of the output went away (``lrkit ... | head``): 128 + SIGPIPE,
#: what the shell reports for a program that a closed pipe stopped
BROKEN_PIPE_EXIT = 141


# ------------------------------------------------------------------------------------------------
# shared checks
# ------------------------------------------------------------------------------------------------

def save_plot(result: Any, path: str) -> None:
    """``result.plot(path)`` after the result was written and shown: a plot that fails (a
    backend's own limits) is one line, and loses nothing."""
    from lrkit.errors import LrkitError

    try:
        result.plot(path)
    except LrkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - matplotlib's backends (pgf needs a TeX engine)
        raise LrkitError(f"the result was written and shown, but the plot could not be written to "
                         f"{path!r} "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())}); use .png, "
                         ".svg or .pdf") from None


def recipe_output_to_stderr(json_to: Any) -> contextlib.AbstractContextManager:
    """With ``--json -`` (the JSON on stdout), what a recipe prints while it is loaded and
    trained goes to stderr, so that stdout holds the JSON alone: Python's ``print`` and, through
    file descriptor 1, what its subprocesses, C libraries and forked workers write."""
    if json_to == "-":
        return _stdout_to_stderr()
    return contextlib.nullcontext()


@contextlib.contextmanager
def _stdout_to_stderr():
    if sys.stdout is not None:
        sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedding host): Python's own output only
        saved = None
    try:
        if saved is not None:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            sys.stderr.flush()
            os.dup2(saved, 1)
            os.close(saved)


def check_output_path(path: Any, option: str, *, plot: bool = False) -> None:
    """Refuse, before any work, an output FILE the command could not write at the end.

    ``path`` is the value of ``option`` (``"--json"``, ``"--plot"``, ...); None and ``"-"``
    (stdout) pass. The file's directory must exist and be a writable directory, the path must not
    be a directory, and with ``plot`` its extension must be one matplotlib saves (see
    :func:`plot_formats`). An existing file is overwritten, as the options' help says.
    """
    if path is None or path == "-":
        return
    text = str(path)
    if not text.strip():
        raise LrkitError(f"{option} needs a file name, got ''")
    target = Path(text)
    if target.is_dir():
        example = "plot.png" if plot else "result." + (option.lstrip("-") or "json")
        raise LrkitError(f"{option} {text!r} is a directory; give a file name inside it, e.g. "
                         f"{str(target / example)!r}")
    parent = target.parent
    if not parent.exists():
        raise LrkitError(f"{option} {text!r}: the directory {str(parent)!r} does not exist; "
                         "create it first or pick another path")
    if not parent.is_dir():
        raise LrkitError(f"{option} {text!r}: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK):
        raise LrkitError(f"{option} {text!r}: the directory {str(parent)!r} is not writable")
    if plot:
        formats = plot_formats()
        ext = target.suffix.lower().lstrip(".")
        if not ext:
            raise LrkitError(f"{option} {text!r} has no extension; end the name with one of "
                             f"{', '.join('.' + f for f in formats)} (e.g. .png)")
        if ext not in formats:
            raise LrkitError(f"{option} {text!r}: matplotlib cannot save .{ext} files; use one of "
                             f"{', '.join('.' + f for f in formats)}")


def check_distinct_paths(outputs: dict[str, Any], inputs: dict[str, Any]) -> None:
    """Refuse an output file that is one of the command's inputs or another output: ``--json
    recipe.py`` overwrote the recipe with JSON, ``--json s.journal`` the sweep's stored trials,
    and ``--json x.png --plot x.png`` lost the JSON, each with exit status 0. ``outputs`` and
    ``inputs`` map an option (or "the recipe file") to its path; None and ``"-"`` are left out."""
    def key(path: Any) -> str | None:
        text = "" if path is None else str(path)
        if text.lower().startswith("sqlite:///"):  # a database file (--storage sqlite:///x.db)
            text = text[len("sqlite:///"):].split("?", 1)[0]
        if text in ("-", "") or "://" in text:
            return None
        where = os.path.realpath(text)
        if os.path.exists(where) and not os.path.isfile(where):
            return None  # /dev/null, /dev/stdout: several outputs may go there
        return where

    seen: dict[str, str] = {}
    for option, path in inputs.items():
        where = key(path)
        if where is not None:
            seen.setdefault(where, option)
    for option, path in outputs.items():
        where = key(path)
        if where is None:
            continue
        if where in seen:
            other = seen[where]
            kind = "output" if other in outputs else "input"
            raise LrkitError(f"{option} {str(path)!r} is also {other}, an {kind} of this command: "
                             f"writing it would {'destroy' if kind == 'input' else 'overwrite'} "
                             f"that; give {option} another file name")
        seen[where] = option


def recipe_path(target: Any) -> str | None:
    """The file of a ``path/to/file.py:function`` target (None for an example's name)."""
    if not isinstance(target, str) or ".py:" not in target:
        return None
    return target.rpartition(":")[0]


def check_output_dir(path: Any, option: str = "--out") -> None:
    """Refuse, before any work, an output DIRECTORY the command could not write at the end.

    A missing directory is created by the command (with its missing parents), and files the
    command writes into an existing one are replaced; an existing file, or a path below a file,
    is refused.
    """
    if path is None:
        return
    text = str(path)
    if not text.strip():
        raise LrkitError(f"{option} needs a directory name, got ''")
    target = Path(text)
    if target.exists() and not target.is_dir():
        raise LrkitError(f"{option} {text!r} is an existing file, not a directory; give a "
                         "directory (created when missing) or remove the file")
    ancestor = target
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise LrkitError(f"{option} {text!r}: {str(ancestor)!r} is a file, not a directory")
    if ancestor.exists() and not os.access(ancestor, os.W_OK):
        raise LrkitError(f"{option} {text!r}: the directory {str(ancestor)!r} is not writable")


def check_device(device: Any, option: str = "--device") -> None:
    """Refuse a torch device that does not parse, or that this machine or torch build lacks
    (:func:`lrkit.adapters.torch.check_device`, named as the CLI option)."""
    from lrkit.adapters.torch import check_device as check

    check(device, option)


def check_positive_int(value: Any, option: str, *, minimum: int = 1, what: str = "") -> None:
    """Refuse a count below ``minimum`` (None passes: the option was not given)."""
    if value is None:
        return
    if value < minimum:
        raise LrkitError(f"{option} must be an integer >= {minimum}{what}, got {value}")


def check_target(target: Any) -> None:
    """Refuse an empty TARGET (``lrkit find ""``) instead of falling back to the default."""
    if target is not None and not str(target).strip():
        raise LrkitError("TARGET is empty: give an example name (see 'lrkit find "
                         "--list-examples') or path/to/file.py:function")


def _option_message(message: str, names: Mapping[str, str]) -> str:
    """``message`` with the library's parameter names replaced by the command's options."""
    for name, option in names.items():
        # not a key quoted or listed (a recipe dict's own keys: 'budget_steps', {'amp': ..},
        # "its keys: accumulation_steps, amp"), which is what the recipe must say
        message = re.sub(rf"(?<![\w\-.'\"{{]){re.escape(name)}(?![\w'\"])", option, message)
    # a message for both audiences ("--continue / continue_study=True", "points_per_decade
    # (--points-per-decade)") names the option once
    return re.sub(r"(--[\w-]+) (?:/ \1(?:=[^\s,;.)]*)?|\(\1\))", r"\1", message)


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line too, as every other bad input: the error and where
    to look (argparse prints the whole usage first; the subcommands' parsers inherit this)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lrkit",
        description="Find, schedule, sweep and diagnose learning rates for PyTorch models.",
    )
    from lrkit import __version__

    parser.add_argument("--version", action="version", version=f"lrkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _stdout_gone() -> int:
    """The reader of stdout went away (``lrkit ... | head``): stop quietly.

    Python's documented way: point stdout at devnull so that the flush at exit cannot raise
    again, and exit without a traceback.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no real file behind stdout
        pass
    return BROKEN_PIPE_EXIT


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command they were given to, not by "lrkit"
        where = f"lrkit {args.command}" if getattr(args, "command", None) else "lrkit"
        parser.exit(2, f"{where}: error: unrecognized arguments: {' '.join(extra)} "
                       f"(see {where} --help)\n")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except LrkitError as exc:
        names = getattr(args, "option_names", None) or {}
        message = str(exc)
        quoted = getattr(exc, "quoted", None)  # the user's own words, kept as they are
        if quoted and quoted in message:
            head, _, tail = message.partition(quoted)
            message = _option_message(head, names) + quoted + _option_message(tail, names)
        else:
            message = _option_message(message, names)
        print(f"lrkit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lrkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the user's model, loss or data raised it: one line, as bad input
        where = getattr(exc, USER_CODE, None)
        if where is None and isinstance(exc, OSError) and exc.filename is not None:
            # a file the command reads or writes (a directory where its output file goes, a
            # folder it cannot create): the paths given are to fix, not lrkit
            print(f"lrkit {args.command}: error: cannot read or write a file: {exc}; check the "
                  "paths given (--out, --plot, --json, the input files)", file=sys.stderr)
            return 2
        if where is None:
            raise  # lrkit's own: the traceback is the report
        text = " ".join(str(exc).split()) or "(no message)"
        print(f"lrkit {args.command}: error: {where} raised {type(exc).__name__}: {text}; the "
              "error is in the recipe's model, data or loss (a dtype, device or shape that does "
              "not fit, most often); to see where, build the recipe in Python and run one batch "
              "through its model and loss", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
