"""A sweep's settings in one picklable object, shared by the engine, its workers and the results.

The settings that define *which* trials a sweep holds (problem, rates, optimizers, seeds,
budget, strategy) are stored with the study; a later run with other settings is refused unless
told to continue. Trials are matched to the sweep by their key: optimizer, rate, seed, budget.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from lrkit.sweep.space import OptimizerSpec, RateSpace, lr_key
from lrkit.sweep.strategy import Point, Strategy
from lrkit.sweep.trial import TrialConfig

SETTINGS_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    problem: Any
    problem_label: str
    rates: RateSpace
    optimizers: tuple[OptimizerSpec, ...]
    budget: int
    seeds: int = 1
    mode: str = "refine"
    stride: int = 4
    eta: int = 3
    rungs: int = 2
    repeat_top: int = 3
    diverge_factor: float = 10.0
    tolerance: float = 0.1
    max_retries: int = 3
    #: a digest of the recipe's source (its file, or a callable's own code): a recipe edited
    #: since the study was started trains other models than its stored trials did
    problem_source: str | None = None
    #: a digest of the local modules a recipe file imports (None: none), apart from the file's
    #: own (a study stored before it was kept resumes as it did)
    problem_imports: str | None = None

    def strategy(self) -> Strategy:
        return Strategy(len(self.rates), len(self.optimizers), budget=self.budget,
                        seeds=self.seeds, mode=self.mode, stride=self.stride, eta=self.eta,
                        rungs=self.rungs, repeat_top=self.repeat_top, tolerance=self.tolerance)

    def settings(self) -> dict[str, Any]:
        """What identifies the sweep's trials; compared with the stored study's."""
        return {
            "version": SETTINGS_VERSION,
            "problem": self.problem_label,
            "rates": self.rates.to_dict(),
            "optimizers": [o.key() for o in self.optimizers],
            "optimizer_labels": [o.label for o in self.optimizers],
            "budget": self.budget,
            "seeds": self.seeds,
            "strategy": ({"mode": "grid"} if self.mode == "grid" else
                         {"mode": self.mode, "stride": self.stride, "eta": self.eta,
                          "rungs": self.rungs, "repeat_top": self.repeat_top,
                          "tolerance": self.tolerance}),
            "diverge_factor": self.diverge_factor,
            # (only for recipes with a source: a built-in example's studies keep their settings)
            **({"problem_source": self.problem_source} if self.problem_source else {}),
            **({"problem_imports": self.problem_imports} if self.problem_imports else {}),
        }

    def settings_json(self) -> str:
        return json.dumps(self.settings(), sort_keys=True)

    # -- trial keys --------------------------------------------------------------------------------
    def trial_attrs(self, point: Point, order: int, phase: str, ref: int | None = None
                    ) -> dict[str, Any]:
        """The user attributes that tie a stored trial to its point (``ref``: the rate index of
        the reference it is compared with at the rungs)."""
        return {"optimizer": self.optimizers[point.group].key(),
                "optimizer_label": self.optimizers[point.group].label,
                "lr": lr_key(self.rates.values[point.index]), "seed": point.seed,
                "budget": self.budget, "order": order, "phase": phase,
                "ref_lr": None if ref is None else lr_key(self.rates.values[ref])}

    def ref_of(self, attrs: dict[str, Any]) -> int | None:
        return self._lookup()[1].get(attrs.get("ref_lr"))

    def params(self, point: Point) -> dict[str, Any]:
        """Optuna parameters of a trial. The optimizer is a user attribute, not a categorical
        parameter, so that a continued study may change the list of optimizers."""
        return {"lr": self.rates.values[point.index], "seed": point.seed}

    def point_of(self, attrs: dict[str, Any]) -> Point | None:
        """The point of a stored trial, or None when it does not belong to these settings."""
        groups, index = self._lookup()
        return point_from(attrs, groups, index, self.budget, self.seeds)

    def _lookup(self):
        cached = self.__dict__.get("_lookup_cache")
        if cached is None:
            cached = ({o.key(): g for g, o in enumerate(self.optimizers)}, self.rates.index_of())
            object.__setattr__(self, "_lookup_cache", cached)
        return cached

    def trial_config(self, point: Point) -> TrialConfig:
        strategy = self.strategy()
        return TrialConfig(problem=self.problem, optimizer=self.optimizers[point.group],
                           lr=self.rates.values[point.index], seed=point.seed, budget=self.budget,
                           eval_steps=tuple(strategy.rung_steps),
                           diverge_factor=self.diverge_factor)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lookup_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def setting_differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Each setting a stored sweep (its :meth:`SweepSpec.settings`) has other than ``wanted``,
    as ``"key: stored X, now Y"`` (a rate range by its count and ends), for the message that
    refuses to mix them; the optimizers' labels only when the optimizers themselves agree."""
    def shown(key: str, value: Any) -> Any:
        if key == "rates" and value:
            text = f"{len(value['values'])} rates {value['values'][0]}..{value['values'][-1]}"
            other = wanted if value is stored.get("rates") else stored
            other_values = set((other.get("rates") or {}).get("values") or [])
            only = [v for v in value["values"] if v not in other_values]
            # the rates only this side has: two lists of one count and the same ends read
            # the same ("3 rates 0.001..0.1" both)
            return text + (f" (only here: {', '.join(str(v) for v in only[:5])}"
                           + (", ..." if len(only) > 5 else "") + ")" if only else
                           f" as a {value.get('kind')}")
        return value

    differences = []
    for key in sorted(set(stored) | set(wanted)):
        if key == "optimizer_labels" and stored.get("optimizers") != wanted.get("optimizers"):
            continue
        if stored.get(key) != wanted.get(key):
            differences.append(f"{key}: stored {shown(key, stored.get(key))!r}, "
                               f"now {shown(key, wanted.get(key))!r}")
    return differences


def another_recipe(stored: dict, wanted: dict) -> bool:
    """Whether a stored study is of another recipe than ``wanted``'s, which no ``--continue``
    can take over. Not when only the name differs and the recipe is the same: the same source
    (a recipe file moved, or the project), or a recipe file's function of the same name in a
    study stored before lrkit kept the source (which named the file by its base name)."""
    old, new = stored.get("problem"), wanted.get("problem")
    if old == new:
        return False
    if stored.get("problem_source") is not None:
        return stored["problem_source"] != wanted.get("problem_source")
    return not (isinstance(old, str) and isinstance(new, str) and ".py:" in old
                and ".py:" in new and old.rpartition(":")[2] == new.rpartition(":")[2])


def point_from(attrs: dict[str, Any], groups: dict[str, int], index: dict[str, int],
               budget: int, seeds: int) -> Point | None:
    """The point of a stored trial's attributes (``groups``: optimizer key -> group, ``index``:
    rate key -> index), or None when it does not belong to these settings."""
    if attrs.get("budget") != budget:
        return None
    group = groups.get(attrs.get("optimizer"))
    rate = index.get(attrs.get("lr"))
    seed = attrs.get("seed")
    if group is None or rate is None or not isinstance(seed, int) or not 0 <= seed < seeds:
        return None
    return Point(group, rate, seed)


class StoredPoints:
    """The points of a stored sweep's settings, as :func:`observe` reads its trials: a
    :class:`SweepSpec` without the problem, for reading a sweep back."""

    def __init__(self, settings: dict[str, Any], max_retries: int) -> None:
        self.budget = settings["budget"]
        self.seeds = int(settings["seeds"])
        self.max_retries = max_retries
        self._groups = {key: g for g, key in enumerate(settings["optimizers"])}
        self._index = {lr_key(v): i for i, v in enumerate(settings["rates"]["values"])}

    def point_of(self, attrs: dict[str, Any]) -> Point | None:
        return point_from(attrs, self._groups, self._index, self.budget, self.seeds)


def comparable(stored: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """``wanted`` as a study stored before lrkit kept the recipe's source would hold it: without
    ``problem_source`` (or ``problem_imports``) when ``stored`` has none (such a study resumes as
    it did; the digest is recorded from then on)."""
    if stored.get("optimizers") == wanted.get("optimizers") and (
            stored.get("optimizer_labels") != wanted.get("optimizer_labels")):
        # the same optimizers written otherwise ('nadam' for 'NAdam', a class for its name):
        # the same trials, not other settings (it was refused)
        wanted = {**wanted, "optimizer_labels": stored.get("optimizer_labels")}
    # (the same for ``problem_imports``, kept since a later version: a study stored before it,
    # of an unchanged recipe, was refused as "the recipe's source changed")
    return {key: value for key, value in wanted.items()
            if key not in ("problem_source", "problem_imports") or key in stored}
