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
import errno
import importlib
import os
import re
import signal
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

#: the exit status after Ctrl-C (128 + SIGINT) and after a SIGTERM (128 + SIGTERM: a scheduler's
#: or ``timeout``'s kill), each with one line and the same cleanup
INTERRUPTED_EXIT = 130
TERMINATED_EXIT = 143


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
            if sys.stderr is not None:
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
    if target.is_file() and not os.access(target, os.W_OK):
        # (written in place, as open() writes it: refused at the end, the work lost)
        raise LrkitError(f"{option} {text!r} is read-only; make it writable or pick another "
                         "path")
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


class Terminated(KeyboardInterrupt):
    """A SIGTERM (or a SIGHUP: the terminal closed, an SSH session dropped), raised as Ctrl-C's
    KeyboardInterrupt is, so that the same cleanup runs (a ``--snapshot disk`` file removed, a
    sweep's running trial told to its study as interrupted)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = signum


#: the signals that stop a command as Ctrl-C does (SIGHUP only where nothing handles or ignores
#: it: nohup)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


@contextlib.contextmanager
def _sigterm_as_interrupt(state: dict):
    """While the command runs, SIGTERM and SIGHUP raise :class:`Terminated` in this process; a
    process forked from it (a sweep worker, a DataLoader worker) dies of them as before.
    ``state["replaced"]`` says afterwards whether the run put a SIGTERM handler of its own in its
    place (``ray.init``'s, which exits with ``sys.exit(15)``)."""
    pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated(signum)

    previous = {}
    try:
        for signum in STOP_SIGNALS:
            if signum != signal.SIGTERM and signal.getsignal(signum) is not signal.SIG_DFL:
                # nohup's SIG_IGN (the command goes on after a hangup, as it asked), or a
                # handler of the program that calls main(): left as they are
                continue
            previous[signum] = signal.signal(signum, handler)
    except (ValueError, OSError):  # not the main thread: as it was
        yield
        return
    try:
        yield
    finally:
        state["replaced"] = signal.getsignal(signal.SIGTERM) is not handler
        for signum, before in previous.items():
            signal.signal(signum, before if before is not None else signal.SIG_DFL)


def _standard_streams() -> dict:
    """File descriptors 0, 1 and 2 open, and sys.stdout and sys.stderr not None.

    A closed one (``>&-``, ``2>&-``, a daemon) made sys.stdout or sys.stderr None, and every
    command crashed on it (or wrote its messages into stdout, the JSON with them); the next file
    opened also took its number, where a subprocess's output, or --json -'s redirection, would
    then go. Each closed one becomes os.devnull. Output the real stdout and stderr cannot encode
    (a path or a recipe's name in ASCII or latin-1 output) is written escaped (as Python writes
    stderr), not a UnicodeEncodeError after the work was done.

    Returns what it changed in this process's Python objects, which :func:`main` puts back when
    it returns (main() called from a script or a test leaves them as they were)."""
    changed: dict = {"streams": {}, "errors": []}
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, mode)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
            except OSError:  # pragma: no cover - no /dev/null
                pass
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))
            changed["streams"][name] = getattr(sys, name)
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is not None and getattr(stream, "errors", None) == "strict":
            with contextlib.suppress(Exception):
                stream.reconfigure(errors="backslashreplace")
                changed["errors"].append(stream)
    return changed


def _restore_streams(changed: dict) -> None:
    """Undo :func:`_standard_streams` in Python's objects (the file descriptors opened on
    os.devnull stay: nothing else can use those numbers)."""
    for stream in changed["errors"]:
        with contextlib.suppress(Exception):
            stream.reconfigure(errors="strict")
    for name, null in changed["streams"].items():
        if getattr(sys, name) is null:
            setattr(sys, name, None)
            with contextlib.suppress(Exception):
                null.close()


def _say(text: str) -> None:
    """One line on stderr; nothing when stderr is gone (``2>&1 | head``): the exit status says it."""
    try:
        print(text, file=sys.stderr)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


#: the errors of a write to a full disk (or over a quota, or a size limit)
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _stdout_failed() -> None:
    """When writing stdout fails too (a full disk behind ``> file``), stdout goes to os.devnull,
    so that the flush at exit does not print the same error again as a traceback."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _stdout_gone()


def main(argv: Sequence[str] | None = None) -> int:
    changed = _standard_streams()
    try:
        return _main(argv)
    finally:
        _restore_streams(changed)


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
    except KeyboardInterrupt:
        _say("lrkit: interrupted")
        return INTERRUPTED_EXIT
    if extra:  # named by the command they were given to, not by "lrkit"
        where = f"lrkit {args.command}" if getattr(args, "command", None) else "lrkit"
        parser.exit(2, f"{where}: error: unrecognized arguments: {' '.join(extra)} "
                       f"(see {where} --help)\n")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    signals: dict = {}
    try:
        with _sigterm_as_interrupt(signals):
            code = int(args.func(args) or 0)
            sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except SystemExit as exc:  # lrkit's own code never exits: the recipe (or its model) did
        if signals.get("replaced") and exc.code == signal.SIGTERM:  # Ray's SIGTERM handler
            _say(f"lrkit {args.command}: terminated (SIGTERM)")
            return TERMINATED_EXIT
        _say(f"lrkit {args.command}: error: the recipe called sys.exit({exc.code!r}) while the "
             "command ran it (building the problem, or in its model, data or loss), and the "
             "command stopped without a result; a recipe returns its problem (and raises an "
             "exception to refuse)")
        return 2
    except LrkitError as exc:
        names = getattr(args, "option_names", None) or {}
        message = str(exc)
        quoted = getattr(exc, "quoted", None)  # the user's own words, kept as they are
        if quoted and quoted in message:
            head, _, tail = message.partition(quoted)
            message = _option_message(head, names) + quoted + _option_message(tail, names)
        else:
            message = _option_message(message, names)
        _say(f"lrkit {args.command}: error: {message}")
        return 2
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            _say(f"lrkit {args.command}: terminated ({signal.Signals(exc.signum).name})")
            return 128 + exc.signum  # TERMINATED_EXIT for SIGTERM
        _say(f"lrkit {args.command}: interrupted")
        return INTERRUPTED_EXIT
    except Exception as exc:  # the user's model, loss or data raised it: one line, as bad input
        where = getattr(exc, USER_CODE, None)
        if where is None and isinstance(exc, OSError) and exc.filename is not None:
            # a file the command reads or writes (a directory where its output file goes, a
            # folder it cannot create): the paths given are to fix, not lrkit
            _say(f"lrkit {args.command}: error: cannot read or write a file: {exc}; check the "
                 "paths given (--out, --plot, --json, the input files)")
            return 2
        if where is None and isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            # stdout redirected to a full disk (> out.json), or a store on one: not lrkit's own
            _stdout_failed()
            _say(f"lrkit {args.command}: error: cannot write the output: "
                 f"{exc.strerror or exc}; free some space (on the disk that stdout or the "
                 "command's files go to) and run it again")
            return 2
        if where is None:
            raise  # lrkit's own: the traceback is the report
        text = " ".join(str(exc).split()) or "(no message)"
        _say(f"lrkit {args.command}: error: {where} raised {type(exc).__name__}: {text}; the "
             "error is in the recipe's model, data or loss (a dtype, device or shape that does "
             "not fit, most often); to see where, build the recipe in Python and run one batch "
             "through its model and loss")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
