"""The range test itself: drive any :class:`~lrkit.trainable.Trainable` through a rising rate,
record the loss, stop on divergence, and put the trainable back exactly as it was."""
from __future__ import annotations

import math
import time

from lrkit.errors import is_real, plain_int, require
from lrkit.find import suggest
from lrkit.find.divergence import DivergenceWatch
from lrkit.find.ramp import ramp_rates
from lrkit.find.result import FinderResult
from lrkit.show.progress import progress_bar
from lrkit.trainable import Trainable


#: the share of the planned run (``budget_steps``) a range test should cost at most
COST_SHARE = 0.3
#: micro-batches whose gradients measure the noise-to-signal ratio before the ramp (0: none)
NOISE_BATCHES = 16
#: a gradient-noise ratio from which the suggestion comes with a warning: on the benchmark's 10
#: tasks at 5 or more (batches of 4-8, or a noisy loss) it landed within 5% on 2 (docs/find.md)
VERY_NOISY = 5.0
#: fewer steps per decade of an exponential ramp than this give a curve too coarse to read
#: (the default, 100 steps over 8 decades, has 12.5; tests and quick checks use 30)
MIN_STEPS_PER_DECADE = 3

def range_test(
    trainable: Trainable,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    ramp: str = "exp",
    smoothing: float = 0.9,
    diverge_threshold: float = 4.0,
    val_every: int | None = None,
    method: str = "auto",
    budget_steps: int | None = None,
    noise_batches: int = NOISE_BATCHES,
    progress: bool | None = None,
) -> FinderResult:
    """Run a learning-rate range test on any trainable and suggest a rate.

    The rate grows from ``start_lr`` to ``end_lr`` over ``num_steps`` optimizer steps; the test
    stops early when the loss is non-finite or its EMA (``smoothing`` = beta) rises above its best
    by ``diverge_threshold - 1`` times the improvement so far (see :func:`has_diverged`). ``val_every`` evaluates the
    trainable's fixed validation subset every k steps and bases the suggestion on that curve.
    ``budget_steps`` (the planned training length) is recorded with the result, a test longer
    than ``COST_SHARE`` of it gets a warning, and ``edge`` applies its rule for Adam at a high
    noise only to runs of ``ADAM_LONG_RUN`` steps or more (or of unknown length).
    ``noise_batches``: before the ramp, a trainable that can (``gradient_noise(k)``, as the
    PyTorch one) measures its gradient's noise-to-signal ratio on that many batches with no
    update, and ``edge`` reads it (:func:`lrkit.find.suggest.edge_fraction`); 0 skips it.
    The trainable is restored exactly afterwards, even when this raises.
    """
    val_every, budget_steps = plain_int(val_every), plain_int(budget_steps)  # np.int64 too
    noise_batches = plain_int(noise_batches)
    require(isinstance(noise_batches, int) and not isinstance(noise_batches, bool)
            and (noise_batches == 0 or noise_batches >= 2),
            f"noise_batches must be 0 (no measurement) or an integer >= 2, got {noise_batches!r}")
    rates = ramp_rates(start_lr, end_lr, num_steps, ramp).tolist()  # Python floats: cheaper per step
    require(is_real(smoothing) and math.isfinite(smoothing) and 0 <= smoothing < 1,
            f"smoothing must be a number in [0, 1), got {smoothing!r}")
    require(is_real(diverge_threshold) and math.isfinite(diverge_threshold) and diverge_threshold > 1,
            f"diverge_threshold must be a number > 1, got {diverge_threshold!r}")
    require(val_every is None or (isinstance(val_every, int) and not isinstance(val_every, bool)
                                  and val_every >= 1),
            f"val_every must be a positive integer or None, got {val_every!r}")
    require(method == "auto" or method in suggest.METHODS,
            f"method must be 'auto' or one of {sorted(suggest.METHODS)}, got {method!r}")
    require(budget_steps is None or (isinstance(budget_steps, int)
                                     and not isinstance(budget_steps, bool) and budget_steps > 0),
            f"budget_steps must be a positive integer or None, got {budget_steps!r}")
    # numpy scalars pass the checks: plain Python numbers from here on (settings go to JSON)
    start_lr, end_lr, num_steps = float(start_lr), float(end_lr), int(num_steps)
    smoothing, diverge_threshold = float(smoothing), float(diverge_threshold)

    lrs: list[float] = []
    losses: list[float] = []
    val_steps: list[int] = []
    val_losses: list[float] = []
    stop_reason = "completed"
    # let the noise estimate settle before judging a rise
    watch = DivergenceWatch(diverge_threshold, smoothing, min_steps=max(5, num_steps // 20))
    bar = progress_bar(num_steps, "lrkit find", enabled=progress)
    measure = getattr(trainable, "gradient_noise", None) if noise_batches else None
    gradient_noise = None
    family = getattr(trainable, "optimizer_family", "other")
    require(family in suggest.OPTIMIZER_FAMILIES,
            f"the trainable's optimizer_family must be one of {list(suggest.OPTIMIZER_FAMILIES)}, "
            f"got {family!r}")
    started = time.perf_counter()
    with trainable.preserved():
        try:
            if callable(measure):
                gradient_noise = measure(noise_batches)
            for step, lr in enumerate(rates):
                loss = trainable.train_step(lr)
                lrs.append(lr)
                losses.append(loss)
                bar.update(1)
                if not math.isfinite(loss):
                    stop_reason = f"loss became {loss} at lr={lr:.3g}"
                    break
                diverged = watch.update(loss)
                if val_every and (step + 1) % val_every == 0:
                    val_losses.append(trainable.eval_loss())
                    val_steps.append(step)
                if diverged:
                    stop_reason = (f"diverged at lr={lr:.3g} (the smoothed loss rose above its "
                                   f"best by over {diverge_threshold - 1:g}x its fall so far)")
                    break
        finally:
            bar.close()
    seconds = time.perf_counter() - started  # the test, its snapshot and restore

    use_val = bool(val_steps) and val_losses[0] is not None and len(val_steps) >= suggest.MIN_POINTS
    curve_lrs = [lrs[i] for i in val_steps] if use_val else lrs
    curve_losses = val_losses if use_val else losses
    analysis = suggest.analyse(curve_lrs, curve_losses, method=method,
                               smooth_window=1.0 if use_val else None,
                               gradient_noise=gradient_noise, optimizer_family=family,
                               budget_steps=budget_steps)
    warnings = list(analysis.warnings)
    if getattr(trainable, "restores_state", True) is False:
        # a plain function's state is its own: without save_fn/load_fn nothing was put back
        warnings.append(
            "nothing was restored after the test: the training function's state (its weights, "
            "its optimizer) is where the ramp left it; pass save_fn= and load_fn= to "
            "FunctionTrainable to have it put back, or rebuild it before training")
    unreadable = analysis.unreadable  # why no suggestion can be made, when none can
    no_val_data = bool(val_steps) and val_losses[0] is None
    if val_every and no_val_data:
        # asked for the validation curve of a trainable without validation data (eval_loss
        # gave None): "too few points, pass val_every=..." would name the wrong cause
        warnings.append(
            f"val_every={val_every} asked for the validation curve, but the trainable has no "
            "validation data (its eval_loss() returned None): the suggestion uses the training "
            "curve; give it validation data (FunctionTrainable(eval_fn=...), or val_loader= "
            "for find_lr)")
    elif val_every and not use_val:
        # asked for the validation curve, but it has too few points to read: say so, and how many
        # steps between evaluations would give enough
        every = max(1, len(lrs) // (2 * suggest.MIN_POINTS))
        warnings.append(
            f"validation every {val_every} steps gave {len(val_steps)} points over {len(lrs)} "
            f"steps, fewer than the {suggest.MIN_POINTS} a suggestion needs: the suggestion uses "
            f"the training curve; pass val_every={every} (or more steps) for the validation curve")
    first_loss_bad = bool(losses) and not math.isfinite(losses[0])
    if first_loss_bad:
        # the first loss is computed before any update: no rate made it non-finite (and the
        # curve's own "too few points, lower start_lr" would point the wrong way)
        warnings = [w for w in warnings if w != unreadable]
        unreadable = (
            f"the very first loss was {losses[0]}, before any update at any rate: the model or "
            "the data give non-finite values as they are (check the inputs, the loss function "
            "and the model's initialisation), not the learning rate")
        warnings.append(unreadable)
    elif stop_reason != "completed" and len(lrs) < 0.2 * num_steps:
        if smoothing < 0.5 and all(map(math.isfinite, losses)):
            # little smoothing: the stop rule reads single batches, and their noise tripped it
            warnings.append(
                f"the test stopped after {len(lrs)} of {num_steps} steps with "
                f"smoothing={smoothing:g}: the stop rule then reads single batches, and their "
                "noise can trip it; raise smoothing (default 0.9) or diverge_threshold, or "
                "lower start_lr if the loss truly blew up")
        elif ramp == "linear" and len(lrs) > 1 and start_lr < 0.5 * lrs[1]:
            # a linear ramp's second rate is already about end_lr / num_steps: start_lr is not
            # what was too high (lowering it changed nothing)
            warnings.append(
                f"the test stopped after {len(lrs)} of {num_steps} steps: a linear ramp is "
                f"already at {lrs[1]:.3g} on its second step (its steps are "
                f"{(end_lr - start_lr) / max(num_steps - 1, 1):.3g} apart), and the rates that "
                f"followed were too high; lower end_lr={end_lr:g}, or use the exponential ramp "
                "(ramp='exp', --ramp exp), which spends its steps evenly over the decades")
        else:
            warnings.append(
                f"the test stopped after {len(lrs)} of {num_steps} steps: start_lr={start_lr:g} "
                "is probably already too high; lower it")
    if (unreadable is not None and not first_loss_bad and analysis.curve.n >= suggest.MIN_POINTS
            and not analysis.curve.fell and gradient_noise is not None and gradient_noise >= 1):
        # a fall hidden in the loss's own noise (small batches): more steps average more batches
        # per rate; the model and data may well be fine
        noisy = (f"the loss did not fall clearly over the swept range, but its gradient is noisy "
                 f"({gradient_noise:.2g}x its signal at this batch size): use more steps "
                 f"(num_steps={2 * num_steps}, lrkit find --steps {2 * num_steps}) or larger "
                 "batches for the test; if that shows no fall either, check the model and data")
        warnings = [noisy if w == unreadable else w for w in warnings]
        unreadable = noisy
    if analysis.suggested_lr is not None and gradient_noise is not None \
            and gradient_noise >= VERY_NOISY:
        warnings.append(
            f"the gradient is very noisy at this batch size ({gradient_noise:.2g}x its signal): "
            "range tests this noisy often misplace the best rate (on lrkit's benchmark the "
            "suggestion was up to 7x off; docs/find.md); test with larger batches, or try a few "
            "rates around the suggestion (lrkit sweep)")
    still_falling = (f"the loss was still falling at end_lr={end_lr:g}; raise end_lr to see "
                     "where it turns")
    if stop_reason == "completed" and analysis.curve.n and analysis.curve.min_index >= analysis.curve.n - 3:
        warnings.append(still_falling)
    disagreement = analysis.disagreement
    suggested, good = analysis.suggested_lr, analysis.good_range
    suggestions = dict(analysis.suggestions)
    per_decade = num_steps / math.log10(end_lr / start_lr)
    needed = math.ceil(MIN_STEPS_PER_DECADE * math.log10(end_lr / start_lr))
    if ramp == "exp" and per_decade < MIN_STEPS_PER_DECADE:
        # 10 steps over 8 decades put the minimum and the divergence between two points: the
        # suggestion can be a decade off (lrkit find --steps 10 suggested 4 on digits-mlp, where
        # 0.5 diverges), and "raise end_lr" would be the wrong advice
        # so no suggestion (as for a curve that never fell): a wrong one is worse than none
        coarse = (
            f"only {per_decade:.3g} steps per decade of rates ({num_steps} steps from "
            f"{start_lr:g} to {end_lr:g}): too coarse to place a suggestion, so none is made; "
            f"use at least {needed} steps (num_steps={needed}, lrkit find --steps {needed}) or a "
            "narrower range")
        # every method read the same coarse curve: none of their rates is shown as an answer
        # (nor the advice read from them: "raise end_lr", "the methods disagree")
        # (and the "never fell" read from the same few points, unless the first loss was bad)
        dropped = (still_falling, disagreement) + (() if first_loss_bad else (unreadable,))
        warnings = [coarse] + [w for w in warnings if w not in dropped]
        # the coarse ramp is the reason (a "never fell" read from 10 points means nothing), unless
        # the very first loss was already non-finite
        unreadable = unreadable if first_loss_bad else coarse
        suggested = good = None
        suggestions = {name: None for name in suggestions}
    measured = noise_batches if callable(measure) else 0  # forward and backward passes too
    # the noise batches are micro-batches: with accumulation, a step is several of them
    per_step = plain_int(getattr(trainable, "accumulation_steps", 1))
    per_step = per_step if isinstance(per_step, int) and per_step >= 1 else 1
    cost = len(lrs) + math.ceil(measured / per_step)  # in optimizer steps, as budget_steps
    if budget_steps and cost > COST_SHARE * budget_steps:
        warnings.append(
            f"the test took {cost} steps, {cost / budget_steps:.0%} of the planned run of "
            f"{budget_steps}; for a run this short, fewer steps (num_steps=) or a few short "
            "trials (lrkit sweep) cost less")
    # why there is no suggestion, in one place (the summary said "never fell" for every cause)
    no_suggestion = None if suggested is not None else (unreadable or (
        f"the {analysis.method} method found no point on this curve; another method may (see "
        "result.suggestions)"))
    # show the lag-free curve the suggestions were computed from (the EMA only served the stop rule)
    display = (analysis.curve if not use_val else suggest.prepare(lrs, losses)).smooth.tolist()
    display += [math.nan] * (len(lrs) - len(display))
    return FinderResult(
        lrs=lrs, losses=losses, smoothed=display,
        suggested_lr=suggested, method=analysis.method,
        suggestions=suggestions, good_range=good,
        group_ratios=list(trainable.group_ratios), stop_reason=stop_reason, warnings=warnings,
        settings=dict(start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, ramp=ramp,
                      smoothing=smoothing, diverge_threshold=diverge_threshold,
                      val_every=val_every, budget_steps=budget_steps,
                      noise_batches=measured,
                      optimizer_family=family,
                      edge_fraction=analysis.curve.edge_fraction,
                      curve="validation" if use_val else "train",
                      no_suggestion=no_suggestion,
                      # whether the model and optimizer were put back (a plain function's
                      # state without save_fn/load_fn is not): the report said they were
                      restored=getattr(trainable, "restores_state", True) is not False),
        val_steps=val_steps, val_losses=[math.nan if v is None else v for v in val_losses],
        gradient_noise=gradient_noise, seconds=seconds,
    )
