"""``lrkit.recommend(...)``: measure, then turn the measurements into a :class:`Recipe`."""
from __future__ import annotations

import inspect

import math
import statistics
import time
from typing import Any, Callable

from lrkit.errors import LrkitError, is_real, plain_int, require
from lrkit.problem import Problem, build_problem
from lrkit.recommend import policy
from lrkit.recommend.recipe import (Recipe, follows_linear_rule, importable_name, plain_option,
                                    schedule_free, steps_text, training_text)
from lrkit.state import base_rates

__all__ = ["recommend"]

#: optimizer options never copied into a recipe: implementation switches, not training choices
#: (``maximize`` is one: it says which way the optimizer goes, and a recipe built without it
#: would descend the quantity the user ascends)
_SKIP_OPTIONS = {"lr", "initial_lr", "foreach", "fused", "capturable", "differentiable", "params"}


#: above this share of the planned run, the recipe's notes say what measuring cost
COST_NOTE = 0.2


def _problem_from(target: Any, seed: int) -> Problem:
    return build_problem(target, seed=seed, what="recommend()")


def _total_steps(problem: Problem, steps: Any, epochs: Any) -> tuple[int, str]:
    require(steps is None or epochs is None, "give steps= or epochs=, not both")
    steps = plain_int(steps)  # numpy's integers too, as everywhere lrkit takes counts
    if steps is not None:
        require(isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1,
                f"steps must be a whole number of optimizer steps >= 1, got {steps!r}")
        return steps, steps_text(steps)
    if epochs is not None:
        require(is_real(epochs) and math.isfinite(epochs) and epochs > 0,
                f"epochs must be a positive number, got {epochs!r}")
        epochs = plain_int(epochs)  # numpy's numbers as Python's (the notes print them)
        epochs = epochs if isinstance(epochs, int) else float(epochs)
        per_epoch = _batches_per_epoch(problem)
        if per_epoch is None:
            raise LrkitError("epochs= needs a train_loader with a length (len(loader) batches per "
                             "epoch); give steps= instead")
        require(per_epoch >= 1, "the train_loader is empty (0 batches per epoch)")
        from lrkit.schedules.units import steps_per_epoch_from

        per_epoch = steps_per_epoch_from(per_epoch, problem.accumulation_steps)  # optimizer steps
        total = int(round(epochs * per_epoch))
        require(total >= 1, f"{epochs} epochs of {per_epoch} batches is less than one step")
        return total, f"{epochs:g} epoch{'' if epochs == 1 else 's'} x {steps_text(per_epoch)}"
    if problem.budget_steps:
        return (int(problem.budget_steps),
                f"the problem's budget of {steps_text(problem.budget_steps)}")
    raise LrkitError("give the planned training length: steps=N (optimizer steps) or epochs=E")


def optimizer_options(optimizer: Any, group: int = 0) -> dict:
    """The options of the optimizer's parameter group ``group`` that differ from its class
    defaults (``lr`` excluded)."""
    import torch

    cls = type(optimizer)
    group = optimizer.param_groups[group]
    try:
        baseline = cls([torch.zeros(1, requires_grad=True)], lr=float(group["lr"]) or 1e-3).defaults
    except Exception:  # an optimizer that needs more to build: keep every option
        baseline = {}
    # only what the constructor takes: a schedule-free optimizer keeps its bookkeeping
    # (train_mode, k, weight_sum, ...) in its defaults, and a recipe holding them could not be
    # built (TypeError: unexpected keyword argument 'train_mode')
    try:
        takes = inspect.signature(cls.__init__).parameters
        accepts = (None if any(p.kind is p.VAR_KEYWORD for p in takes.values())
                   else set(takes))
    except (TypeError, ValueError):
        accepts = None
    options = {}
    for key, value in group.items():
        if accepts is not None and key not in accepts:
            continue
        # a tensor or numpy option (Adam's betas may be tensors) as the number it holds: its
        # repr (tensor(0.9000)) is no Python that the recipe's code could run
        value = plain_option(value)
        if key in _SKIP_OPTIONS or not isinstance(value, (int, float, bool, str, tuple, list, type(None))):
            continue
        if key in baseline and _same(baseline[key], value):
            continue
        if key not in optimizer.defaults:  # per-group bookkeeping added by schedulers etc.
            continue
        options[key] = value
    return options


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
        and not isinstance(b, bool) and float(a) == float(b))


def _group_differences(optimizer: Any, rates: list[float], reference: int) -> list[dict]:
    """Per parameter group: its rate as a multiple of the reference group's (``lr_ratio``) and
    the options in which it differs from that group (whose options the recipe takes)."""
    ref = optimizer.param_groups[reference]
    out = []
    for i, group in enumerate(optimizer.param_groups):
        entry: dict[str, Any] = {"lr_ratio": rates[i] / rates[reference] if rates[reference] > 0
                                 else 1.0}
        for key, value in group.items():
            value = plain_option(value)
            if (key in _SKIP_OPTIONS or key not in optimizer.defaults
                    or not isinstance(value, (int, float, bool, str, tuple, list, type(None)))):
                continue
            if key in ref and _same(plain_option(ref[key]), value):
                continue
            entry[key] = value
        out.append(entry)
    return out


def _groups_note(groups: list[dict], reference: int) -> str:
    """The recipe's note on an optimizer with several parameter groups: which group the recipe
    describes, and how the others differ from it (``build(model.parameters())`` makes one)."""
    head = f"your optimizer has {len(groups)} parameter groups"
    others = [(i, g) for i, g in enumerate(groups)
              if i != reference and (g["lr_ratio"] != 1.0 or len(g) > 1)]
    if not others:
        return f"{head}, all at the same rate with the same options: the recipe holds for each"
    parts = []
    for i, group in others:
        items = ([f"lr {group['lr_ratio']:.3g} x peak_lr"] if group["lr_ratio"] != 1.0 else [])
        items += [f"{k}={v!r}" for k, v in group.items() if k != "lr_ratio"]
        parts.append(f"group {i}: " + ", ".join(items))
    return (f"{head}: peak_lr and the options are group {reference}'s, and the others differ "
            f"({'; '.join(parts)}); build() and to_code() make one group over the parameters "
            "they are given: to keep the differences, pass build() parameter groups with these "
            "options, and each group's 'lr' either left out (it then runs at peak_lr) or set "
            "to its rate, lr_ratio x peak_lr: 'lr' is a rate, not the multiple")


def _batch_size(loader: Any) -> int | None:
    size = getattr(loader, "batch_size", None)
    if isinstance(size, int) and size >= 1:
        return size
    sampler = getattr(loader, "batch_sampler", None)
    size = getattr(sampler, "batch_size", None)
    return size if isinstance(size, int) and size >= 1 else None


def _batches_per_epoch(problem: Problem) -> int | None:
    """``len(train_loader)``, None without one; under DistributedDataParallel the smallest over
    the ranks, so that every rank plans the same recipe (a rank with 250 batches and one with
    200 chose different peaks, or different run lengths, and one hung)."""
    from lrkit.adapters.distributed import group_of, min_over_ranks, should_sync
    from lrkit.adapters.torch import model_device

    try:
        length = len(problem.train_loader)  # type: ignore[arg-type]
    except TypeError:
        length = None
    if should_sync((problem.step_options or {}).get("sync_ranks"), problem.model):
        # (-1 for no length: a rank without one makes every rank plan without)
        agreed = min_over_ranks(-1 if length is None else length, model_device(problem.model),
                                group_of(problem.model))
        length = None if agreed < 0 else agreed
    return length


def _epochs(per_epoch_batches: int | None, total: int, accumulation: int = 1) -> float | None:
    """How many passes over the training data ``total`` optimizer steps make, at
    ``accumulation`` batches a step (None without a length)."""
    if per_epoch_batches is None:
        return None
    per_epoch = math.ceil(per_epoch_batches / accumulation)
    return total / per_epoch if per_epoch else None


def _own_warmup(optimizer: Any) -> int:
    """The warmup a schedule-free optimizer does itself (``warmup_steps``, its groups' longest;
    0 for none)."""
    steps = [plain_int(group.get("warmup_steps")) for group in optimizer.param_groups]
    return max([s for s in steps if isinstance(s, int) and not isinstance(s, bool)] + [0])


def _short_run(problem: Problem, rate: Callable[[int], float], steps: int) -> dict:
    """Train ``steps`` steps at ``rate(step)`` and put model, optimizer and RNGs back exactly."""
    trainable = problem.trainable(val_batches=policy.CONFIRM_VAL_BATCHES)
    losses: list[float] = []
    with trainable.preserved():
        for step in range(steps):
            loss = trainable.train_step(float(rate(step)))
            losses.append(loss)
            if not math.isfinite(loss):
                break
        finite = all(math.isfinite(v) for v in losses)
        val = trainable.eval_loss() if finite and problem.val_loader is not None else None
    tail = losses[-max(1, len(losses) // 5):]
    train_tail = statistics.fmean(tail) if finite else math.inf
    # with validation data every run is scored on it: a non-finite validation loss is a run
    # that broke (not one to score on its training loss instead, against others' validation)
    score = train_tail if val is None else val
    return {"steps": len(losses), "diverged": not finite or not math.isfinite(score),
            "train_tail": train_tail, "val": val,
            "score": score if math.isfinite(score) else math.inf,
            "first_loss": losses[0] if losses else None}


def recommend(target: Any, *, steps: int | None = None, epochs: float | None = None,
              seed: int = 0, confirm: bool = True, progress: bool | None = None,
              finder: Any = None) -> Recipe:
    """Measure ``target`` and recommend a complete training recipe for ``steps`` optimizer steps
    (or ``epochs`` passes over its train_loader).

    ``target`` is a built-in example name, ``"path/to/file.py:function"``, an
    :class:`lrkit.Problem`, or a callable ``seed -> Problem`` (dict or tuple also accepted). The
    model and optimizer are measured, then put back exactly as they were.

    Runs the range test, turns its curve into candidate peak rates, and (``confirm=True``, where
    the budget leaves room: at most ~20% of one training run in all; a short run's notes say
    when the range test alone costs more) trains a few short runs of
    the recipe's schedule around the candidates to pick one. Returns a :class:`Recipe`.
    ``finder``: a :class:`~lrkit.find.FinderResult` already measured on this model and optimizer
    (``lrkit.find_lr``), used instead of a second range test: the recipe then reads the same
    curve, and good range, as that result.
    """
    from lrkit.state import capture_rng, restore_rng

    rng = capture_rng()  # the seeded range test and short runs leave the caller's generators as they were
    try:
        return _recommend(target, steps=steps, epochs=epochs, seed=seed, confirm=confirm,
                          progress=progress, finder=finder)
    finally:
        restore_rng(rng)


def _check_finder(finder: Any, problem: Problem) -> None:
    """Refuse a range test measured another way than this problem trains: its curve is of
    another problem (a test with 4x accumulation gave a peak that training at 1x never saw)."""
    settings = finder.settings or {}
    steps = problem.step_options or {}
    wanted = {"accumulation_steps": problem.accumulation_steps,
              "max_grad_norm": steps.get("max_grad_norm"),
              "amp": steps.get("amp") or False}
    for key, value in wanted.items():
        if key not in settings:
            continue
        have = settings[key]
        # amp: on or off (the result records "bf16"/"fp16", a recipe may say True or a dtype)
        same = bool(have) == bool(value) if key == "amp" else have == value
        if not same:
            raise LrkitError(f"finder= was measured with {key}={have!r}, and this problem trains "
                             f"with {key}={value!r}: its curve is another problem's; run "
                             "find_lr with the problem's own step options, or leave finder out")
    from lrkit.adapters.torch_noise import optimizer_family

    family, measured = optimizer_family(problem.optimizer), settings.get("optimizer_family")
    if measured is not None and measured != family:
        # an SGD curve given for an AdamW problem: a 9x lower peak, without a word
        raise LrkitError(f"finder= was measured on an optimizer of the {measured!r} family, and "
                         f"this problem trains with {type(problem.optimizer).__name__} "
                         f"({family!r}): the best rates of the two differ; run find_lr with the "
                         "problem's own optimizer, or leave finder out")
    groups = len(problem.optimizer.param_groups)
    if len(finder.group_ratios) != groups:
        raise LrkitError(f"finder= has {len(finder.group_ratios)} parameter group(s) and this "
                         f"optimizer has {groups}: it was measured on another optimizer")


def training_options(step_options: dict, *, precision: Any = None,
                     device_type: str = "cpu") -> dict:
    """How the measured steps were taken, where it differs from a plain step: gradient clipping
    (``max_grad_norm``; an infinite one clips nothing), accumulation (``accumulation_steps``) and
    autocast (``amp``, as the range test ran it: ``precision``, "bf16" or "fp16"; ``amp=True``
    is float16 on CUDA, and the code said bfloat16). ``device_type``: where the model trains,
    which decides what ``amp=True`` is when the range test did not record its precision."""
    out: dict = {}
    clip = step_options.get("max_grad_norm")
    if clip is not None and math.isfinite(float(clip)):
        out["max_grad_norm"] = float(clip)
    if (step_options.get("accumulation_steps") or 1) > 1:
        out["accumulation_steps"] = int(step_options["accumulation_steps"])
    if precision in ("bf16", "fp16"):
        out["amp"] = precision
    elif precision is None and step_options.get("amp") not in (None, False):
        # a finder saved before it recorded its precision: the problem's own setting, as the
        # range test reads it
        import torch

        from lrkit.adapters.torch import amp_dtype

        dtype = amp_dtype(step_options["amp"], device_type)
        if dtype is not None:
            out["amp"] = "fp16" if dtype == torch.float16 else "bf16"
    return out


def _recommend(target: Any, *, steps: int | None, epochs: float | None, seed: int,
               confirm: bool, progress: bool | None, finder: Any = None) -> Recipe:
    import torch

    from lrkit.find import FinderResult, find_lr

    require(finder is None or isinstance(finder, FinderResult),
            f"finder must be the FinderResult of lrkit.find_lr (or None), got "
            f"{type(finder).__name__}")

    seed = plain_int(seed)
    from lrkit.show.demo import check_seed

    check_seed(seed)  # numpy seeds only 0 .. 2**32 - 1, as the CLI and lrkit demo say
    import numpy as np

    require(isinstance(confirm, (int, np.bool_)) and confirm in (0, 1),  # (bool is an int)
            f"confirm must be True or False, got {confirm!r} (a string such as 'no' is true)")
    problem = _problem_from(target, seed)
    require(isinstance(problem.optimizer, torch.optim.Optimizer),
            f"the problem's optimizer must be a torch.optim.Optimizer, got "
            f"{type(problem.optimizer).__name__}")
    total, length_text = _total_steps(problem, steps, epochs)
    name = importable_name(type(problem.optimizer))
    rates = base_rates(problem.optimizer)  # (not a scheduler's warmup from 0)
    # the range test and the short runs set the first group with a rate (the others keep their
    # ratios to it): peak_lr is that group's rate, and the recipe takes that group's options
    reference = next((i for i, lr in enumerate(rates) if lr > 0), 0)
    options = optimizer_options(problem.optimizer, reference)
    batch = _batch_size(problem.train_loader)
    if batch is not None:  # the batch of one optimizer step: the loader's x the accumulation
        batch *= problem.accumulation_steps

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    reused = finder is not None
    if reused:
        _check_finder(finder, problem)
    else:
        # the recipe reads the curve's minimum, not the noise-adjusted edge: no noise batches
        finder = find_lr(problem.model, problem.optimizer, problem.train_loader,
                         **problem.loss_arguments(), budget_steps=total,
                         noise_batches=0, progress=progress, **problem.step_options)
    # a schedule-free optimizer's own warmup (warmup_steps) moves into the schedule, where it is
    # seen and previewed: the recipe warmed it up twice (its own and the schedule's); the range
    # test and the short runs step without it (TorchTrainable.preserved). Its shape stays the
    # recipe's: on three examples at 2000 steps a cosine ended level with a held rate (+0.2%,
    # -1%, -2%)
    own_warmup = _own_warmup(problem.optimizer) if schedule_free(problem.optimizer) else 0
    if own_warmup:
        options.pop("warmup_steps", None)
    plan = policy.plan(finder, total_steps=total, optimizer=name,
                       current_lr=rates[reference] if rates else None, confirm=confirm,
                       epochs=_epochs(_batches_per_epoch(problem), total,
                                      problem.accumulation_steps),
                       warmup=own_warmup or None)
    confirmations = []
    for candidate in plan.candidates if plan.confirm_steps else []:
        schedule = policy.short_schedule(plan, candidate)
        torch.manual_seed(seed)
        result = _short_run(problem, schedule, plan.confirm_steps)
        result["lr"] = candidate
        confirmations.append(result)
    choice = policy.choose(plan, confirmations)
    seconds = time.perf_counter() - t0
    if reused:  # its steps count in the tuning cost: its time too (it read 0.0 s)
        seconds += finder.seconds or 0.0
    tuning_steps = finder.steps + sum(c["steps"] for c in confirmations)

    # the device-specific flags are left out of the recipe (they belong to the machine that
    # trains), said when the user had set one: "kept, with its options" had dropped them silently
    flags = sorted(k for k in ("foreach", "fused", "capturable", "differentiable")
                   if problem.optimizer.param_groups[reference].get(k))
    if own_warmup:
        # (the schedule's warmup is at most the run less one step: said when it was cut)
        cut = (f", cut to {plan.warmup_steps} steps to fit the {total}-step run"
               if plan.warmup_steps != own_warmup else "")
        lengths = sorted({g.get("warmup_steps") for g in problem.optimizer.param_groups
                          if is_real(g.get("warmup_steps"))}, reverse=True)
        which = (f", the longest of its groups' {', '.join(f'{n:g}' for n in lengths)}"
                 if len(lengths) > 1 else "")
        choice.notes.insert(0, f"schedule-free: its own warmup (warmup_steps={own_warmup}{which}) "
                               f"is the schedule's warmup{cut}, with warmup_steps=0 in the "
                               "optimizer (not two warmups)")
    notes = [f"optimizer: your {name} kept, with its options"
             + (f" ({', '.join(f'{k}={v!r}' for k, v in options.items())})" if options else "")
             + (f"; its device flags ({', '.join(f'{k}=True' for k in flags)}) are left out of "
                "the recipe: set them for the machine you train on" if flags else ""),
             *choice.notes,
             f"training length: {length_text}"]
    if reused:  # its steps were spent before: counted in the cost, said here
        notes.append(f"range test: the one given (finder=, {steps_text(finder.steps)}), not "
                     "measured again")
    if tuning_steps > COST_NOTE * total:
        # the range test alone takes ~100 steps: for a short run that is a large share of it
        notes.append(f"measuring took {steps_text(tuning_steps)}, {tuning_steps / total:.0%} of "
                     f"the planned {total}: the range test alone needs about 100; for a run this "
                     "short, a recipe from a longer planned run scaled down, or a few short trials "
                     "(lrkit sweep), cost less")
    groups = _group_differences(problem.optimizer, rates, reference)
    if own_warmup:  # the schedule's warmup replaces every group's own: none is kept in a group
        for group in groups:
            group.pop("warmup_steps", None)
    if len(groups) > 1:
        notes.append(_groups_note(groups, reference))
    from lrkit.adapters.torch import model_device

    training = training_options(problem.step_options, precision=finder.settings.get("amp"),
                                device_type=model_device(problem.model).type)
    if training:
        # measured so: the pasted code must train so (a peak measured with clipping at 0.1 was
        # 24x the one without, and the code, which did not clip, went to NaN by step 100)
        notes.append(f"measured with {training_text(training)}: train with the same (the peak "
                     "depends on it; to_code() says where in the loop)")
    evidence = {
        # a target given by name ("moons-mlp", "train.py:make") is named as lrkit find names it
        # (a Problem made without a name is "custom": no name, rather than "Recipe for custom")
        "problem": target.strip() if isinstance(target, str) else (
            problem.name if problem.name != "custom" else None),
        "finder": {"lrs": finder.lrs, "losses": finder.losses, "smoothed": finder.smoothed,
                   "suggested_lr": finder.suggested_lr, "method": finder.method,
                   "stop_reason": finder.stop_reason, "warnings": finder.warnings},
        "anchor_lr": plan.anchor,
        "candidates": plan.candidates,
        "confirmations": confirmations,
        "confirm_schedule": plan.confirm_spec,
        "shape": plan.shape,
        "epochs": plan.epochs,
        # the fraction is of total_steps at batch_size (kept when the recipe is rescaled)
        "cost": {"steps": tuning_steps, "fraction": tuning_steps / total, "seconds": seconds,
                 "total_steps": total, "batch_size": batch,
                 "finder_steps": finder.steps,
                 "confirm_steps": sum(c["steps"] for c in confirmations)},
        "seed": seed,
        "policy": policy.VERSION,
    }
    if len(groups) > 1:
        evidence["param_groups"] = groups
    if training:
        evidence["training"] = training
    # the batch-size rule's kind, read from the optimizer now: a JSON read where the class's
    # module did not import took the square-root rule for a subclass of SGD
    evidence["sgd_like"] = follows_linear_rule(type(problem.optimizer))
    if type(problem.optimizer).__module__ == "__main__":
        notes.append(f"{type(problem.optimizer).__name__} is defined in your script (__main__): "
                     "the code imports it from there; move it into a module to use the recipe "
                     "in another script")
    return Recipe(optimizer=name, optimizer_options=options, peak_lr=choice.peak_lr,
                  warmup_steps=plan.warmup_steps, total_steps=total, schedule=plan.spec,
                  good_range=finder.good_range, batch_size=batch, notes=notes, evidence=evidence)
