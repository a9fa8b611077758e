"""Suggestion messages, found in a new user's walk: a short curve that fell within its noise."""
import numpy as np

from lrkit.find.suggest import SHORT_CURVE, analyse


def test_a_short_curve_that_did_not_fall_clearly_asks_for_more_points():
    """A 10-point validation curve that fell from 2.0 to 0.7 within its noise read "the loss
    never fell ... widen the range"."""
    lrs = np.geomspace(1e-6, 1, 10)
    losses = [2.0, 0.9, 2.1, 0.8, 1.9, 0.7, 2.0, 0.75, 2.2, 3.0]
    analysis = analyse(lrs, losses)
    assert analysis.suggested_lr is None
    assert "too few to tell a fall from the noise" in analysis.unreadable
    assert "more steps" in analysis.unreadable


def test_a_long_curve_that_never_fell_still_says_so():
    lrs = np.geomspace(1e-6, 1, 3 * SHORT_CURVE)
    losses = np.linspace(2.0, 3.0, len(lrs))  # a loss that only rose
    analysis = analyse(lrs, losses)
    assert analysis.unreadable is not None and "never fell" in analysis.unreadable
