"""Recommend a complete training recipe: optimizer, peak rate, warmup, schedule, batch scaling.

    import lrkit
    recipe = lrkit.recommend("digits-mlp", steps=1500)      # or a Problem, or file.py:function
    optimizer, scheduler = recipe.build(model.parameters())
    print(recipe.to_code())                                  # the same in plain PyTorch
    recipe.for_batch_size(128)                               # linear rule (SGD) / sqrt (adaptive)

See docs/recommend.md for how the choices are made and how the recipe compares with tuned and
tuning-free baselines.
"""
from __future__ import annotations

import sys
import types

from lrkit.recommend.api import recommend
from lrkit.recommend.recipe import Recipe

__all__ = ["recommend", "Recipe"]


class _CallableModule(types.ModuleType):
    """Importing ``lrkit.recommend.*`` makes ``lrkit.recommend`` the package; calling it still
    calls :func:`recommend`, so ``lrkit.recommend(...)`` works in every import order."""

    def __call__(self, *args, **kwargs):
        return recommend(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
