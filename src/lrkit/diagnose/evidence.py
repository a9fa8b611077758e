"""Measures of a loss curve: level, trend, noise, spikes, oscillation (pure numpy, no torch).

Everything is measured on the *log* of the loss (plus a small floor), so that a curve falling
from 2.3 to 0.01 is judged by ratios rather than by its first few steps, and a loss that touches
zero does not look like an infinite drop. Curves with negative values are measured as they are.
Windows scale with the curve's length, so per-step logs (hundreds of noisy points) and per-epoch
logs (a few dozen smooth points) are judged alike.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

#: fewer finite points than this and the verdict is "not_enough_data"
MIN_POINTS = 8
#: a spike is a single step at least 2x (and 5 noise widths) above the local level that undoes at
#: least this share of the progress made so far
SPIKE_UNDO = 0.5
#: a spike stands this many of the batches' own noise widths (``batch_noise``) above its level
SPIKE_BATCH_WIDTHS = 5.0
#: a bounce: the smoothed curve back up by this share of the progress ...
BOUNCE_SHARE = 0.35
#: ... and by this many of its own noise widths (and by 1.5x on the log scale)
BOUNCE_NOISE_WIDTHS = 6.0


def _odd(k: int) -> int:
    return k if k % 2 else k + 1


def rolling_median(y: np.ndarray, window: int) -> np.ndarray:
    """Centred running median, the window shrinking at the ends (no padding artefacts)."""
    n = len(y)
    window = max(1, min(_odd(window), n if n % 2 else n - 1))
    if window <= 1 or n < 3:
        return y.copy()
    half = window // 2
    from scipy.ndimage import median_filter  # scipy comes with scikit-learn; imported late

    # full windows: scipy's running median (exact for an odd window; 20-40x numpy's
    # partition per window, which made a report of a long run cost milliseconds)
    out = median_filter(y, size=window, mode="nearest")
    # the ends: windows cut short, as medians over what is there
    padded = np.concatenate([np.full(half, np.nan), y[:2 * half], np.full(0, np.nan)])
    left = np.lib.stride_tricks.sliding_window_view(padded, window)[:half]
    padded = np.concatenate([y[n - 2 * half:], np.full(half, np.nan)])
    right = np.lib.stride_tricks.sliding_window_view(padded, window)[-half:]
    out[:half] = _nanmedian_rows(left)
    out[n - half:] = _nanmedian_rows(right)
    return out


def _nanmedian_rows(rows: np.ndarray) -> np.ndarray:
    """np.nanmedian(rows, axis=1) without its slow masked-array path (NaN sort last)."""
    ordered = np.sort(rows, axis=1)
    count = np.sum(~np.isnan(rows), axis=1)
    index = np.arange(len(rows))
    return (ordered[index, (count - 1) // 2] + ordered[index, count // 2]) / 2.0


def robust_sigma(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _slope(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y over t, and its t statistic (0 when undefined)."""
    if len(t) < 3:
        return 0.0, 0.0
    # on the loss's own scale a loss of 1e200 squares past float range: fit y / its size (the t
    # statistic does not change with the scale) and scale the slope back
    size = float(np.max(np.abs(y)))
    if size > 0 and math.isfinite(size):
        slope, t_stat = _slope_unscaled(t, y / size)
        return slope * size, t_stat
    return _slope_unscaled(t, y)


def _slope_unscaled(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    tc = t - t.mean()
    denom = float(np.dot(tc, tc))
    if denom <= 0:
        return 0.0, 0.0
    slope = float(np.dot(tc, y - y.mean()) / denom)
    resid = y - y.mean() - slope * tc
    dof = max(1, len(t) - 2)
    se = math.sqrt(max(float(np.dot(resid, resid)) / dof, 1e-30) / denom)
    return slope, slope / se


@dataclasses.dataclass
class Prepared:
    """A loss curve cleaned for measuring: finite values, their step indices, the transform."""

    raw: np.ndarray  #: every value as given (NaN/inf kept)
    steps: np.ndarray  #: indices of the finite values
    x: np.ndarray  #: the finite values
    y: np.ndarray  #: transformed finite values (log with a floor, or linear over ``scale``)
    log_scale: bool
    floor: float
    scale: float = 1.0  #: on the linear scale, the loss's own unit (see :func:`linear_scale`)

    def to_y(self, value: float) -> float:
        return math.log(max(value, 0.0) + self.floor) if self.log_scale else value / self.scale

    def to_x(self, value: float) -> float:
        # max: exp(log(floor)) - floor is -3e-18, not the 0 the loss reached
        return max(math.exp(value) - self.floor, 0.0) if self.log_scale else value * self.scale


def linear_scale(x: np.ndarray) -> float:
    """The unit a curve that goes negative is measured in: the larger of its fall (the start
    down to the lowest level of a running median) and ten widths of its step-to-step noise.
    Why: the rules' thresholds are ratios on the log scale; a negative log-likelihood has no
    ratios, and read in its own units the same healthy curve was "unstable" summed over 784
    dimensions and "has not moved" per dimension. Over this unit the measures do not change
    when the loss is shifted or multiplied by a positive number. (Ten noise widths read a fall of
    three noise widths as "stalled, x3"; the batches' noise on this scale is read from the
    step-to-step changes instead, see :func:`measure`, so that a flat, noisy curve's highest
    batch is no blow-up.)"""
    n = len(x)
    start = min(float(x[0]), float(np.median(x[:3])))
    level = rolling_median(x, _odd(int(np.clip(n // 10, 3, 101)))) if n >= 3 else x
    fall = start - float(np.min(level))
    noise = robust_sigma(np.diff(x)) / math.sqrt(2.0) if n >= 3 else 0.0
    scale = max(fall, 2.0 * noise)
    if not (scale > 0 and math.isfinite(scale)):
        scale = float(np.max(np.abs(x))) if n else 0.0
    return scale if scale > 0 and math.isfinite(scale) else 1.0


def prepare(values: np.ndarray) -> Prepared:
    raw = np.asarray(values, dtype=float)
    finite = np.isfinite(raw)
    steps = np.flatnonzero(finite)
    x = raw[finite]
    if x.size:
        # the floor is 1% of the starting level (not of the first steps' median: those may have
        # blown up already); losses below it are all "done" and their wiggles are not noise
        scale = min(float(x[0]), float(np.median(x[:3]))) or float(np.max(np.abs(x))) or 1.0
        # relative only (a fixed 1e-12 flattened a loss of 1e-13 into "has not moved")
        floor = max(1e-2 * scale, np.finfo(float).tiny)
        # a positive loss with values a little below 0 (an estimate such as a sampled KL, a
        # rounding) is the positive loss it is: values under the floor are all "done" (it fell
        # to the linear scale, and "has not moved" from 0.02 to 0.001)
        if scale > 0 and float(x.min()) >= -floor:
            return Prepared(raw, steps, x, np.log(np.maximum(x, 0.0) + floor), True, floor)
    unit = linear_scale(x) if x.size else 1.0
    return Prepared(raw, steps, x, x / unit, False, 0.0, unit)


def measure(values, *, min_points: int = MIN_POINTS) -> dict:
    """The evidence about one curve, as a flat dict of numbers (JSON-ready; ``None`` if unknown).

    Levels (``start``, ``end``, ``best``, ``peak``) are in the loss's own units; ``*_log`` ratios
    and ``noise`` are on the log scale (a noise of 0.1 means typical step-to-step wiggles of ~10%).
    Positions (``best_at``, ``spike_steps``...) are indices into the curve as given.
    """
    p = prepare(values)
    n_total = len(p.raw)
    nonfinite = np.flatnonzero(~np.isfinite(p.raw))
    ev: dict = {
        "points": int(n_total),
        "finite_points": int(len(p.x)),
        "nonfinite_points": int(len(nonfinite)),
        "first_nonfinite_at": int(nonfinite[0]) if len(nonfinite) else None,
        "ends_nonfinite": bool(n_total and not np.isfinite(p.raw[-1])),
        "log_scale": p.log_scale,
        "scale": p.scale,
    }
    n = len(p.x)
    if n < min_points:
        return ev
    y, t = p.y, p.steps.astype(float)
    w = _odd(int(np.clip(n // 25, 3, 51)))
    smooth = rolling_median(y, w)
    # coarser smoothing for levels and trends, so that single batches do not move them
    coarse_w = _odd(int(np.clip(n // 10, 3, 101)))
    coarse = rolling_median(y, coarse_w)
    k0 = max(1, min(w, n // 10))
    k1 = max(3, n // 10)
    # the first loss (taken before any update) unless the next two say it was a high draw; not a
    # longer median, which a blow-up in the first steps would drag up (a short, per-epoch curve
    # falls fast from its first point, which is then the start)
    init = min(float(y[0]), float(np.median(y[:3]))) if n >= 50 else float(y[0])
    end = float(np.median(y[-k1:]))
    # the very end: the last loss of a short (per-epoch) curve, the median of the last three of
    # a long one (a blow-up over the last 2-5% of a run hides in the last tenth's median)
    very_end = float(y[-1]) if n < 50 else float(np.median(y[-3:]))
    # the highest loss before the last tenth (before the last point of a short curve): a
    # blow-up at the end goes past all of it (compared with the losses just before the last
    # three, a blow-up growing under 41% a step read as no blow-up: its own points were there)
    before_end = float(y[: -1 if n < 50 else -k1].max())
    best_i = int(np.argmin(coarse))
    best = float(coarse[best_i])
    peak_i = int(np.argmax(smooth))
    peak = float(smooth[peak_i])
    # where a blow-up began: the last point of the smoothed curve still near its lowest (within
    # a tenth of the rise) before it first climbs a fifth of the way (on the curve's own scale:
    # in log for a positive loss) from the start up to the peak -- where the loss turned up; the
    # peak itself comes where the growth ends, 30 steps after a loss that was already 1e37 (and
    # the lowest point alone fell anywhere in a flat, noisy stretch before the climb: step 216
    # of a loss that turned up at step 800)
    blowup_i = None
    if peak > init:
        climbed = int(np.argmax(smooth >= init + 0.2 * (peak - init)))
        before = smooth[: climbed + 1]
        low = float(before.min())
        blowup_i = int(np.flatnonzero(before <= low + 0.1 * (float(before[-1]) - low))[-1])

    resid = y - smooth
    noise = robust_sigma(resid)
    # the batches' own scatter about the coarse level: a median of 3-5 points follows much of
    # the noise, so ``noise`` reads 0.2 where flat batch losses spread 0.5 (log) about their
    # level; peaks of single batches and wanders of the coarse curve are weighed against this
    batch_noise = robust_sigma(y - coarse)
    if not p.log_scale and n >= 3:
        # on the linear scale, in its unit: the step-to-step changes' spread as well (a short
        # curve's residuals about a running median read a quarter of the scatter, and a flat,
        # noisy negative loss's highest batch became a 2x "blow-up" 15% of the time)
        batch_noise = max(batch_noise, robust_sigma(np.diff(y)) / math.sqrt(2.0))
    # lag-1 autocorrelation of the residuals: about 0 for batch noise, towards -1 for a zig-zag
    # (the loss bouncing from one side of a valley to the other on alternate steps)
    if n >= 6 and float(np.std(resid)) > 0:
        r0, r1 = resid[:-1] - resid[:-1].mean(), resid[1:] - resid[1:].mean()
        acf1 = float(np.dot(r0, r1) / math.sqrt(max(np.dot(r0, r0) * np.dot(r1, r1), 1e-30)))
    else:
        acf1 = 0.0

    progress = init - best  # log improvement at the best point
    improvement = init - end
    early_level = float(np.median(y[: max(3, n // 10)]))
    # spikes: single points far above the local level, large against the noise and against the
    # progress made (so that a 0.003 -> 0.03 blip at the end of a run that fell from 2.3 is not one)
    # (on the linear scale, all in its unit: y)
    lin_x = p.x if p.log_scale else y
    lin_smooth = np.exp(smooth) - p.floor if p.log_scale else smooth
    lin_init = p.to_x(init) if p.log_scale else init
    lin_best = p.to_x(best) if p.log_scale else best
    # "nothing" on the loss's own scale, relative to it (a fixed 1e-12 is all of a 1e-13 loss)
    eps = 1e-12 * max(float(np.max(np.abs(lin_x))), np.finfo(float).tiny)
    progress_lin = max(lin_init - lin_best, eps)
    height_lin = lin_x - lin_smooth
    # (on the linear scale 5% of its unit: the start's own size depends on where its zero is)
    relative_height = height_lin / max(progress_lin,
                                       abs(lin_init) * 0.05 if p.log_scale else 0.05, eps)
    is_spike = (resid > max(5.0 * noise, SPIKE_BATCH_WIDTHS * batch_noise,
                            math.log(2.0) if p.log_scale else 0.0)) & (
        relative_height > SPIKE_UNDO)
    # the first 5% of a run is a transient (warm-up, first big steps): spikes there are reported
    # apart and do not count as instability
    settled = frac_all = (p.steps - p.steps[0]) / max(p.steps[-1] - p.steps[0], 1)
    early_spikes = int(np.count_nonzero(is_spike & (settled < 0.05)))
    spike_idx = np.flatnonzero(is_spike & (settled >= 0.05))
    # oscillation: how much the smoothed curve goes up and down beyond its net movement
    steps_up = np.diff(coarse)
    rises = float(np.sum(np.clip(steps_up, 0, None)))
    total_var = float(np.sum(np.abs(steps_up)))
    # the largest rebound of the coarse curve above its running minimum, as a share of the
    # progress: a loss that bounces back up by a third of what it had gained is not settling
    lin_coarse_curve = np.exp(coarse) - p.floor if p.log_scale else coarse
    running_min = np.minimum.accumulate(lin_coarse_curve)
    rebound = lin_coarse_curve - running_min
    rebound_i = int(np.argmax(rebound))
    max_rebound = float(rebound[rebound_i]) / max(progress_lin, eps)
    # the same rebound on the curve's own (log) scale, and the coarse curve's noise width there
    rebound_log = float(coarse[rebound_i] - np.minimum.accumulate(coarse)[rebound_i])
    coarse_noise = 1.2533 * batch_noise / math.sqrt(coarse_w)
    # the coarse median's window is cut short at the ends (half of it at the last point), so its
    # noise there is up to 1.4x wider: a rebound at the last point of a flat, noisy curve is
    # weighed against that width (logreg at a good rate "bounced back by 35% of its progress at
    # step 399" in every run, under a cosine decay to 0 too, where nothing can bounce)
    edge_w = min(coarse_w, coarse_w // 2 + 1 + min(rebound_i, n - 1 - rebound_i))
    rebound_noise = 1.2533 * batch_noise / math.sqrt(max(edge_w, 1))
    smooth_noise = 1.2533 * batch_noise / math.sqrt(w)  # the same for the smoothed curve
    # bounces: separate stretches where the smoothed curve (a window of ~4% of the run, which a
    # single batch does not move) climbs back by BOUNCE_SHARE of the progress and by
    # BOUNCE_NOISE_WIDTHS of its noise; the coarse curve (10%) averages swings of a period of
    # 5-20% of the run away, and such runs read "healthy, settled"
    bounce_lin = lin_smooth - np.minimum.accumulate(lin_smooth)
    bounce_log = smooth - np.minimum.accumulate(smooth)
    high = (bounce_lin >= BOUNCE_SHARE * progress_lin) & (
        bounce_log >= max(BOUNCE_NOISE_WIDTHS * smooth_noise, math.log(1.5) if p.log_scale
                          else 0.0))
    bounces = int(np.count_nonzero(high[1:] & ~high[:-1]) + (1 if len(high) and high[0] else 0))
    # trends on the coarse curve in units of "log change per whole run"
    frac = (t - t[0]) / max(t[-1] - t[0], 1.0)
    last = frac >= 0.7
    half = frac >= 0.5
    firstpart = frac <= 0.3
    slope_end, t_end = _slope(frac[last], y[last])
    slope_half, t_half = _slope(frac[half], y[half])
    slope_start, t_start = _slope(frac[firstpart], y[firstpart])
    # the share of the total improvement made over the last 30% of the run
    late_share = (-slope_end * 0.3) / improvement if improvement > 1e-9 else None
    # the same share on the loss's own scale: a too-slow run falls in a straight line (or faster
    # and faster), a healthy one bends over; the log scale exaggerates the tail of a healthy run
    lin_coarse = np.exp(coarse) - p.floor if p.log_scale else coarse
    lin_slope_end, _ = _slope(frac[last], lin_coarse[last])
    lin_end = p.to_x(end) if p.log_scale else end
    late_share_linear = ((-lin_slope_end * 0.3) / (lin_init - lin_end)
                         if lin_init - lin_end > eps else None)
    # an early blow-up: the 3-point median in the first fifth of the run against the start
    early = y[: max(3, n // 5)]
    early_peak = float(rolling_median(early, 3).max()) - init if len(early) >= 3 else 0.0
    # where the curve stopped improving: first point after which it stays within noise of the end
    band = max(2.0 * robust_sigma(y[-k1:] - coarse[-k1:]), 0.02 if p.log_scale else 0.0)
    above = np.flatnonzero(coarse > end + band)
    flat_from = float(frac[above[-1] + 1]) if len(above) and above[-1] + 1 < n else (
        0.0 if not len(above) else 1.0)

    excursion = y - coarse
    # batches 5x the start or more (a positive loss): a few are blow-ups, many are the hard
    # batches of a run near convergence (5% of them at 10x read "diverged, x0.1")
    # counted as episodes: big batches at most 3 steps apart are one blow-up, and a short run's
    # few blow-ups of several batches each are not many (merged over the smoothing window, the
    # scattered hard batches of a long converged run made a few "episodes", and it diverged)
    big = np.flatnonzero(y - init >= math.log(5.0)) if p.log_scale else np.empty(0, dtype=int)
    big_batches = int(len(big) and 1 + np.count_nonzero(np.diff(big) > 3))
    top = int(np.argmax(y))
    peak_excursion = float(excursion[top])
    others = np.abs(np.arange(n) - top) > w
    second_excursion = float(excursion[others].max()) if others.any() else 0.0

    ev.update({
        "start": p.to_x(init),
        "end": p.to_x(end),
        "best": p.to_x(best),
        "best_at": int(p.steps[best_i]),
        "peak": p.to_x(peak),
        "peak_at": int(p.steps[peak_i]),
        "blowup_at": int(p.steps[blowup_i]) if blowup_i is not None else None,
        "improvement_log": improvement,
        "progress_log": progress,
        "end_vs_start_log": end - init,
        "last": p.to_x(very_end),
        "last_vs_start_log": very_end - init,
        "last_vs_before_log": very_end - before_end,
        "end_vs_early_log": end - early_level,
        "end_vs_best_log": end - best,
        "overshoot_log": peak - init,
        "noise": noise,
        "noise_vs_progress": noise / progress if progress > 1e-9 else None,
        "zigzag": -acf1,
        "oscillation": (rises / total_var) if total_var > 0 else 0.0,
        "rises_log": rises,
        "trend_end": slope_end,
        "trend_end_t": t_end,
        "trend_last_half": slope_half,
        "trend_last_half_t": t_half,
        "trend_start": slope_start,
        "trend_start_t": t_start,
        "late_share": late_share,
        "max_rebound": max_rebound,
        "bounces": bounces,
        "rebound_at": int(p.steps[rebound_i]),
        "rebound_log": rebound_log,
        "batch_noise": batch_noise,
        "coarse_noise": coarse_noise,
        "rebound_noise": rebound_noise,
        "smooth_noise": smooth_noise,
        "late_share_linear": late_share_linear,
        "early_peak_log": early_peak,
        "raw_peak_log": float(y.max()) - init,
        # the highest batch's height above the coarse level, and the highest one's outside its
        # neighbourhood: a lone blow-up stands far above every other batch, while the highest of
        # heavy-tailed batches (Student-t) has others of its size
        "raw_peak_excursion_log": peak_excursion,
        "raw_second_excursion_log": second_excursion,
        "big_batches": big_batches,
        "raw_peak_at": int(p.steps[top]),  # the highest single loss's position
        "late_peak_log": float(y[frac_all >= 0.5].max()) - init,
        "late_peak_at": int(p.steps[frac_all >= 0.5][int(np.argmax(y[frac_all >= 0.5]))]),
        "early_spikes": early_spikes,
        "flat_from": flat_from,
        "spikes": int(len(spike_idx)),
        "spike_steps": [int(p.steps[i]) for i in spike_idx[:10]],
        "max_spike": float(relative_height[spike_idx].max()) if len(spike_idx) else 0.0,
        "window": w,
    })
    return ev


def measure_validation(values, *, train_start: float | None = None) -> dict:
    """Evidence from a validation curve (usually a few points, evaluated every k steps or once an
    epoch): its best, how far it rose after it, how much it was still falling at the end, and how
    much it went up and down. ``train_start`` (the training loss at the start) stands in for the
    validation loss before training, which logs rarely hold."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    ev: dict = {
        "val_points": int(len(v)),
        "val_nonfinite_points": int((~finite).sum()),
        "val_ends_nonfinite": bool(len(v) and not finite[-1]),
    }
    x = v[finite]
    if len(x) < 3:
        return ev
    best_i = int(np.argmin(x))
    tail = x[-min(3, len(x)):]
    end = min(float(x[-1]), float(np.median(tail)))
    best = float(x[best_i])
    known = train_start is not None and math.isfinite(train_start)
    start = float(train_start) if known else float(x[0])
    start = max(start, float(x[0]))
    i70 = int(round(0.7 * (len(x) - 1)))
    ups = np.clip(np.diff(x), 0, None).sum()
    total = np.abs(np.diff(x)).sum()
    eps = 1e-12 * max(float(np.max(np.abs(x))), abs(start), np.finfo(float).tiny)
    positive = best > 0 and end > 0
    ev.update({
        "val_start": float(x[0]),
        "val_end": end,
        "val_best": best,
        "val_best_at_fraction": best_i / max(1, len(x) - 1),
        "val_rise_log": math.log(end / best) if positive else None,
        "val_rise_share": (end - best) / (start - best) if start - best > eps else None,
        "val_late_share": ((float(x[i70]) - end) / (start - end)) if start - end > eps else None,
        "val_oscillation": float(ups / total) if total > 0 else 0.0,
    })
    return ev
