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

    A symbolic link is written through, as ``open()`` does. Written in place, as ``open()``
    writes: a path that is not a regular file (``/dev/stdout``, a named pipe), a file with other
    hard links (a rename would part them), a read-only file (refused, as ``open()`` refuses it)
    and a file whose folder takes no temporary file or no rename over it (another user's file in
    the sticky /tmp). The file keeps its permissions; a new one gets those a plain ``open()``
    gives (the umask's)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:  # a new file (other errors, a symlink loop: as open() raises them)
        status = None
    if status is not None and (not stat.S_ISREG(status.st_mode) or status.st_nlink > 1
                               or not os.access(path, os.W_OK)):
        # as given: /dev/stdout on a pipe resolves to "/proc/<pid>/fd/pipe:[N]", no real path
        _write_in_place(Path(path), text)
        return
    mode = None if status is None else status.st_mode
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
        try:
            os.replace(name, target)
        except PermissionError:  # the sticky /tmp: another user's file, which we may write
            Path(name).unlink(missing_ok=True)
            _write_in_place(target, text)
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
