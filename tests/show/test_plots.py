"""The plots' axes (lrkit/show/plots.py): what a reader sees on them."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("low, high, minor_labelled", [(3e-3, 6e-2, True), (1e-7, 10.0, False)])
def test_rate_axes_have_compact_labels_that_do_not_overlap(low, high, minor_labelled):
    # matplotlib's own minor labels on a 1.3-decade axis, "3x10^-3" next to "4x10^-3", overlapped
    from lrkit.show.plots import log_rate_axis, new_figure

    fig, ax = new_figure()
    log_rate_axis(ax)
    ax.plot([low, high], [1.0, 2.0])
    ax.set_xlim(low, high)
    fig.canvas.draw()
    major = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    minor = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert major and all("times" not in label and "^" not in label for label in major + minor)
    assert bool(minor) == minor_labelled
    if minor_labelled:
        assert "0.005" in minor and "0.02" in minor and "0.01" in major
    boxes = sorted((t.get_window_extent() for t in ax.get_xticklabels() + ax.get_xticklabels(
        minor=True) if t.get_text()), key=lambda box: box.x0)
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:]))  # no two labels overlap
