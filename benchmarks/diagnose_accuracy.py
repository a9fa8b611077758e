"""How often ``lrkit.diagnose`` names the right problem, on real and synthetic loss curves.

Real curves: every built-in example trained at a log grid of constant rates (10^-5 ... 10, a
half-decade apart) for its budget, per seed. Each run is labelled by its own outcome against that
grid, never by eye, with this rule (also in docs/diagnose.md):

* L0 = validation loss of the untrained model; V = final validation loss of the run (inf if the run
  went non-finite); V* = the best V in the grid, at rate r*; q = (L0 - V) / (L0 - V*), the share of
  the best achievable improvement the run got; T = median training loss over its last 10% of steps;
  T0 = training-set loss of the untrained model.
* diverged:  the training loss went non-finite; or the rate is above r* and T >= T0 (the run ended
  no better than it started: it blew up, or collapsed back to where it began).
* healthy:   otherwise, q >= 0.9.
* too_slow:  rate below r* and q < 0.7.
* unstable:  rate above r* and q < 0.7.
* otherwise (0.7 <= q < 0.9) the run is borderline and left out of the score (counted apart).

The classifier is then given each run's per-step training losses, its rates and its validation
curve (10 points) -- and, separately, the training losses alone -- and scored against those labels.
Synthetic curves (known shapes with noise, per step and per epoch) are scored apart.

    python benchmarks/diagnose_accuracy.py                 # seeds 0-2, 4-9 minutes on one core
    python benchmarks/diagnose_accuracy.py --seeds 0 --save-curves /tmp/curves.json
    python benchmarks/diagnose_accuracy.py --load-curves /tmp/curves.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

RATES = [10 ** (k / 2) for k in range(-10, 3)]
REAL_LABELS = ["diverged", "unstable", "too_slow", "healthy"]


def real_runs(seeds: list[int], examples_filter: list[str] | None = None) -> list[dict]:
    import torch

    from lrkit import examples
    from lrkit.training import evaluate, train

    torch.set_num_threads(1)
    runs = []
    for name in examples.names():
        if examples_filter and name not in examples_filter:
            continue
        ex = examples.get(name)
        for seed in seeds:
            start = time.perf_counter()
            untrained = examples.build(name, seed=seed)
            l0 = evaluate(untrained)
            t0 = evaluate(untrained, untrained.train_loader)
            for lr in RATES:
                problem = examples.build(name, seed=seed, lr=lr)
                run = train(problem, lr=lr, steps=ex.budget_steps, seed=seed,
                            eval_every=max(1, ex.budget_steps // 10))
                runs.append({
                    "example": name, "seed": seed, "lr": lr, "l0": l0, "t0": t0,
                    "losses": run.losses, "lrs": run.lrs, "val_loss": run.val_loss,
                    "val_curve": run.val_curve, "diverged": run.diverged,
                })
            print(f"  trained {name} seed {seed}: {len(RATES)} runs in "
                  f"{time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
    return runs


def label_runs(runs: list[dict]) -> None:
    """Add ``label`` (or ``None`` for borderline) and ``q`` to every run, by the rule above."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["example"], run["seed"]), []).append(run)
    for group in groups.values():
        finals = [r["val_loss"] if math.isfinite(r["val_loss"]) else math.inf for r in group]
        best = int(np.argmin(finals))
        v_star, r_star = finals[best], group[best]["lr"]
        for run, v in zip(group, finals):
            l0 = run["l0"]
            losses = np.asarray(run["losses"], dtype=float)
            tail = losses[-max(1, len(losses) // 10):]
            q = (l0 - v) / (l0 - v_star) if l0 > v_star else 0.0
            run["q"] = q if math.isfinite(q) else -math.inf
            blew_up = run["lr"] > r_star and float(np.median(tail)) >= run["t0"]
            if not np.all(np.isfinite(losses)) or blew_up:
                label = "diverged"
            elif q >= 0.9:
                label = "healthy"
            elif q < 0.7:
                label = "too_slow" if run["lr"] < r_star else "unstable"
            else:
                label = None
            run["label"] = label


def score(runs: list[dict], use_val: bool) -> dict:
    from lrkit.diagnose import diagnose

    confusion: dict[tuple[str, str], int] = {}
    misses, borderline = [], {}
    per_example: dict[str, list[int]] = {}
    for run in runs:
        result = diagnose(run["losses"], run["lrs"],
                          val_losses=run["val_curve"] if use_val else None)
        if run["label"] is None:
            borderline[result.verdict] = borderline.get(result.verdict, 0) + 1
            continue
        key = (run["label"], result.verdict)
        confusion[key] = confusion.get(key, 0) + 1
        hit = per_example.setdefault(run["example"], [0, 0])
        hit[0] += run["label"] == result.verdict
        hit[1] += 1
        if run["label"] != result.verdict:
            misses.append((run["example"], run["seed"], run["lr"], run["label"], result.verdict,
                           round(run["q"], 2)))
    total = sum(confusion.values())
    correct = sum(v for (a, b), v in confusion.items() if a == b)
    direction = {"diverged": "lower", "unstable": "lower", "healthy": "keep", "too_slow": "raise",
                 "plateaued": "raise", "not_enough_data": None}
    same_way = sum(v for (a, b), v in confusion.items() if direction[a] == direction[b])
    return {"accuracy": correct / total if total else math.nan, "correct": correct,
            "direction_accuracy": same_way / total if total else math.nan,
            "total": total, "confusion": confusion, "misses": misses, "borderline": borderline,
            "per_example": per_example,
            "healthy_called_diverged": confusion.get(("healthy", "diverged"), 0)}


def synthetic(count: int, seed: int) -> dict:
    import warnings

    from lrkit.diagnose import diagnose
    from lrkit.diagnose.synthetic import FAMILIES, curve

    rng = np.random.default_rng(seed)
    out = {}
    for per_epoch in (False, True):
        confusion: dict[tuple[str, str], int] = {}
        for family in FAMILIES:
            for _ in range(count):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    values = curve(family, rng=rng, per_epoch=per_epoch)
                key = (family, diagnose(values).verdict)
                confusion[key] = confusion.get(key, 0) + 1
        total = sum(confusion.values())
        correct = sum(v for (a, b), v in confusion.items() if a == b)
        out["per epoch" if per_epoch else "per step"] = {
            "accuracy": correct / total, "correct": correct, "total": total,
            "confusion": confusion, "labels": list(FAMILIES)}
    return out


def print_confusion(confusion: dict, labels: list[str]) -> None:
    predicted = ["diverged", "unstable", "too_slow", "plateaued", "healthy", "not_enough_data"]
    print("    " + "label / verdict".ljust(16) + "".join(f"{p[:10]:>11}" for p in predicted))
    for label in labels:
        print(f"    {label:<16}" + "".join(f"{confusion.get((label, p), 0):>11}"
                                          for p in predicted))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--examples", nargs="*", help="only these built-in examples")
    parser.add_argument("--synthetic", type=int, default=40, help="curves per family and form")
    parser.add_argument("--save-curves", help="write the labelled real runs to this JSON file")
    parser.add_argument("--load-curves", help="read labelled real runs instead of training")
    parser.add_argument("--out", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.load_curves:
        with open(args.load_curves) as handle:
            runs = json.load(handle)
    else:
        runs = real_runs(args.seeds, args.examples)
    label_runs(runs)
    if args.save_curves:
        with open(args.save_curves, "w") as handle:
            json.dump(runs, handle)
    train_time = time.perf_counter() - start
    labelled = [r for r in runs if r["label"] is not None]
    counts = {label: sum(r["label"] == label for r in labelled) for label in REAL_LABELS}
    print(f"real curves: {len(runs)} runs ({len(labelled)} labelled: "
          + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f"; {len(runs) - len(labelled)} borderline left out), trained in {train_time:.0f}s")
    figures: dict = {"runs": len(runs), "labelled": len(labelled), "labels": counts}
    modes = ((True, "losses + rates + validation curve"), (False, "training losses only"))
    for use_val, name in modes:
        result = score(runs, use_val)
        figures["with_val" if use_val else "train_only"] = {
            k: v for k, v in result.items() if k not in ("confusion", "misses")}
        print(f"\n  {name}: accuracy {result['accuracy']:.1%} ({result['correct']}/"
              f"{result['total']}), healthy called diverged: {result['healthy_called_diverged']}, "
              f"right direction (lower/keep/raise): {result['direction_accuracy']:.1%}")
        seeds = sorted({r["seed"] for r in labelled})
        if len(seeds) > 1:
            for seed in seeds:
                part = score([r for r in runs if r["seed"] == seed], use_val)
                print(f"    seed {seed}: {part['accuracy']:.1%} "
                      f"({part['correct']}/{part['total']})")
        print_confusion(result["confusion"], REAL_LABELS)
        print("    per example: " + ", ".join(f"{k} {a}/{b}"
                                               for k, (a, b) in result["per_example"].items()))
        print(f"    borderline runs were called: {result['borderline']}")
        for miss in result["misses"]:
            print(f"    miss: {miss[0]} seed {miss[1]} lr {miss[2]:.3g}: label {miss[3]}, "
                  f"verdict {miss[4]} (q={miss[5]})")
    if args.synthetic:
        syn = synthetic(args.synthetic, seed=123)
        figures["synthetic"] = {k: {"accuracy": v["accuracy"], "total": v["total"]}
                                for k, v in syn.items()}
        for form, result in syn.items():
            print(f"\nsynthetic curves, {form}: accuracy {result['accuracy']:.1%} "
                  f"({result['correct']}/{result['total']})")
            print_confusion(result["confusion"], result["labels"])
    figures["seconds"] = round(time.perf_counter() - start, 1)
    print(f"\ntotal time {figures['seconds']}s")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(figures, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
