"""Progress bars on anything long (tqdm), silent when asked or when not attached to a terminal."""
from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int, desc: str, enabled: bool | None = True, **options: Any):
    """A tqdm bar; ``enabled=None`` shows it only on an interactive terminal."""
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True,
                **options)
