"""Per-step overhead of something added to a training loop, measured one way for every benchmark
that needs it (Monitor, Guard): whole blocks of steps with and without it, in adjacent pairs."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def interleave(plain: Callable[[], None], other: Callable[[], None], *, blocks: int,
               block_steps: int, between: Callable[[], None] | None = None) -> dict:
    """Time ``blocks`` pairs of adjacent blocks, ``plain`` and ``other``, the order alternating
    (a pair shares the machine's mood); ``between`` runs untimed after each pair. Returns the
    median seconds per step of each, the fastest plain step, and the overhead three ways: ratio
    of the medians, of the fastest blocks, and the median over the pairs (the steadiest)."""
    times: dict[str, list[float]] = {"plain": [], "other": []}
    pair = (("plain", plain), ("other", other))
    for i in range(blocks):
        for key, block in (pair if i % 2 == 0 else pair[::-1]):
            start = time.perf_counter()
            block()
            times[key].append((time.perf_counter() - start) / block_steps)
        if between is not None:
            between()
    base, added = times["plain"], times["other"]
    return {"plain_s": statistics.median(base), "other_s": statistics.median(added),
            "fastest_plain_s": min(base),
            "overhead": statistics.median(added) / statistics.median(base) - 1,
            "overhead_fastest": min(added) / min(base) - 1,
            "paired": statistics.median(a / b for a, b in zip(added, base)) - 1}


def print_medians(rows: list[dict], keys: tuple[str, ...] = ("own_share", "overhead", "paired")
                  ) -> None:
    """One line per figure: its median and largest value over the examples."""
    for key in keys:
        values = [r[key] for r in rows]
        print(f"  {key}: median over examples {statistics.median(values):+.1%}, "
              f"max {max(values):+.1%}")
