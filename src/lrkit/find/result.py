"""The outcome of a range test: the whole curve, every method's suggestion, the good range,
warnings, and ways to show it (text, JSON, plot)."""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from lrkit.errors import LrkitError, is_real, require, require_folder, require_plot_path
from lrkit.files import write_atomically


@dataclasses.dataclass
class FinderResult:
    """Curve and suggestions of one learning-rate range test.

    ``suggested_lr`` is the reference (first non-zero) parameter group's rate; ``suggested_lrs``
    has one rate per parameter group, keeping the groups' ratios.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_lr: float | None
    method: str
    suggestions: dict[str, float | None]
    good_range: tuple[float, float] | None
    group_ratios: list[float]
    stop_reason: str
    warnings: list[str]
    settings: dict[str, Any]
    val_steps: list[int] = dataclasses.field(default_factory=list)
    val_losses: list[float] = dataclasses.field(default_factory=list)
    #: the gradient's noise-to-signal ratio ``B_noise / B`` at the batch size, measured before
    #: the ramp (:mod:`lrkit.find.noise`); ``None`` when not measured
    gradient_noise: float | None = None
    #: the test's wall time in seconds (its snapshot and restore included); not compared: two
    #: results of the same seeded test are equal
    seconds: float | None = dataclasses.field(default=None, compare=False)

    @property
    def suggested_lrs(self) -> list[float] | None:
        if self.suggested_lr is None:
            return None
        return [self.suggested_lr * r for r in self.group_ratios]

    @property
    def steps(self) -> int:
        """Optimizer steps the test took."""
        return len(self.lrs)

    @property
    def cost(self) -> int:
        """Forward and backward passes the test took: its steps (each of ``accumulation_steps``
        micro-batches), and the batches that measured the gradient noise (micro-batches)."""
        per_step = self.settings.get("accumulation_steps")
        per_step = int(per_step) if is_real(per_step) and 1 <= per_step < math.inf else 1
        return len(self.lrs) * per_step + int(self.settings.get("noise_batches") or 0)

    # -- export ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["suggested_lrs"] = self.suggested_lrs
        data["kind"] = "lrkit.finder"
        if self.gradient_noise is not None and math.isinf(self.gradient_noise):
            # "noise dominates" is a measurement, not a missing one: JSON has no infinity, and
            # null would read back as "not measured"
            data["gradient_noise"] = "inf"
        return _json_safe(data)

    def to_json(self, path: str | Path | None = None, **dumps_options) -> str:
        """The result as strict JSON (NaN and infinity as null); ``dumps_options`` go to
        :func:`json.dumps` and may replace the default ``indent=2``."""
        text = json.dumps(self.to_dict(), **{"indent": 2, "allow_nan": False, **dumps_options})
        if path is not None:
            require_folder(path, "the result")
            write_atomically(path, text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinderResult":
        """The result back from :meth:`to_dict` (``null`` back to NaN); a dict with only the
        curve and the suggestion (``lrs``, ``losses``, ``suggested_lr``: what the report detects
        as a range test) gets defaults for the rest, and a broken curve a clear error."""
        require(isinstance(data, dict),
                f"a range test result must be a dict, got {type(data).__name__}")
        missing = [k for k in ("lrs", "losses") if k not in data]
        require(not missing, f"a range test result needs {' and '.join(map(repr, missing))}; "
                             f"it has {', '.join(sorted(map(str, data))) or 'no keys'}")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in fields}
        lrs = _numbers(kwargs["lrs"], "lrs")
        kwargs["lrs"] = lrs
        kwargs["losses"] = _numbers(kwargs["losses"], "losses", len(lrs))
        smoothed = kwargs.get("smoothed")
        kwargs["smoothed"] = ([math.nan] * len(lrs) if smoothed is None
                              else _numbers(smoothed, "smoothed", len(lrs)))
        steps, val = kwargs.get("val_steps") or [], kwargs.get("val_losses") or []
        require(isinstance(steps, (list, tuple)) and isinstance(val, (list, tuple))
                and len(steps) == len(val) and all(isinstance(i, numbers.Integral)
                                                   and 0 <= i < len(lrs) for i in steps),
                f"val_steps must be step indices into lrs (0 .. {len(lrs) - 1}), one per value "
                f"of val_losses; got {steps!r:.60} and {val!r:.60}")
        kwargs["val_steps"] = [int(i) for i in steps]
        kwargs["val_losses"] = _numbers(val, "val_losses")
        suggested, suggestions = kwargs.get("suggested_lr"), kwargs.get("suggestions") or {}
        require(suggested is None or (is_real(suggested) and 0 < suggested < math.inf),
                f"suggested_lr must be a positive number or null, got {suggested!r:.60}")
        require(isinstance(suggestions, dict)
                and all(v is None or (is_real(v) and 0 < v < math.inf)
                        for v in suggestions.values()),
                f"suggestions must map method names to rates (positive numbers or null), got "
                f"{suggestions!r:.60}")
        kwargs["suggested_lr"] = None if suggested is None else float(suggested)
        kwargs["suggestions"] = {str(k): None if v is None else float(v)
                                 for k, v in suggestions.items()}
        # a null is a missing value too (setdefault kept it, and summary() failed on it)
        kwargs["method"] = str(kwargs.get("method") or "unknown")
        good = kwargs.get("good_range")
        kwargs["good_range"] = (tuple(float(v) for v in good) if isinstance(good, (list, tuple))
                                and len(good) == 2 and all(map(is_real, good)) else None)
        ratios = kwargs.get("group_ratios") or [1.0]
        require(isinstance(ratios, (list, tuple)) and all(map(is_real, ratios)),
                f"group_ratios must be a list of numbers, got {ratios!r:.60}")
        kwargs["group_ratios"] = [float(r) for r in ratios]
        kwargs["stop_reason"] = str(kwargs.get("stop_reason") or "unknown")
        warnings = kwargs.get("warnings") or []
        require(isinstance(warnings, (str, list, tuple)),
                f"warnings must be a list of texts, got {warnings!r:.60}")
        kwargs["warnings"] = [warnings] if isinstance(warnings, str) else [str(w) for w in warnings]
        settings = kwargs.get("settings") or {}
        require(isinstance(settings, dict),
                f"settings must be an object of the test's settings, got {settings!r:.60}")
        kwargs["settings"] = dict(settings)
        from lrkit.find.noise import from_json

        noise = from_json(kwargs.get("gradient_noise"))
        require(noise is None or (is_real(noise) and noise >= 0),
                f"gradient_noise must be a number >= 0, \"inf\" or null, got {noise!r:.60}")
        kwargs["gradient_noise"] = None if noise is None else float(noise)
        seconds = kwargs.get("seconds")
        require(seconds is None or (is_real(seconds) and 0 <= seconds < math.inf),
                f"seconds must be a number >= 0 or null, got {seconds!r:.60}")
        kwargs["seconds"] = None if seconds is None else float(seconds)
        return cls(**kwargs)

    # -- text --------------------------------------------------------------------------------------
    def summary(self) -> str:
        lines = []
        if self.suggested_lr is None:
            # why, in the analysis's own words (never fell, too few points, too coarse, ...)
            reason = (self.settings.get("no_suggestion")
                      or "the curve gave none (see the warnings)")
            lines.append(f"No suggestion: {reason}.")
        else:
            lines.append(f"Suggested learning rate: {self.suggested_lr:.3g}  (method: {self.method})")
            if len(self.group_ratios) > 1:
                per_group = ", ".join(f"{lr:.3g}" for lr in self.suggested_lrs or [])
                lines.append(f"Per parameter group:     {per_group}")
        if self.good_range:
            lines.append(f"Good range:              {self.good_range[0]:.3g} .. {self.good_range[1]:.3g}")
        lines.append(f"Steps: {self.steps} ({self.stop_reason})")
        from lrkit.find.noise import describe

        noise = describe(self.gradient_noise)
        if noise:
            from lrkit.find.suggest import ADAM_NOISY, ADAM_NOISY_FRACTION

            fraction = self.settings.get("edge_fraction")
            adam = (self.settings.get("optimizer_family") == "adam"
                    and self.gradient_noise >= ADAM_NOISY
                    and fraction == ADAM_NOISY_FRACTION)
            edge = self.suggestions.get("edge")
            # the rate at the loss minimum itself (the table's "minimum" is fastai's, a tenth)
            at_minimum = (f" of {edge / fraction:.3g}" if edge and fraction
                          and self.lrs and edge > min(self.lrs) else "")
            lines.append(noise[0].upper() + noise[1:] + (
                f"; edge takes {fraction:.2g}x the loss minimum's rate{at_minimum}"
                if fraction else "")
                + (" (Adam at this noise: docs/find.md)" if adam else ""))
        lines.append("")
        width = max([12, *(len(str(name)) for name in self.suggestions)])  # columns stay aligned
        lines.append(f"{'method':<{width}} {'rate':>10}")
        for name, lr in self.suggestions.items():
            mark = " *" if name == self.method else ""
            label = "minimum/10" if name == "minimum" else name  # fastai's: a tenth of it
            lines.append(f"{label:<{width}} {'-' if lr is None else format(lr, '.3g'):>10}{mark}")
        for warning in self.warnings:
            lines.append(f"warning: {warning}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    # -- plot --------------------------------------------------------------------------------------
    def plot(self, path: str | Path | None = None, *, ax=None, show_methods: bool = True):
        """A matplotlib figure of loss against rate with the suggestion and good range marked.

        Works without a display: the figure is built without pyplot unless ``ax`` is given.
        ``path`` saves it (PNG, SVG, PDF... by extension).
        """
        from lrkit.show.plots import finder_figure

        if isinstance(path, (str, os.PathLike)):  # not a file object
            require_plot_path(path)
        fig = finder_figure(self, ax=ax, show_methods=show_methods)
        if path is not None:
            fig.savefig(path, dpi=120, bbox_inches="tight")
        return fig


def _numbers(values: Any, name: str, length: int | None = None) -> list[float]:
    """A saved curve as floats (JSON's null back to NaN), or a clear error naming it."""
    require(isinstance(values, (list, tuple)),
            f"{name} must be a list of numbers, got {values!r:.60}")
    require(length is None or len(values) == length,
            f"{name} has {len(values)} values but lrs has {length}: the curve is cut or mixed up")
    try:
        return [math.nan if v is None else float(v) for v in values]
    except (TypeError, ValueError):
        raise LrkitError(f"{name} must be a list of numbers (null for a missing one), "
                         f"got {values!r:.60}") from None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _json_safe(value.item())
    if isinstance(value, dict):
        return {_json_key(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if callable(getattr(value, "tolist", None)) and hasattr(value, "shape"):
        # a numpy array or a torch tensor (a curve or a setting put in by hand): its numbers
        return _json_safe(value.tolist())
    return value


def _json_key(key: Any) -> Any:
    """A dict key JSON can write: as it is where json writes it itself, else its text."""
    if isinstance(key, (np.generic,)):
        key = key.item()
    return key if key is None or isinstance(key, (str, int, float, bool)) else str(key)
