"""Shared by the report, browser and demo tests: one quick demo per test session."""
from __future__ import annotations

import atexit
import functools
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("LRKIT_CHROMIUM", "/usr/bin/chromium")
#: timings, not results: left out when two runs are compared
TIMING_KEYS = {"seconds", "elapsed", "elapsed_s", "wall_s", "time_s"}


@functools.lru_cache(maxsize=None)
def quick_demo_dir() -> Path:
    """``lrkit demo --quick`` once per session, in a private directory (removed at exit)."""
    from lrkit.cli import main

    root = tempfile.mkdtemp(prefix="lrkit-demo-test-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    out = Path(root) / "demo"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


def quick_summary() -> dict:
    return json.loads((quick_demo_dir() / "summary.json").read_text())


def strip_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [strip_timings(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def differences(a: Any, b: Any, where: str = "$") -> list[str]:
    """Paths where two JSON values differ (for a readable failure)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in one" for k in set(a) ^ set(b)]
        for k in set(a) & set(b):
            out += differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"[:300]]
