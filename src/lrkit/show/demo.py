"""``lrkit demo``: the whole story on one built-in example, written as one HTML page.

1. the range test with its suggestion and good range (:func:`lrkit.find_lr`);
2. the classic comparison, SGD at 0.5, 0.1 and 0.001 for the same budget, each curve diagnosed
   (:func:`lrkit.cli.diagnose.demo_runs`, the code behind ``lrkit diagnose --example``);
3. schedule previews: 10% decay per epoch from 0.1, warmup then cosine, the recipe's own
   (:func:`lrkit.schedules.preview`);
4. the recommended recipe (:func:`lrkit.recommend`) against the untuned default, trained for the
   same budget (:func:`lrkit.training.train`).

:func:`run_demo` returns everything as one JSON-ready dict (``"kind": "lrkit.demo"``), which
:func:`write_demo` saves as ``summary.json`` and renders as ``index.html`` with
:mod:`lrkit.show.report`, so ``lrkit report summary.json`` draws the same page again.
"""
from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path
from typing import Any, Callable

from lrkit.show.report import DEMO, json_safe, tail_mean

DEFAULT_OUT = "lrkit-demo"
EXPONENTIAL_SPEC = "step(1*epoch, gamma=0.9)"  #: 10% less each epoch (ExponentialLR per epoch)
EXPONENTIAL_LR = 0.1
WARMUP_COSINE_SPEC = "warmup(0.1*total, start=0.01) >> cosine(0.9*total, floor=0.1)"


@contextlib.contextmanager
def _one_thread():
    """Tiny models: one intra-op thread is fastest on shared cores and keeps runs reproducible."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_seed(seed: Any, name: str = "seed") -> None:
    """Refuse a seed that not every generator the demo seeds accepts (numpy: 0 .. 2**32 - 1)."""
    from lrkit.errors import LrkitError

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise LrkitError(f"{name} must be an integer from 0 to 2**32 - 1, got {seed!r}")


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _run_dict(run: Any, **extra: Any) -> dict:
    """What the page and summary keep of a :class:`lrkit.training.TrainingRun`."""
    return json_safe({
        **extra,
        "final_train_loss": tail_mean(run.losses),
        "val_loss": run.val_loss,
        "accuracy": run.metric,
        "diverged": run.diverged,
        "steps": run.steps,
        "losses": run.losses,
    })


def _recommend() -> tuple[Callable | None, str | None]:
    try:
        from lrkit.recommend import recommend
    except ImportError as exc:
        return None, f"lrkit.recommend is not available in this installation ({exc})"
    return recommend, None


def run_demo(*, seed: int = 0, quick: bool = False, progress: bool | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    """Run the four parts of the demo on the default example and return the summary dict.

    ``quick`` shortens every run (for tests: same story, less training). ``progress`` shows bars
    (None: only on a terminal). ``log`` receives one line as each part finishes.
    """
    check_seed(seed)
    with _one_thread():
        return _run_demo(seed=seed, quick=quick, progress=progress, log=log or (lambda _l: None))


def _run_demo(*, seed: int, quick: bool, progress: bool | None,
              log: Callable[[str], None]) -> dict:
    import lrkit
    from lrkit import examples
    from lrkit.cli.diagnose import DEMO_EXAMPLE, demo_runs
    from lrkit.show.progress import progress_bar
    from lrkit.training import train

    name = DEMO_EXAMPLE
    example = examples.get(name)
    budget = 100 if quick else example.budget_steps
    finder_steps = 60 if quick else 100
    recommend, unavailable = _recommend()
    stages = progress_bar(4 if recommend else 2, "lrkit demo", enabled=progress)
    with stages:  # closed on an error or Ctrl-C too, not left half drawn
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def done(stage: str) -> str:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = now - clock
            clock = now
            stages.update(1)
            return f"  [{timings[stage]:.1f} s]"

        # (1) the range test
        stages.set_postfix_str("range test")
        _seed_all(seed)
        problem = examples.build(name, seed=seed)
        steps_per_epoch = len(problem.train_loader)
        finder = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                               problem.criterion, num_steps=finder_steps, budget_steps=budget,
                               progress=progress)
        took = done("range_test")
        log(f"(1) range test: suggested lr {_g(finder.suggested_lr)}"
            + (f", good range {_g(finder.good_range[0])} .. {_g(finder.good_range[1])}"
               if finder.good_range else "") + took)

        # (2) the classic comparison, with the diagnose demo's own code
        stages.set_postfix_str("SGD at 0.5, 0.1, 0.001")
        _seed_all(seed)
        runs = demo_runs(steps=budget, seed=seed)
        comparison = {
            "example": runs["example"], "steps": runs["steps"], "note": runs["note"],
            "tables": [{"optimizer": t["optimizer"], "results": [
                _run_dict(r["run"], lr=r["lr"], **r["diagnosis"].to_dict()) for r in t["results"]]}
                for t in runs["tables"]],
        }
        took = done("comparison")
        log("(2) same budget: " + "; ".join(
            ", ".join(f"{r['lr']:g} {r['verdict']}" for r in t["results"])
            for t in comparison["tables"]) + took)

        # (3) the recipe (needs lrkit.recommend)
        recipe = None
        if recommend is not None:
            stages.set_postfix_str("recommend")
            _seed_all(seed)
            try:
                recipe = recommend(name, steps=budget, seed=seed, confirm=True, progress=progress)
            except Exception as exc:  # noqa: BLE001 - the other three parts still make a page
                unavailable = f"lrkit.recommend failed: {type(exc).__name__}: {exc}"
                log(f"warning: {unavailable}")
            took = done("recommend")
            if recipe is not None:
                recipe_line = (f"(4) recipe: {recipe.optimizer} at peak lr {_g(recipe.peak_lr)}, "
                               f"schedule {recipe.schedule}{took}")

        # schedule previews (no training)
        from lrkit.schedules import preview

        previews = [
            dict(preview(EXPONENTIAL_SPEC, budget, lr=EXPONENTIAL_LR,
                         steps_per_epoch=steps_per_epoch, label="exponential decay").to_dict(),
                 title="exponential decay, 10% per epoch",
                 description=f"from {EXPONENTIAL_LR:g}, 10% less after every epoch of "
                             f"{steps_per_epoch} steps (torch's ExponentialLR stepped once per "
                             "epoch)"),
            dict(preview(WARMUP_COSINE_SPEC, budget, lr=finder.suggested_lr or EXPONENTIAL_LR,
                         label="warmup then cosine").to_dict(),
                 title="warmup then cosine",
                 description="a linear warmup over the first 10% of the run to the range test's "
                             "suggestion, then a half cosine down to 10% of it"),
        ]
        if recipe is not None:
            previews.append(dict(_recipe_preview(recipe, preview), title="the recipe's schedule",
                                 description="what lrkit.recommend chose for this budget"))
        schedules = {"steps": budget, "steps_per_epoch": steps_per_epoch, "previews": previews}
        log("(3) schedules: " + "; ".join(p["spec"] for p in previews))
        if recipe is not None:
            log(recipe_line)  # measured before the previews: the third preview is its schedule

        # (4) the recipe against the untuned default, same budget
        versus = None
        if recipe is not None:
            stages.set_postfix_str("recipe vs default")
            entries = []
            for key, label in (("recipe", "recommended recipe"), ("default", "untuned default")):
                _seed_all(seed)
                problem = examples.build(name, seed=seed)
                if key == "recipe":
                    problem.optimizer, _scheduler = recipe.build(problem.model.parameters())
                    lr: Any = recipe.lr_at
                    optimizer_text = _optimizer_text(recipe.optimizer, recipe.optimizer_options)
                    schedule_text = f"{recipe.schedule} (peak {_g(recipe.peak_lr)})"
                else:
                    lr = example.default_lr
                    optimizer_text = _torch_optimizer_text(problem.optimizer)
                    schedule_text = f"constant {example.default_lr:g}"
                bar = progress_bar(budget, label, enabled=progress)

                def tick(*_args: Any, bar: Any = bar) -> None:  # None: a true value stops the run
                    bar.update(1)

                with bar:
                    run = train(problem, lr=lr, steps=budget, seed=seed, on_step=tick)
                entries.append(_run_dict(run, key=key, label=label, optimizer=optimizer_text,
                                         schedule=schedule_text))
            versus = {"steps": budget, "runs": entries, "conclusion": _conclusion(entries)}
            took = done("recipe_vs_default")
            log(f"    {versus['conclusion']}{took}")

    return json_safe({
        "kind": DEMO,
        "lrkit_version": lrkit.__version__,
        "example": name,
        "example_description": example.description,
        "seed": seed,
        "quick": quick,
        "budget_steps": budget,
        "steps_per_epoch": steps_per_epoch,
        "suggested_lr": finder.suggested_lr,
        "good_range": finder.good_range,
        "finder": finder.to_dict(),
        "comparison": comparison,
        "schedules": schedules,
        "recipe": recipe.to_dict() if recipe is not None else None,
        "recipe_unavailable": unavailable,
        "recipe_vs_default": versus,
        "story": _story(finder, comparison, recipe, versus),
    })


def _recipe_preview(recipe: Any, preview: Callable) -> dict:
    """The recipe's schedule as a preview dict; from ``lr_at`` if its spec cannot be previewed."""
    try:
        return preview(recipe.schedule, recipe.total_steps, lr=recipe.peak_lr,
                       label="the recipe's schedule").to_dict()
    except Exception:  # noqa: BLE001 - fall back to the recipe's own rates
        total = int(recipe.total_steps)
        stride = max(1, total // 500)
        picks = sorted(set(range(0, total, stride)) | {total - 1})
        rates = [float(recipe.lr_at(t)) for t in picks]
        top = max(range(len(rates)), key=rates.__getitem__)
        return {"label": "the recipe's schedule", "source": "lrkit", "spec": str(recipe.schedule),
                "absolute": True, "steps": total, "lr": recipe.peak_lr,
                "peak": {"step": picks[top], "rate": rates[top]}, "key_points": [],
                "warnings": [], "curve": [[t, r] for t, r in zip(picks, rates)]}


def _optimizer_text(name: str, options: dict | None) -> str:
    options = options or {}
    return name + ("(" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")" if options else "")


def _torch_optimizer_text(optimizer: Any) -> str:
    group = optimizer.param_groups[0]
    keep = {k: group[k] for k in ("momentum", "weight_decay") if group.get(k)}
    return _optimizer_text(type(optimizer).__name__, keep)


def _g(value: Any) -> str:
    return "none" if value is None else f"{value:.3g}"


def _conclusion(entries: list[dict]) -> str:
    ours, default = entries[0], entries[1]
    a, b = ours["final_train_loss"], default["final_train_loss"]
    if a is None or b is None:
        return (f"Final training loss: recipe {_g(a)}, untuned default {_g(b)} (a run diverged).")
    text = f"The recipe ends at a training loss of {a:.4g}, against {b:.4g} for the untuned default"
    text += (f": {b / a:.1f}x lower for the same budget." if a < b
             else ": no better on this budget.")
    va, vb = ours["val_loss"], default["val_loss"]
    if va is not None and vb is not None:
        if abs(va - vb) <= 0.05 * max(va, vb):
            verdict = "about the same"
        else:
            verdict = "better" if va < vb else "worse"
        text += f" Validation loss: {va:.4g} against {vb:.4g} ({verdict})."
    return text


def _story(finder: Any, comparison: dict, recipe: Any, versus: dict | None) -> list[str]:
    lines = []
    if finder.suggested_lr is not None:
        lines.append(f"The range test suggests a rate of {finder.suggested_lr:.3g}"
                     + (f" (good range {finder.good_range[0]:.3g} .. {finder.good_range[1]:.3g})"
                        if finder.good_range else "") + f", in {finder.steps} steps.")
    table = comparison["tables"][-1]
    lines.append(f"With {table['optimizer']}: "
                 + ", ".join(f"rate {r['lr']:g} is {r['verdict'].replace('_', ' ')} "
                             f"(final loss {_g(r['final_train_loss'])})" for r in table["results"])
                 + ".")
    if recipe is not None and versus is not None:
        lines.append(f"The recommended recipe ({recipe.optimizer}, peak {recipe.peak_lr:.3g}, "
                     f"{recipe.schedule}): {versus['conclusion']}")
    return lines


def write_demo(summary: dict, out_dir: str | Path = DEFAULT_OUT, *, overview: bool = True
               ) -> dict[str, Path]:
    """Write ``summary.json``, ``index.html`` and (with ``overview``) ``overview.png``."""
    from lrkit.show.report import overview_figure, render_page, write_atomically, write_page

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out / "summary.json"}
    write_atomically(paths["summary"], json.dumps(summary, indent=1) + "\n")
    subtitle = (f"{summary['example']}: {summary['budget_steps']} steps per run, seed "
                f"{summary['seed']}" + (", quick mode" if summary.get("quick") else ""))
    paths["page"] = write_page(render_page([(None, summary)], title="lrkit demo",
                                           subtitle=subtitle), out)
    if overview:
        fig = overview_figure(summary)
        paths["overview"] = out / "overview.png"
        fig.savefig(paths["overview"], dpi=90, metadata={"Software": None})
    return paths
