"""The rate ramp of a range test: exponential (log-spaced) or linear from start to end."""
from __future__ import annotations

import numpy as np

from lrkit.errors import is_real, require

RAMPS = ("exp", "linear")
#: more steps than any range test needs: 10**10 allocated 75 GB for its rates, inside numpy
MAX_STEPS = 1_000_000


def check_range(start_lr: float, end_lr: float, num_steps: int, ramp: str) -> None:
    """Refuse impossible range-test settings with a message that says what to change."""
    require(ramp in RAMPS, f"ramp must be one of {RAMPS}, got {ramp!r}")
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        require(is_real(value) and np.isfinite(value) and value > 0,
                f"{name} must be a positive finite number, got {value!r}")
    require(start_lr != end_lr,
            f"start_lr and end_lr are both {start_lr:g}: the test needs a range of rates")
    require(start_lr < end_lr,
            f"start_lr ({start_lr:g}) must be smaller than end_lr ({end_lr:g}); swap them")
    require(isinstance(num_steps, (int, np.integer)) and num_steps >= 10,
            f"num_steps must be an integer >= 10 (a curve needs points), got {num_steps!r}")
    require(num_steps <= MAX_STEPS,
            f"num_steps={num_steps} is more than a range test needs (100-1000 is usual); give "
            f"at most {MAX_STEPS}")


def ramp_rates(start_lr: float, end_lr: float, num_steps: int, ramp: str = "exp") -> np.ndarray:
    """The rate at each step: ``num_steps`` rates from ``start_lr`` to ``end_lr`` inclusive."""
    check_range(start_lr, end_lr, num_steps, ramp)
    if ramp == "exp":
        return np.geomspace(start_lr, end_lr, num_steps)
    return np.linspace(start_lr, end_lr, num_steps)
