"""The scripts in examples/ run as their docstrings say, and print what they promise."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LRKIT = Path(sys.executable).with_name("lrkit")


def run(*args: str, cwd: Path) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_every_example_script_is_tested_here():
    source = Path(__file__).read_text()
    scripts = [p.name for p in EXAMPLES.glob("*.py")]
    assert len(scripts) >= 4 and [name for name in scripts if name not in source] == []


def test_my_recipe_from_the_command_line(tmp_path):
    out = run(str(LRKIT), "find", f"{EXAMPLES / 'my_recipe.py'}:make", "--json", "--no-progress",
              cwd=tmp_path)
    result = json.loads(out)
    assert 1e-4 < result["suggested_lr"] < 1.0 and result["settings"]["budget_steps"] == 600


def test_lightning_module_script_finds_then_trains(tmp_path):
    out = run(sys.executable, str(EXAMPLES / "lightning_module.py"), "--steps", "150",
              cwd=tmp_path)
    assert "Suggested learning rate" in out
    accuracy = float(out.rsplit("val_acc", 1)[1])
    assert accuracy > 0.85  # 150 steps at the suggested rate learn the digits


def test_lightning_module_from_the_command_line(tmp_path):
    out = run(str(LRKIT), "find", f"{EXAMPLES / 'lightning_module.py'}:setup", "--json",
              "--no-progress", cwd=tmp_path)
    assert json.loads(out)["suggested_lr"] > 0


@pytest.mark.parametrize("guarded", [True, False])
def test_guarded_training_script(tmp_path, guarded):
    extra = [] if guarded else ["--no-guard"]
    out = run(sys.executable, str(EXAMPLES / "guarded_training.py"), "--steps", "250", *extra,
              cwd=tmp_path)
    if guarded:
        assert "guard:" in out and "validation loss nan" not in out
        val = float(out.split("validation loss", 1)[1].split()[0])
        assert val < 0.5
    else:
        assert "verdict: diverged" in out
        assert "the run is lost" in out  # it went on for 250 steps of slow NaN arithmetic


def test_schedule_preview_script(tmp_path):
    out = run(sys.executable, str(EXAMPLES / "schedule_preview.py"), "--out", "s.png",
              cwd=tmp_path)
    assert "warmup ends, peak" in out and "[zero-start]" in out and len(out) < 3000
    assert (tmp_path / "s.png").stat().st_size > 5000
    assert "peak 0.003" in out


def test_huggingface_trainer_script(tmp_path):
    out = run(sys.executable, str(EXAMPLES / "huggingface_trainer.py"), "--epochs", "2",
              cwd=tmp_path)
    assert "Suggested learning rate" in out and "verdict:" in out
    (line,) = [line for line in out.splitlines() if line.startswith("trained at lr")]
    eval_loss = float(line.rsplit("eval_loss", 1)[1])
    assert eval_loss < 0.3
