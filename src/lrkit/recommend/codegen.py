"""``Recipe.to_code()``: a few lines of plain PyTorch (``torch.optim`` + ``LambdaLR``) that give
the same rates as ``Recipe.build()`` at every step, without lrkit.

The schedule is written out as a small closed-form function, so the generated code is exact and
readable. It covers what recipes use: an optional linear warmup followed by ``constant``,
``cosine``, ``linear``, ``polynomial`` or ``wsd`` (with any decay shape and floor).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lrkit.errors import LrkitError

if TYPE_CHECKING:  # pragma: no cover
    from lrkit.recommend.recipe import Recipe


def _num(x: float) -> str:
    return _literal(float(x))


def _literal(value) -> str:
    """``value`` as Python source: ``repr``, except that non-finite floats (whose repr, ``inf`` or
    ``nan``, is a NameError in the pasted code) are written ``float('inf')``."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def _tail_lines(node, offset: str) -> list[str]:
    """Body lines (indented 4) returning the multiplier of ``node`` at local step ``t``,
    where ``t = step - offset`` has been set."""
    from lrkit.schedules import WSD, Constant, Cosine, Linear, Polynomial

    if node is None:
        return ["    return 1.0"]
    if isinstance(node, Constant):
        return [f"    return {_num(node.value)}"]
    if isinstance(node, Cosine):
        n, floor = node.steps, node.floor
        curve = f"(1.0 + math.cos(math.pi * t / {n})) / 2.0"
        return [f"    if t >= {n}:",
                f"        return {_num(floor)}",
                f"    return {_num(floor)} + (1.0 - {_num(floor)}) * {curve}" if floor else
                f"    return {curve}"]
    if isinstance(node, Linear):
        n = node.steps
        # (the end exactly, as the schedule gives it: the formula at t = n rounded past it)
        return [f"    if t >= {n}:",
                f"        return {_num(node.end)}",
                f"    return {_num(node.start)} + ({_num(node.end)} - {_num(node.start)}) * t / {n}"]
    if isinstance(node, Polynomial):
        n = node.steps
        return [f"    if t >= {n}:",
                f"        return {_num(node.end)}",
                f"    return {_num(node.end)} + (1.0 - {_num(node.end)}) * (1.0 - t / {n}) ** {_num(node.power)}"]
    if isinstance(node, WSD) and node.warmup == 0:
        n, d, floor = node.steps, node.decay, node.floor
        decay = {"linear": "1.0 - p", "cosine": "0.5 * (1.0 + math.cos(math.pi * p))",
                 "1-sqrt": "1.0 - math.sqrt(p)"}[node.shape]
        return [f"    if t < {n - d}:",
                "        return 1.0",
                f"    if t >= {n}:",
                f"        return {_num(floor)}",
                f"    p = (t - {n - d}) / {d}",
                f"    return max(({decay}) * (1.0 - {_num(floor)}) + {_num(floor)}, 0.0)"]
    raise LrkitError(
        f"to_code() cannot write {node!r} as plain PyTorch; it supports an optional linear warmup "
        "followed by constant, cosine, linear, polynomial or wsd without a warmup of its own. Use "
        "recipe.build() instead")


def schedule_function(spec: str, *, name: str = "lr_factor") -> str:
    """Python source of ``def name(step)`` returning the spec's multiplier at ``step``."""
    from lrkit.schedules import Warmup, parse

    schedule = parse(spec)
    lines = [f"def {name}(step):", f'    """Multiplier of the peak rate at optimizer step `step`: {schedule}."""']
    tail = schedule
    if isinstance(schedule, Warmup):
        if schedule.shape != "linear":
            raise LrkitError(f"to_code() supports linear warmups only, got shape={schedule.shape!r}")
        tail = schedule.then
        w, start = schedule.steps, schedule.start
        # the warmup ends at the following schedule's first value (1.0 for the shapes used here)
        target = 1.0 if tail is None else tail(0)
        body = _tail_lines(tail, str(w))
        ramp = f"{_num(start)} + (1.0 - {_num(start)}) * (step / {w})" if start else f"step / {w}"
        lines += [f"    if step < {w}:",
                  f"        return {_num(target)} * ({ramp})" if target != 1.0 else
                  f"        return {ramp}",
                  f"    t = step - {w}"]
        lines += body
    else:
        lines.append("    t = step")
        lines += _tail_lines(tail, "0")
    return "\n".join(lines)


def recipe_code(recipe: "Recipe", *, model: str = "model") -> str:
    """The recipe as plain PyTorch: imports, optimizer, schedule function, LambdaLR."""
    fn = schedule_function(recipe.schedule)
    module, _, cls = recipe.optimizer.rpartition(".")
    imports = ["import math", "", "import torch"]
    if module:
        imports.append(f"from {module} import {cls}")
        ctor = cls
    else:
        ctor = f"torch.optim.{cls}"
    args = [f"{model}.parameters()", f"lr={_num(recipe.peak_lr)}"]
    args += [f"{k}={_literal(v)}" for k, v in recipe.optimizer_options.items()]
    from lrkit.recommend.recipe import steps_text

    head = (f"# lrkit recipe: peak lr {recipe.peak_lr:.3g}, "
            f"warmup {steps_text(recipe.warmup_steps)}, {steps_text(recipe.total_steps)} in all"
            + (f", batch size {recipe.batch_size}" if recipe.batch_size else ""))
    return "\n".join([
        head,
        *imports,
        "",
        *_groups_comment(recipe, model),
        f"optimizer = {ctor}({', '.join(args)})",
        *(["optimizer.train()  # schedule-free: train mode for the steps, optimizer.eval() "
           "before evaluating"] if "ScheduleFree" in cls and not cls.endswith("Closure")
          else []),
        "",
        "",
        fn,
        "",
        "",
        "scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)",
        *_step_comment(recipe, model),
        "",
    ])


def _step_comment(recipe: "Recipe", model: str) -> list[str]:
    """How to take a training step: plain, or as the recipe was measured (clipping, accumulation,
    autocast: ``evidence["training"]``), which the peak depends on."""
    training = recipe.evidence.get("training")
    training = training if isinstance(training, dict) else {}
    if not training:
        return ["# each training step: loss.backward(); optimizer.step(); scheduler.step(); "
                "optimizer.zero_grad()"]
    lines = ["# each training step, as the recipe was measured:"]
    if "amp" in training:
        dtype = {"fp16": "torch.float16"}.get(training["amp"], "torch.bfloat16")
        lines.append(f"#   with torch.autocast(device_type, dtype={dtype}): loss = ... "
                     + ("(float16 needs a torch.amp.GradScaler)" if dtype == "torch.float16"
                        else ""))
    if "accumulation_steps" in training:
        n = training["accumulation_steps"]
        lines.append(f"#   (loss / {n}).backward() for each of {n} micro-batches, then:")
    else:
        lines.append("#   loss.backward()")
    if "max_grad_norm" in training:
        lines.append(f"#   torch.nn.utils.clip_grad_norm_({model}.parameters(), "
                     f"{_num(training['max_grad_norm'])})")
    lines.append("#   optimizer.step(); scheduler.step(); optimizer.zero_grad()")
    return lines


def _groups_comment(recipe: "Recipe", model: str) -> list[str]:
    """Comment lines for a recipe measured on an optimizer with parameter groups that differ
    (``evidence["param_groups"]``): the code makes one group, so they show the groups to pass
    instead, each with its own options and rate (empty when the groups are alike)."""
    groups = recipe.evidence.get("param_groups")
    if not (isinstance(groups, list) and len(groups) > 1
            and all(isinstance(g, dict) for g in groups)
            and any(g.get("lr_ratio", 1.0) != 1.0 or set(g) - {"lr_ratio"} for g in groups)):
        return []
    items = []
    for i, group in enumerate(groups):
        parts = [f'"params": <group {i}\'s parameters>']
        ratio = group.get("lr_ratio", 1.0)
        if ratio != 1.0:
            parts.append(f'"lr": {_num(recipe.peak_lr * ratio)}')
        parts += [f'"{k}": {_literal(v)}' for k, v in group.items() if k != "lr_ratio"]
        items.append("{" + ", ".join(parts) + "}")
    listed = ",\n#      ".join(items)
    return [f"# your optimizer had {len(groups)} parameter groups; this code makes one over",
            f"# {model}.parameters() with the options below. To keep the groups' differences, pass",
            f"# them instead of {model}.parameters() (the schedule scales each group's own lr):",
            f"#     [{listed}]"]
