"""Adapter for a plain Python function ``step(lr) -> loss``: the smallest possible trainable."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

from lrkit.errors import require


class FunctionTrainable:
    """Wrap ``step_fn(lr) -> loss`` (and optionally ``eval_fn() -> loss``, ``save_fn() -> state``,
    ``load_fn(state)``) so any training code can be range-tested without PyTorch objects."""

    def __init__(
        self,
        step_fn: Callable[[float], float],
        *,
        eval_fn: Callable[[], float] | None = None,
        save_fn: Callable[[], object] | None = None,
        load_fn: Callable[[object], None] | None = None,
        group_ratios: Sequence[float] = (1.0,),
    ) -> None:
        require(callable(step_fn), f"step_fn must be callable, got {type(step_fn).__name__}")
        require((save_fn is None) == (load_fn is None), "give both save_fn and load_fn, or neither")
        self._step_fn = step_fn
        self._eval_fn = eval_fn
        self._save_fn = save_fn
        self._load_fn = load_fn
        self.group_ratios = list(group_ratios)

    def train_step(self, lr: float) -> float:
        return float(self._step_fn(lr))

    def eval_loss(self) -> float | None:
        return None if self._eval_fn is None else float(self._eval_fn())

    @contextlib.contextmanager
    def preserved(self) -> Iterator[None]:
        state = self._save_fn() if self._save_fn else None
        try:
            yield
        finally:
            if self._load_fn:
                self._load_fn(state)
