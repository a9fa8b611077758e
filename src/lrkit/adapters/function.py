"""Adapter for a plain Python function ``step(lr) -> loss``: the smallest possible trainable.

Any training code (JAX, a hand-written loop, a simulator) can be range-tested this way. What the
PyTorch adapter measures itself, a function trainable is told: the optimizer's family and,
optionally, a function that measures the gradient's noise-to-signal ratio (see
:func:`lrkit.find.suggest.edge_fraction` for how the suggestion reads them).
"""
from __future__ import annotations

import contextlib
import inspect
import math
from typing import Any, Callable, Iterator, Sequence

from lrkit.errors import LrkitError, one_number, require


class FunctionTrainable:
    """Wrap ``step_fn(lr) -> loss`` (and optionally ``eval_fn() -> loss``, ``save_fn() -> state``,
    ``load_fn(state)``) so any training code can be range-tested without PyTorch objects.

    ``optimizer_family``: "adam" for an optimizer of Adam's kind (running first and second
    moments), "sgd", or "other" (the default). ``noise_fn(k) -> float | None``: the gradient's
    noise-to-signal ratio ``B_noise / B`` at the training batch size, measured on ``k`` batches
    with no update (:mod:`lrkit.find.noise` computes it from gradient norms); the range test calls
    it inside ``preserved()`` before its ramp. Without it the suggestion takes its fixed fraction.
    """

    def __init__(
        self,
        step_fn: Callable[[float], Any],
        *,
        eval_fn: Callable[[], Any] | None = None,
        save_fn: Callable[[], object] | None = None,
        load_fn: Callable[[object], None] | None = None,
        group_ratios: Sequence[float] = (1.0,),
        optimizer_family: str = "other",
        noise_fn: Callable[[int], float | None] | None = None,
    ) -> None:
        from lrkit.find.suggest import OPTIMIZER_FAMILIES

        require(callable(step_fn), f"step_fn must be callable, got {type(step_fn).__name__}")
        require(_takes_one(step_fn),
                f"step_fn must take the step's rate, step_fn(lr) -> loss; "
                f"{getattr(step_fn, '__name__', 'it')}{_signature(step_fn)} cannot")
        require(eval_fn is None or callable(eval_fn),
                f"eval_fn must be callable or None, got {type(eval_fn).__name__}")
        require((save_fn is None) == (load_fn is None), "give both save_fn and load_fn, or neither")
        require(optimizer_family in OPTIMIZER_FAMILIES,
                f"optimizer_family must be one of {list(OPTIMIZER_FAMILIES)}, "
                f"got {optimizer_family!r}")
        require(noise_fn is None or callable(noise_fn),
                f"noise_fn must be callable or None, got {type(noise_fn).__name__}")
        self._step_fn = step_fn
        self._eval_fn = eval_fn
        self._save_fn = save_fn
        self._load_fn = load_fn
        ratios = [one_number(r) for r in group_ratios] if isinstance(group_ratios, (list, tuple)) \
            else None
        require(ratios is not None and len(ratios) >= 1
                and all(r is not None and math.isfinite(r) and r >= 0 for r in ratios)
                and any(r > 0 for r in ratios),
                "group_ratios must be a non-empty list of finite rates relative to the reference "
                f"group (>= 0, at least one > 0; (1.0,) for one group), got {group_ratios!r}")
        self.group_ratios = ratios
        self.optimizer_family = optimizer_family
        if noise_fn is not None:
            # an attribute only when there is one: the range test measures (and counts the
            # batches it costs) only when the trainable has ``gradient_noise``
            self._noise_fn = noise_fn
            self.gradient_noise = self._gradient_noise

    def train_step(self, lr: float) -> float:
        return _loss_number(self._step_fn(lr), "step_fn")

    def eval_loss(self) -> float | None:
        if self._eval_fn is None:
            return None
        value = self._eval_fn()
        return None if value is None else _loss_number(value, "eval_fn")

    def _gradient_noise(self, batches: int) -> float | None:
        value = self._noise_fn(batches)
        if value is None:
            return None
        ratio = one_number(value)
        if ratio is None or not ratio >= 0:  # NaN fails too
            raise LrkitError(
                f"noise_fn must return the noise-to-signal ratio as a number >= 0 (inf allowed) "
                f"or None when it cannot be measured, got {value!r}")
        return ratio

    @property
    def restores_state(self) -> bool:
        """Whether the range test can put the state back (``save_fn`` and ``load_fn`` given)."""
        return self._save_fn is not None

    @contextlib.contextmanager
    def preserved(self) -> Iterator[None]:
        state = self._save_fn() if self._save_fn else None
        try:
            yield
        finally:
            if self._load_fn:
                self._load_fn(state)


def _loss_number(value: Any, name: str) -> float:
    """``value`` as a float (NaN and inf allowed: the range test records them), or an error that
    names the function and what it returned."""
    number = one_number(value)
    if number is None:
        raise LrkitError(
            f"{name} must return the loss as a number (a float, or a one-element tensor or "
            f"array), got {type(value).__name__}"
            + (f" {value!r}" if isinstance(value, (str, bytes, bool)) or value is None else "")
            + (f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else "")
            + "; return the loss of the step, e.g. loss.item()")
    return number


def _signature(fn: Any) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"


def _takes_one(fn: Any) -> bool:
    """Whether ``fn`` can be called with one positional argument (True when its signature
    cannot be read: a builtin, which the first step will then try)."""
    try:
        inspect.signature(fn).bind(0.1)
    except TypeError:
        return False
    except ValueError:
        return True
    return True
