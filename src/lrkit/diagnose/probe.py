"""A small range test run inside a guarded loop, to measure a rescue rate instead of guessing it.

When a run blows up at rate ``r``, all the guard knows is that ``r`` is too high; cutting it by
a fixed factor lands anywhere from just right to still ten times too high. The probe, run on the
loop's own next batches from the restored snapshot, ramps the rate from ``r * 10**-decades`` up to
``r`` and applies the range test's default suggestion (:mod:`lrkit.find.suggest`) to the curve:
the rate the run goes on with is then measured on this model at this point of training.
"""
from __future__ import annotations

import math

import numpy as np

from lrkit.find import suggest
from lrkit.find.divergence import DivergenceWatch

#: the probe's stop rule: the EMA of the loss this many times past its best (as in the range test)
DIVERGE_THRESHOLD = 4.0
SMOOTHING = 0.9
#: where the turning point is taken to be, as a multiple of the failed rate, when the probe's loss
#: was still falling at its top (see :meth:`RateProbe.verdict`)
INCONCLUSIVE_CUT = 0.3
#: a turning point is one the smoothed loss rises past by more than this many times its own noise
#: (the same margin that :attr:`lrkit.find.suggest.Curve.fell` asks of the fall)
RISE_NOISES = 3.0


class RateProbe:
    """Rates to try, one per step, and the scale of the failed rate to go on with.

    ``scale`` multiplies the rate that failed: ``10**-decades`` at the first probe step, 1 at the
    last. The probe is done after ``steps`` steps or when the loss diverges.
    """

    def __init__(self, steps: int, decades: float) -> None:
        self.scales = np.geomspace(10.0 ** -decades, 1.0, steps)
        self.losses: list[float] = []
        self._watch = DivergenceWatch(DIVERGE_THRESHOLD, SMOOTHING, min_steps=max(5, steps // 20))
        self.done = False
        self._analysed: tuple[int, suggest.Analysis] | None = None

    @property
    def current_scale(self) -> float:
        return float(self.scales[len(self.losses)])

    def record(self, loss: float) -> None:
        """The loss of the step taken at :attr:`current_scale`."""
        self.losses.append(loss)
        if not math.isfinite(loss) or self._watch.update(loss) or len(self.losses) >= len(self.scales):
            self.done = True

    def verdict(self) -> tuple[float, str]:
        """The rate to go on with, as a multiple of the failed rate, and how it was found.

        Normally the range test's default suggestion on the probe's curve ("measured"). When the
        probe cannot see where training turns unstable -- the loss was still falling at the top
        of the probe, or never clearly fell, or a non-finite loss came while it was still
        falling -- the run itself showed that the failed rate is past that point, so the point
        is taken to be a cut lower and the suggestion is ``EDGE_FRACTION x INCONCLUSIVE_CUT``
        (a plain cut would leave the rate where the run had just failed from, 3-30x too high on
        the rescue benchmark).
        """
        fallback = suggest.EDGE_FRACTION * INCONCLUSIVE_CUT
        analysis = self._analysis()
        if analysis.suggested_lr is None:
            return fallback, "the loss never clearly fell"
        if not math.isfinite(self.losses[-1]) and (
                analysis.curve.min_index >= analysis.curve.n - max(2, len(self.scales) // 10)):
            return fallback, "a non-finite loss came while the loss was still falling"
        if self.still_falling:
            return fallback, "the loss was still falling at the top"
        curve = analysis.curve
        # a probe stopped by the divergence rule saw its turning point; one that ran all its
        # steps must end (the median of its last fifth, which a lone outlier cannot move)
        # clearly above its lowest point
        if len(self.losses) >= len(self.scales) and (
                float(np.median(curve.raw[-max(5, curve.n // 5):])) - curve.smooth[curve.min_index]
                <= RISE_NOISES * curve.smooth_noise):
            # a lowest point that nothing after it rises clearly above is the noise of a curve
            # still falling, not a turning point (on noisy batches its place is anywhere)
            return fallback, "the loss did not clearly rise past its lowest point"
        return analysis.suggested_lr, "measured"

    @property
    def still_falling(self) -> bool:
        """Was the loss still falling at the top of a completed probe? Then the model at the end
        of the probe is the best it has been, and the run can go on from there."""
        if len(self.losses) < len(self.scales) or not all(map(math.isfinite, self.losses)):
            return False
        curve = self._analysis().curve
        return bool(curve.fell and curve.min_index >= len(self.scales) - max(2, len(self.scales) // 10))

    def _analysis(self) -> suggest.Analysis:
        """The suggestion methods on the curve so far (computed once per curve length: the
        verdict and ``still_falling`` both read it when the probe ends)."""
        if self._analysed is None or self._analysed[0] != len(self.losses):
            self._analysed = (len(self.losses),
                              suggest.analyse(self.scales[: len(self.losses)], self.losses))
        return self._analysed[1]
