"""The gradient's noise-to-signal ratio at the training batch size, and what it says about rates.

With batches of ``B`` examples, a step's gradient is the true gradient ``G`` plus noise of
variance ``tr(Σ) / B``. McCandlish et al. (2018, "An Empirical Model of Large-Batch Training")
call ``B_noise = tr(Σ) / |G|²`` the gradient noise scale and show that the best step shrinks as
``1 / (1 + B_noise / B)``: where the noise dominates, the loss minimum of a range test (which
sees a few steps at each rate) is a looser guide to the rate a whole run can hold.

The ratio ``B_noise / B`` is measured from ``k`` gradients of independent batches at the same
parameters: their mean squared norm estimates ``|G|² + tr(Σ) / B`` and the mean dot product of
two different ones ``|G|²``, both without bias. Only running sums are needed, so an adapter can
measure it without keeping a copy of any gradient.
"""
from __future__ import annotations

import math


def noise_ratio(squared_norms: float, cross_products: float, count: int) -> float | None:
    """``B_noise / B`` from ``count`` gradients: ``squared_norms`` is the sum of their squared
    norms, ``cross_products`` the sum of ``g_i . g_j`` over the pairs ``i < j``.

    ``math.inf`` when the pairs show no common direction at all (pure noise at this batch size);
    ``None`` when nothing can be said (fewer than two gradients, non-finite sums, all zero)."""
    if count < 2 or not (math.isfinite(squared_norms) and math.isfinite(cross_products)):
        return None
    if squared_norms <= 0:
        return None  # every gradient zero: no direction and no noise to measure
    mean_square = squared_norms / count
    signal = cross_products / (count * (count - 1) / 2)
    if signal <= 0:
        return math.inf
    return max(0.0, (mean_square - signal) / signal)


def from_json(value):
    """A ratio as JSON holds it: "inf" (what ``FinderResult.to_dict`` writes for "noise
    dominates": JSON has no infinity) back to ``math.inf``; anything else as it is."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    return value


def describe(ratio: float | None) -> str | None:
    """One line for people: what the ratio means for the rate and the batch size."""
    if ratio is None:
        return None
    if math.isinf(ratio):
        return ("gradient noise: the batches' gradients share no measurable direction at this "
                "batch size (noise dominates); larger batches would make each step count")
    # "1234x", not "1.2e+03x"
    number = f"{ratio:.2g}" if ratio < 100 else f"{ratio:,.0f}"
    if ratio < 0.5:
        return f"gradient noise: {number}x the signal at this batch size (low)"
    if ratio < 1:
        # B_noise is below this batch size already: larger batches would not save steps (and
        # "larger batches, up to 0.6x this one" said nothing)
        return (f"gradient noise: {number}x the signal at this batch size (moderate: larger "
                "batches would save few steps)")
    return (f"gradient noise: {number}x the signal at this batch size (larger batches, up to "
            f"about {number}x this one, would need fewer steps)")
