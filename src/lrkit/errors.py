"""The one exception family lrkit raises for bad input, so callers and the CLI can tell it apart,
and the few checks of plain values that every part shares."""

from __future__ import annotations

import math
import numbers
import operator


class LrkitError(ValueError):
    """Bad input or an impossible request; the message names the bad value and what to do."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`LrkitError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise LrkitError(message)


def is_real(value: object) -> bool:
    """A real number, numpy's scalars included, and not a bool (``True`` is not a rate)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def plain_int(value: object) -> object:
    """``value`` as a Python int when it is an integer of another kind (numpy's ``np.int64``
    from an array, a 0-dim integer tensor), else unchanged: the checks that follow then see
    the number the user meant, and a bool or a float is still refused by them."""
    if isinstance(value, numbers.Integral):  # bool and int stay as they are
        return value if isinstance(value, int) else int(value)
    if getattr(value, "shape", ()) != ():  # an array or tensor of several numbers
        return value
    if "bool" in str(getattr(value, "dtype", "")):  # torch.tensor(True), np.bool_: no count
        return value
    try:
        return operator.index(value)  # a 0-dim integer tensor; floats and strings refuse
    except TypeError:
        return value


def one_number(value: object) -> float | None:
    """``value`` as a float when it is one number: an int or float, a numpy scalar, or a tensor or
    array of one element (what a training step returns); ``None`` otherwise (a bool is no loss,
    nor are a string, ``None`` or several numbers). NaN and inf are numbers."""
    if isinstance(value, (str, bytes, bool)) or value is None:
        return None
    item = getattr(value, "item", None)
    if callable(item):  # a tensor or numpy array of one element, a numpy scalar
        try:
            value = item()
        except (TypeError, ValueError, RuntimeError):
            return None
        if isinstance(value, bool):
            return None
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:  # an integer past float's range (10**400): a loss as large as any
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]
    except (TypeError, ValueError):
        return None


def require_folder(path: object, what: str) -> None:
    """Refuse ``path`` in a missing directory before any work: the OS error that writing there
    raises names no directory, and comes after the work is done. A file object (``io.BytesIO``,
    which matplotlib's ``savefig`` writes to) has no folder to check."""
    import os
    from pathlib import Path

    if not isinstance(path, (str, os.PathLike)):
        return
    require(str(path).strip() != "" and not Path(path).is_dir(),
            f"cannot save {what} to {str(path)!r}: give a file name (a path that is not a "
            "directory)")
    folder = Path(path).parent
    require(folder.is_dir(), f"cannot save {what} to {str(path)!r}: {str(folder)!r} is not an "
                             "existing directory; create it first or pick another path")


def plot_formats() -> list[str]:
    """The file extensions matplotlib can save a figure as here (png, svg, pdf, ...): ``.pgf``
    only with its TeX engine installed (without, it failed after the work was done)."""
    import shutil

    import matplotlib
    from matplotlib.backend_bases import FigureCanvasBase

    formats = set(FigureCanvasBase.get_supported_filetypes())
    if not shutil.which(str(matplotlib.rcParams.get("pgf.texsystem", "xelatex"))):
        formats.discard("pgf")
    return sorted(formats)


def require_plot_path(path: object) -> None:
    """:func:`require_folder` for a plot, and an image format matplotlib writes: it saves a name
    without a suffix as name.png, and refused '.txt' after the figure was drawn, from deep
    inside."""
    import os
    from pathlib import Path

    require_folder(path, "the plot")
    if isinstance(path, (str, os.PathLike)):
        formats = plot_formats()
        suffix = Path(path).suffix.lower().lstrip(".")
        require(suffix in formats,
                f"cannot save the plot to {str(path)!r}: "
                + (f"'.{suffix}' is not an image format" + (" (.pgf needs a TeX engine, not "
                   "installed here)" if suffix == "pgf" else "") if suffix
                   else "it has no file extension")
                + f"; use one of {', '.join('.' + f for f in sorted(formats))}")


#: the attribute that names, on an exception the user's own code raised inside lrkit, which part
#: of a training step raised it (the command line shows it as one line; Python keeps the
#: exception as it was, with its traceback)
USER_CODE = "lrkit_user_code"


def blame_user_code(exc: BaseException, where: str) -> None:
    """Mark ``exc``, raised by the user's model, loss or data during ``where``, as theirs (an
    :class:`LrkitError` is lrkit's own message already)."""
    if isinstance(exc, Exception) and not isinstance(exc, LrkitError) \
            and getattr(exc, USER_CODE, None) is None:
        try:
            setattr(exc, USER_CODE, where)
        except (AttributeError, TypeError):  # an exception type that takes no attributes
            pass
