"""Write a result file whole or not at all: a run killed (or a disk filled) while it writes its
JSON, CSV, recipe or report leaves the last good file, not half of a new one."""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it, as UTF-8 with what
    cannot be encoded replaced (a file name that is not UTF-8, kept by Python as lone
    surrogates, raised UnicodeEncodeError half-way and left an empty file).

    A symbolic link is written through, as ``open()`` does; a path that is not a regular file
    (``/dev/stdout``, a named pipe) and a folder where no temporary file can be made (the file
    itself writable) are written in place. The file keeps its permissions; a new one gets those
    a plain ``open()`` gives (the umask's)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        # as given: /dev/stdout on a pipe resolves to "/proc/<pid>/fd/pipe:[N]", no real path
        _write_in_place(Path(path), text)
        return
    target = Path(os.path.realpath(path))
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except PermissionError:
        _write_in_place(target, text)
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
            # mkstemp's file is private (0600): give it the mode the file had, or the one a plain
            # open() gives, so that a web server or another user can read it as before (where the
            # file system refuses modes, as it is)
            with contextlib.suppress(OSError, AttributeError):
                os.fchmod(handle.fileno(),
                          stat.S_IMODE(mode) if mode is not None else 0o666 & ~_umask())
            handle.write(text)
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _write_in_place(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", errors="replace") as handle:
        handle.write(text)


def _umask() -> int:
    """The process's umask (read from /proc where it is shown; else set and put back)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
