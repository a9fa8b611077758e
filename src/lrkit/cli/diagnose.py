"""``lrkit diagnose``: diagnose a loss log, or show the built-in too-high / good / too-low demo."""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

DEMO_RATES = (0.5, 0.1, 0.001)
DEMO_EXAMPLE = "digits-mlp"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help="tell from a loss curve whether the learning rate is too high, too low or right",
        description=(
            "Classify a loss history as diverged, unstable (rate too high), too_slow (rate too "
            "low), plateaued or healthy, with the evidence, a factor for the rate and an "
            "explanation. FILE is a CSV or JSONL log with step/loss[/lr][/val_loss] columns "
            "(Lightning's metrics.csv included), a Hugging Face Trainer's trainer_state.json, a "
            "TensorBoard event file or run directory (needs the tensorboard package: pip install "
            "lrkit[tensorboard]), or a directory holding one of those (a Trainer's output_dir, "
            "lightning_logs/version_N); its steps are the log's own step numbers."),
    )
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="the loss log (or the directory holding it) to diagnose")
    parser.add_argument("--example", action="store_true",
                        help=f"train {DEMO_EXAMPLE} at rates {', '.join(map(str, DEMO_RATES))} "
                             "and show the three diagnoses side by side")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--tag", help="the training loss's TensorBoard scalar tag, or its "
                                      "column (CSV) or key (JSON, JSONL) (default: found by "
                                      "name, e.g. loss, train/loss; an error lists the "
                                      "candidates when none or several fit)")
    parser.add_argument("--min-points", type=int, default=8,
                        help="fewest finite losses to give a verdict, >= 3 (default 8)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per demo run, >= 8 (default: the example's budget)")
    parser.set_defaults(func=run, option_names={"min_points": "--min-points"})


def run(args: argparse.Namespace) -> int:
    from lrkit.errors import LrkitError

    if args.example:
        if args.file:
            raise LrkitError("give either FILE or --example, not both")
        from lrkit.cli import check_positive_int
        from lrkit.diagnose.evidence import MIN_POINTS

        # one message for 0 and for 5
        check_positive_int(args.steps, "--steps", minimum=MIN_POINTS,
                           what=" (a diagnosis needs that many losses; the default shows the "
                                "three cases)")
        if args.tag:  # silently ignored, it would look as if it had been used
            raise LrkitError("--tag names a TensorBoard scalar of a loss log FILE; --example "
                             "trains its own runs: drop --tag")
        return _demo(args)
    if args.steps is not None:  # silently ignored, it would look as if it had been used
        raise LrkitError("--steps sets the length of --example's training runs; a loss log FILE "
                         "is diagnosed as logged: drop --steps")
    if not args.file:
        raise LrkitError("give a loss log FILE (CSV, JSONL, trainer_state.json or TensorBoard; "
                         "or the directory holding it), or --example")
    from lrkit.diagnose.logs import read_log

    log = read_log(args.file, tag=args.tag)
    result = log.diagnose(min_points=args.min_points)
    if args.json:
        payload = {"file": args.file, "format": log.source, "points": len(log.losses),
                   "validation_points": len(log.val_losses), **result.to_dict()}
        print(json.dumps(payload, indent=2))
    else:
        print(f"{args.file}: {len(log.losses)} loss values ({log.source})"
              + (f", {len(log.val_losses)} validation values" if log.val_losses else ""))
        print(result)
    return 0


def demo_runs(steps: int | None = None, seed: int = 0) -> dict:
    """Train the demo example at the three demo rates and diagnose each run.

    The example's own optimizer is SGD with momentum 0.9, whose effective step is about ten times
    the rate. If 0.5 and 0.1 do not show a too-high / right contrast with it, the demo also runs
    plain SGD (``torch.optim.SGD(model.parameters(), lr=...)``) on the same model, shows both and
    says in ``note`` what each showed.
    """
    import torch

    from lrkit import examples
    from lrkit.diagnose.classify import MIN_POINTS, diagnose
    from lrkit.errors import LrkitError
    from lrkit.training import train

    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                              or steps < MIN_POINTS):
        # fewer steps than a diagnosis needs points: six "not enough data" verdicts
        raise LrkitError(f"steps must be an integer >= {MIN_POINTS} (a diagnosis needs that many "
                         f"losses), got {steps!r}; the default, "
                         f"{examples.get(DEMO_EXAMPLE).budget_steps}, shows the three cases")
    budget = examples.get(DEMO_EXAMPLE).budget_steps if steps is None else steps

    def runs(plain: bool) -> list[dict]:
        out = []
        for lr in DEMO_RATES:
            problem = examples.build(DEMO_EXAMPLE, seed=seed, lr=lr)
            if plain:
                problem.optimizer = torch.optim.SGD(problem.model.parameters(), lr=lr)
            run = train(problem, lr=lr, steps=budget, seed=seed,
                        eval_every=max(1, budget // 10))
            result = diagnose(run.losses, run.lrs, val_losses=run.val_curve)
            out.append({"lr": lr, "run": run, "diagnosis": result})
        return out

    def contrast(results: list[dict]) -> bool:
        verdicts = [r["diagnosis"].verdict for r in results]
        return (verdicts[0] in ("diverged", "unstable") and verdicts[1] == "healthy"
                and verdicts[2] in ("too_slow", "plateaued"))

    def said(results: list[dict]) -> str:
        return ", ".join(f"{r['lr']:g} {r['diagnosis'].verdict}" for r in results)

    group = examples.build(DEMO_EXAMPLE, seed=seed).optimizer.param_groups[0]
    own = (f"{type(examples.build(DEMO_EXAMPLE, seed=seed).optimizer).__name__} with momentum "
           f"{group.get('momentum', 0):g}"
           + (f", weight decay {group['weight_decay']:g}" if group.get("weight_decay") else "")
           + " (the example's own)")
    tables = [{"optimizer": own, "results": runs(False)}]
    note = None
    if not contrast(tables[0]["results"]):
        tables.append({"optimizer": "plain SGD, no momentum (same model)", "results": runs(True)})
        note = (f"With momentum {group.get('momentum', 0):g} the effective step is about "
                f"1/(1 - momentum) times the rate, and on this model {said(tables[0]['results'])}:"
                " no too-high / right / too-low trio. Plain SGD on the same model gives "
                f"{said(tables[1]['results'])}")
        verdicts = {r["diagnosis"].verdict for t in tables for r in t["results"]}
        if contrast(tables[1]["results"]):
            note += ": the too-high / right / too-low trio."
        elif (verdicts & {"diverged", "unstable"} and "healthy" in verdicts
              and verdicts & {"too_slow", "plateaued"}):
            note += "; together the two show a too-high, a right and a too-low rate."
        else:  # said only when it is so (a short --steps can show no healthy run at all)
            note += (f"; neither shows a too-high, a right and a too-low rate at {budget} steps "
                     "a run: the runs are too short to tell (the default length shows all three)")
    return {"example": DEMO_EXAMPLE, "steps": budget, "note": note, "tables": tables}


def _demo(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)  # these models are tiny: threads only add contention
    demo = demo_runs(args.steps)
    if args.json:
        payload = {k: v for k, v in demo.items() if k != "tables"}
        payload["tables"] = [{"optimizer": t["optimizer"], "results": [{
            "lr": r["lr"], "final_train_loss": _finite(r["run"].losses[-1]),
            "val_loss": _finite(r["run"].val_loss), "accuracy": r["run"].metric,
            **r["diagnosis"].to_dict()} for r in t["results"]]} for t in demo["tables"]]
        print(json.dumps(payload, indent=2))
        return 0
    print(f"lrkit diagnose --example: {demo['example']}, {demo['steps']} steps per run")
    for table in demo["tables"]:
        print(f"\n{table['optimizer']}")
        header = (f"{'rate':>8}  {'verdict':<16}{'confidence':>10}  {'change':<10}"
                  f"{'train loss':>11}{'val loss':>10}{'accuracy':>10}")
        print(header)
        print("-" * len(header))
        for r in table["results"]:
            d, run = r["diagnosis"], r["run"]
            tail = [v for v in run.losses[-max(1, len(run.losses) // 10):] if math.isfinite(v)]
            train_loss = sum(tail) / len(tail) if tail else math.nan
            acc = f"{run.metric:.1%}" if run.metric is not None else "-"
            print(f"{r['lr']:>8g}  {d.verdict:<16}{d.confidence:>10.0%}  {d.recommendation:<10}"
                  f"{train_loss:>11.4g}{run.val_loss:>10.4g}{acc:>10}")
        for r in table["results"]:
            d = r["diagnosis"]
            print(f"  {r['lr']:g}: " + "; ".join(d.reasons))
    if demo["note"]:
        print("\nnote: " + demo["note"])
    last = demo["tables"][-1]["results"]
    print("\nWhat each verdict means:")
    seen = set()
    for table in demo["tables"]:
        for r in table["results"]:
            d = r["diagnosis"]
            if d.verdict not in seen:
                seen.add(d.verdict)
                print(f"  {d.verdict}: {d.explanation}")
    del last
    sys.stdout.flush()
    return 0


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
