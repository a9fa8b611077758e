"""Progress bars on anything long (tqdm), silent when asked or when not attached to a terminal."""
from __future__ import annotations

import sys
from typing import Any

from lrkit.errors import LrkitError


def show_progress(enabled: Any) -> bool:
    """Whether to show a bar: ``True`` or ``False`` as given, ``None`` only on an interactive
    terminal. No stderr (pythonw, a service) or one without ``isatty`` (a logging shim) is no
    terminal: the default crashed there with an AttributeError. A string such as ``"false"``
    is refused (it was true)."""
    if enabled is None:
        try:
            return bool(sys.stderr is not None and sys.stderr.isatty())
        except (AttributeError, TypeError, ValueError, OSError):  # no isatty, a closed stream
            return False
    if isinstance(enabled, int) and not isinstance(enabled, bool) and enabled in (0, 1):
        return bool(enabled)  # (as recommend's confirm takes 0 and 1)
    if not (isinstance(enabled, bool) or type(enabled).__name__ in ("bool_", "bool")):
        raise LrkitError(f"progress must be True, False or None (a bar only on a terminal), "
                         f"got {enabled!r}")
    return bool(enabled)


def progress_bar(total: int, desc: str, enabled: bool | None = True, **options: Any):
    """A tqdm bar; ``enabled=None`` shows it only on an interactive terminal."""
    from tqdm.auto import tqdm

    enabled = show_progress(enabled)
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True,
                **options)
