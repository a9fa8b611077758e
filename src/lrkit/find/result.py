"""The outcome of a range test: the whole curve, every method's suggestion, the good range,
warnings, and ways to show it (text, JSON, plot)."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np


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

    @property
    def suggested_lrs(self) -> list[float] | None:
        if self.suggested_lr is None:
            return None
        return [self.suggested_lr * r for r in self.group_ratios]

    @property
    def steps(self) -> int:
        """Optimizer steps the test took (its cost)."""
        return len(self.lrs)

    # -- export ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["suggested_lrs"] = self.suggested_lrs
        data["kind"] = "lrkit.finder"
        return _json_safe(data)

    def to_json(self, path: str | Path | None = None, **dumps_options) -> str:
        text = json.dumps(self.to_dict(), indent=2, **dumps_options)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinderResult":
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in fields}
        kwargs["losses"] = [math.nan if v is None else v for v in kwargs["losses"]]
        kwargs["smoothed"] = [math.nan if v is None else v for v in kwargs["smoothed"]]
        if kwargs.get("good_range") is not None:
            kwargs["good_range"] = tuple(kwargs["good_range"])
        return cls(**kwargs)

    # -- text --------------------------------------------------------------------------------------
    def summary(self) -> str:
        lines = []
        if self.suggested_lr is None:
            lines.append("No suggestion: the loss never fell over the swept range.")
        else:
            lines.append(f"Suggested learning rate: {self.suggested_lr:.3g}  (method: {self.method})")
            if len(self.group_ratios) > 1:
                per_group = ", ".join(f"{lr:.3g}" for lr in self.suggested_lrs or [])
                lines.append(f"Per parameter group:     {per_group}")
        if self.good_range:
            lines.append(f"Good range:              {self.good_range[0]:.3g} .. {self.good_range[1]:.3g}")
        lines.append(f"Steps: {self.steps} ({self.stop_reason})")
        lines.append("")
        lines.append(f"{'method':<12} {'rate':>10}")
        for name, lr in self.suggestions.items():
            mark = " *" if name == self.method else ""
            lines.append(f"{name:<12} {'-' if lr is None else format(lr, '.3g'):>10}{mark}")
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

        fig = finder_figure(self, ax=ax, show_methods=show_methods)
        if path is not None:
            fig.savefig(path, dpi=120, bbox_inches="tight")
        return fig


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
