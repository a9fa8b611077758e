"""Package-level promises: a light import, every public name resolves, every command registers."""
import subprocess
import sys

import lrkit
from lrkit.cli import COMMANDS, build_parser


def test_import_lrkit_loads_no_heavy_dependency():
    code = ("import sys, lrkit; heavy = [m for m in ('torch', 'optuna', 'matplotlib', 'numpy', "
            "'sklearn', 'scipy', 'lightning', 'transformers', 'playwright') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_adapter_modules_import_no_framework():
    code = ("import sys, lrkit.adapters.lightning, lrkit.adapters.huggingface; print([m for m in "
            "('lightning', 'pytorch_lightning', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves():
    for name in lrkit.__all__:
        assert getattr(lrkit, name) is not None, name
    assert callable(lrkit.find_lr) and callable(lrkit.diagnose) and callable(lrkit.sweep)
    assert callable(lrkit.recommend)


def test_every_command_is_registered():
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    names = set(actions[0].choices)
    assert {m.rsplit(".", 1)[1] for m in COMMANDS} == names
    assert {"find", "schedule", "diagnose", "sweep", "recommend", "demo", "report"} <= names
