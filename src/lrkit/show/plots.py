"""Plots built on matplotlib's object API (no pyplot, no display needed: pytorch-lr-finder #53)."""
from __future__ import annotations

import numpy as np


def new_figure(width: float = 7.0, height: float = 4.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot(1, 1, 1)


def finder_figure(result, ax=None, show_methods: bool = True):
    """Loss against rate (log axis) with raw points, the smoothed curve, the good range shaded,
    each method's suggestion as a tick and the chosen one as a marker."""
    if ax is None:
        fig, ax = new_figure()
    else:
        fig = ax.figure
    lrs = np.asarray(result.lrs, dtype=float)
    raw = np.asarray(result.losses, dtype=float)
    smooth = np.asarray(result.smoothed, dtype=float)
    finite = np.isfinite(raw)
    ax.plot(lrs[finite], raw[finite], ".", color="0.7", markersize=3, label="loss")
    ax.plot(lrs[np.isfinite(smooth)], smooth[np.isfinite(smooth)], color="C0", label="smoothed loss")
    if result.val_steps:
        ax.plot([result.lrs[i] for i in result.val_steps], result.val_losses, "s-", color="C2",
                markersize=3, label="validation loss")
    if result.good_range:
        ax.axvspan(*result.good_range, color="C2", alpha=0.12, label="good range")
    if show_methods:
        for i, (name, lr) in enumerate(result.suggestions.items()):
            if lr is not None and name != result.method:
                ax.axvline(lr, color=f"C{3 + i}", linestyle=":", linewidth=1, label=f"{name}: {lr:.2g}")
    if result.suggested_lr is not None:
        y = np.interp(np.log(result.suggested_lr), np.log(lrs[finite]), smooth[finite]) if finite.any() else 0
        ax.plot([result.suggested_lr], [y], "o", color="C1", markersize=9, zorder=5,
                label=f"suggested: {result.suggested_lr:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("Learning-rate range test")
    if finite.any():
        lo = np.nanmin(smooth[finite])
        hi = smooth[finite][0]
        span = max(hi - lo, 1e-12)
        ax.set_ylim(lo - 0.2 * span, hi + 0.6 * span)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
