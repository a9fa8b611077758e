"""Shared helpers of the sweep tests."""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPES = HERE / "recipes.py"
REPO = HERE.parents[1]


def lrkit_command(*args: str) -> list[str]:
    """The ``lrkit`` CLI as a subprocess command line (the same interpreter as the tests)."""
    return [sys.executable, "-m", "lrkit", *[str(a) for a in args]]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env.setdefault("MPLBACKEND", "Agg")
    env.update(extra)
    return env
