"""The range test's stop rule on flat, noisy starts and on real explosions."""
import numpy as np

import lrkit
from lrkit.find.divergence import DivergenceWatch


def _calm_then_noisy(seed: int, steps: int = 80) -> np.ndarray:
    """A loss that does not move at the first rates: a calm first few batches, then the batch
    noise it really has (the digits-mlp curve that stopped at 1e-5 on seed 11)."""
    rng = np.random.default_rng(seed)
    calm = 2.32 + rng.normal(0, 0.006, 6)
    noisy = 2.32 + rng.normal(0, 0.02, steps - 6)
    return np.concatenate([calm, noisy])


def _first_stop(losses) -> int | None:
    watch = DivergenceWatch(4.0, 0.9, 5)
    return next((i for i, loss in enumerate(losses) if watch.update(float(loss))), None)


#: the first 28 losses of digits-mlp's range test on seed 11 of the finder benchmark (rates
#: 1e-7 to 2e-5): the old rule stopped at the last one, so the test suggested nothing
DIGITS_MLP_SEED_11 = [
    2.314, 2.307, 2.31, 2.318, 2.301, 2.312, 2.315, 2.326, 2.337, 2.307, 2.354, 2.322, 2.29,
    2.335, 2.304, 2.31, 2.312, 2.341, 2.333, 2.302, 2.335, 2.298, 2.338, 2.359, 2.341, 2.319,
    2.31, 2.353]


def test_the_recorded_flat_start_is_not_divergence():
    rng = np.random.default_rng(0)
    assert _first_stop(DIGITS_MLP_SEED_11 + list(2.32 + rng.normal(0, 0.02, 60))) is None


def test_noise_after_a_calm_start_is_rarely_taken_for_divergence():
    stops = [_first_stop(_calm_then_noisy(seed)) for seed in range(50)]
    # the old rule stopped 14 of these 50; the one left is a noise jump 4x at step 7, which so
    # early cannot be told from a test started above the stable range
    assert sum(stop is not None for stop in stops) <= 1, stops


def test_an_explosion_after_a_noisy_start_still_stops_within_a_few_steps():
    for seed in range(20):
        if _first_stop(_calm_then_noisy(seed, 40)) is not None:
            continue
        losses = np.concatenate([_calm_then_noisy(seed, 40), 2.32 * 1.3 ** np.arange(1, 30)])
        stop = _first_stop(losses)
        assert stop is not None and 40 <= stop <= 48, (seed, stop)


def test_a_falling_curve_then_a_rise_stops_after_the_minimum():
    rates = np.geomspace(1e-5, 1, 100)
    losses = 1.0 + 0.5 * np.cos(np.linspace(0, np.pi, 100)) + 3 * (rates / 0.3) ** 2
    stop = _first_stop(losses)
    assert stop is not None and rates[stop] > rates[int(np.argmin(losses))]


def test_range_test_runs_through_a_flat_noisy_start():
    rng = np.random.default_rng(11)
    state: dict[str, int] = {}

    def step(lr: float) -> float:
        noise = 0.006 if state.get("n", 0) < 6 else 0.02
        state["n"] = state.get("n", 0) + 1
        return 2.31 + rng.normal(0, noise) - min(lr, 1e-2) * 50

    result = lrkit.range_test(lrkit.FunctionTrainable(step), start_lr=1e-7, end_lr=1e-1,
                              num_steps=60, progress=False)
    assert len(result.lrs) == 60
    assert result.suggested_lr is not None


#: the first 14 losses of an end-to-end review's range test (SGD with momentum on a shuffled
#: loader, seed 0; rates 1e-7 to 1.1e-6, where the model has not moved): the first batch was
#: low, became the best, and the ordinary batches after it "rose" from it: a stop at 1.1e-6
LOW_FIRST_BATCH = [1.041, 1.134, 1.105, 1.11, 1.095, 1.07, 1.128, 1.113, 1.106, 1.156, 1.148,
                   1.14, 1.132, 1.176]


def test_a_low_first_batch_is_no_best_to_rise_from():
    rng = np.random.default_rng(0)
    assert _first_stop(LOW_FIRST_BATCH + list(1.12 + rng.normal(0, 0.03, 60))) is None
    # an explosion after it still stops within a few steps
    exploding = LOW_FIRST_BATCH + list(1.12 * 1.3 ** np.arange(1, 30))
    stop = _first_stop(exploding)
    assert stop is not None and len(LOW_FIRST_BATCH) <= stop <= len(LOW_FIRST_BATCH) + 8
