"""lrkit.diagnose.evidence: the running median against its definition."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lrkit.diagnose.evidence import rolling_median


def _by_definition(y: np.ndarray, window: int) -> np.ndarray:
    """Median of the centred window, cut short at the ends (as many points on each side as
    there are, up to half the window)."""
    n = len(y)
    window = max(1, min(window if window % 2 else window + 1, n if n % 2 else n - 1))
    half = window // 2
    return np.array([np.median(y[max(0, i - half):min(n, i + half + 1)]) for i in range(n)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300),
       st.integers(1, 120))
def test_rolling_median_is_the_centred_median_with_windows_cut_short_at_the_ends(values, window):
    y = np.asarray(values, dtype=float)
    if len(y) < 3:
        assert np.array_equal(rolling_median(y, window), y)
        return
    assert np.array_equal(rolling_median(y, window), _by_definition(y, window))
