import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RECIPES = HERE / "recipes.py"
REPO = HERE.parents[1]


@pytest.fixture
def journal(tmp_path):
    return str(tmp_path / "sweeps.journal")


def lrkit_command(*args: str) -> list[str]:
    """The ``lrkit`` CLI as a subprocess command line (the same interpreter as the tests)."""
    return [sys.executable, "-m", "lrkit", *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env.setdefault("MPLBACKEND", "Agg")
    env.update(extra)
    return env
