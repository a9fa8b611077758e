"""Plots built on matplotlib's object API (no pyplot, no display needed: pytorch-lr-finder #53)."""
from __future__ import annotations

import warnings

import numpy as np


def plain(text) -> str:
    """Text from a result as matplotlib should show it: a ``$`` is a dollar sign, not the start
    of mathtext, which fails to draw on names such as ``$x^$`` or ``$\\foo$``."""
    return str(text).replace("$", r"\$")


#: a curve of more points than this is drawn from fewer (:func:`thin`): a saved SVG or PDF holds
#: every point drawn (a 100,000-step range test's SVG was 11 MB, 107 MB at 1e6 steps)
MAX_PLOTTED = 4000


def thin(x, y, max_points: int = MAX_PLOTTED) -> tuple[np.ndarray, np.ndarray]:
    """The points of a curve to draw: all of them up to ``max_points``, else, in their order,
    the first, the last, and the lowest and the highest point of each of
    ``(max_points - 2) // 2`` runs of consecutive points, so that the drawn curve spans the same
    range and keeps its spikes. ``y`` is finite (the callers draw the finite points)."""
    x, y = np.asarray(x), np.asarray(y, dtype=float)
    n = len(y)
    if n <= max_points:
        return x, y
    starts = np.linspace(0, n, (max_points - 2) // 2 + 1).astype(int)
    keep = [0, n - 1]
    for start, stop in zip(starts[:-1], starts[1:]):
        if stop > start:
            part = y[start:stop]
            keep += [start + int(np.argmin(part)), start + int(np.argmax(part))]
    index = np.unique(keep)
    return x[index], y[index]


def new_figure(width: float = 7.0, height: float = 4.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot(1, 1, 1)


def log_rate_axis(ax) -> None:
    """A log x-axis of learning rates with compact labels ("0.002", "0.01", "1e-05"). Why:
    matplotlib labels the minor ticks of an axis spanning a decade or two as "3x10^-3" and
    "4x10^-3", which overlap. Here only 2 and 5 of each decade get a minor tick, labelled when
    the axis spans under 2.5 decades."""
    from matplotlib import ticker

    low, high = ax.dataLim.intervalx
    single = bool(np.isfinite(low) and low > 0 and high <= low * (1 + 1e-9))  # (errorbar: 1 ulp)
    with warnings.catch_warnings():
        if single:  # one rate (a sweep of --lrs 0.1): matplotlib widens the axis, and says so
            warnings.filterwarnings("ignore", message="Attempting to set identical low and high")
        ax.set_xscale("log")
    if single:
        ax.set_xlim(low / 3, high * 3)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(ticker.LogLocator(base=10, subs=(2.0, 5.0)))

    def minor(value, _):
        low, high = sorted(ax.get_xlim())
        narrow = low > 0 and np.log10(high / low) < 2.5
        return f"{value:g}" if narrow else ""

    ax.xaxis.set_minor_formatter(ticker.FuncFormatter(minor))


def finder_figure(result, ax=None, show_methods: bool = True):
    """Loss against rate (log axis) with raw points, the smoothed curve, the good range shaded,
    each method's suggestion as a tick and the chosen one as a marker."""
    own = ax is None  # a figure of the caller's keeps the caller's layout
    if own:
        fig, ax = new_figure()
    else:
        fig = ax.figure
    lrs = np.asarray(result.lrs, dtype=float)
    raw = np.asarray(result.losses, dtype=float)
    smooth = np.asarray(result.smoothed, dtype=float)
    on_axis = np.isfinite(lrs) & (lrs > 0)  # a log axis drops zero and negative rates anyway
    finite = on_axis & np.isfinite(raw)
    curve = on_axis & np.isfinite(smooth)
    ax.plot(*thin(lrs[finite], raw[finite]), ".", color="0.7", markersize=3, label="loss")
    ax.plot(*thin(lrs[curve], smooth[curve]), color="C0", label="smoothed loss")
    val_lrs, val = _validation(result, lrs)
    if len(val):
        ax.plot(val_lrs, val, "s-", color="C2", markersize=3, label="validation loss")
    if result.good_range:
        ax.axvspan(*result.good_range, color="C2", alpha=0.12, label="good range")
    if show_methods:
        for i, (name, lr) in enumerate(result.suggestions.items()):
            if _rate(lr) and name != result.method:
                # (named as the summary names it: the line is at a tenth of the minimum's rate)
                shown_name = "minimum/10" if name == "minimum" else plain(name)
                ax.axvline(lr, color=f"C{3 + i}", linestyle=":", linewidth=1,
                           label=f"{shown_name}: {lr:.2g}")
    if _rate(result.suggested_lr):
        # on the curve the suggestion was read from: the validation curve when it was (the
        # marker sat on the training curve, far from the point it was chosen on), else the
        # smoothed training curve where there is one (NaN there would hide the marker)
        settings = getattr(result, "settings", None) or {}
        if settings.get("curve") == "validation" and len(val) >= 2:
            order = np.argsort(val_lrs)
            y = np.interp(np.log(result.suggested_lr), np.log(val_lrs[order]), val[order])
        else:
            line = curve if curve.any() else finite
            y = (np.interp(np.log(result.suggested_lr), np.log(lrs[line]),
                           (smooth if curve.any() else raw)[line]) if line.any() else 0)
        ax.plot([result.suggested_lr], [y], "o", color="C1", markersize=9, zorder=5,
                label=f"suggested: {result.suggested_lr:.3g}")
    log_rate_axis(ax)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("Learning-rate range test")
    shown = smooth[curve] if curve.any() else raw[finite]
    if len(shown):
        # from the curve's minimum to its start (the divergence past it is cut off), widened to
        # show the validation curve, which may lie wholly above or below the training loss
        lo = min(shown.min(), val.min()) if len(val) else shown.min()
        hi = max(shown[0], val[0]) if len(val) else shown[0]
        top = max(shown.max(), val.max()) if len(val) else shown.max()
        if hi - lo <= 0.05 * (top - lo) and int(np.argmin(shown)) <= 0.1 * len(shown):
            # lowest at or near the start (a loss that only rose): the whole curve, not a
            # sliver of 1e-12 around the first points (not for a curve that fell first, whose
            # one tall validation point after the divergence squashed it into a sliver)
            hi = top
        span = max(hi - lo, 1e-12)
        ax.set_ylim(lo - 0.2 * span, hi + 0.6 * span)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if own:
        fig.tight_layout()
    return fig


def _rate(value) -> bool:
    """A rate that can be drawn on a log axis."""
    return value is not None and np.isfinite(value) and value > 0


def _validation(result, lrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The validation points that can be drawn: each at the rate of its own step."""
    steps = np.asarray(result.val_steps, dtype=int)
    val = np.asarray(result.val_losses, dtype=float)
    if len(steps) != len(val):
        return np.empty(0), np.empty(0)
    keep = (steps >= 0) & (steps < len(lrs))
    steps, val = steps[keep], val[keep]
    keep = np.isfinite(val) & (lrs[steps] > 0)
    return lrs[steps][keep], val[keep]
