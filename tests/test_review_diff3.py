"""Review of the changes since 3ae6569: each test failed before its fix."""
import math

import numpy as np
import pytest

from lrkit import diagnose
from lrkit.errors import LrkitError


def test_a_blow_up_after_a_flat_noisy_stretch_starts_where_the_loss_turned_up():
    """A loss flat (with batch noise) for 800 steps of a rising warmup, then growing: the lowest
    smoothed point before the climb fell anywhere in the flat stretch (steps 216-690), and the
    advice was cut from the rate there."""
    n, onset = 1000, 800
    lrs = np.linspace(0.0, 1.0, n)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        losses = [2.3 * math.exp(0.05 * rng.standard_normal())
                  * (1.0 if i < onset else math.exp((i - onset) / 20)) for i in range(n)]
        d = diagnose(losses, lrs=lrs)
        assert d.verdict == "diverged"
        turn = d.evidence["blowup_at"]
        assert onset - 10 <= turn <= onset + 15, turn
        assert d.suggested_lr == pytest.approx(0.1 * lrs[turn])
        assert f"trouble started at step {turn}," in d.explanation
