"""``lrkit sweep``: a systematic, resumable learning-rate sweep (Optuna or Ray Tune underneath)."""
from __future__ import annotations

import argparse
import re
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="systematic learning-rate sweep that resumes after crashes and scales out",
        description="Sweep learning rates (and optimizers, seeds) for a built-in example or "
                    "path/to/file.py:function (a recipe called with seed=, returning an "
                    "lrkit.Problem, a dict or a tuple). Bracket then refine on the log scale, with "
                    "successive halving; stored in an Optuna study (a Ray Tune experiment with "
                    "--engine ray), so the same command resumes a stopped sweep or joins one run "
                    "by other workers.",
        epilog="examples:\n"
               "  lrkit sweep digits-mlp --lrs 1e-4:1 --optimizers sgd-momentum,adam --seeds 2\n"
               "  lrkit sweep train.py:recipe --budget 2000 --workers 2 --plot sweep.png\n"
               "  lrkit sweep train.py:recipe --storage postgresql://u:p@db/lrkit  # each machine\n"
               "  lrkit sweep train.py:recipe --engine ray --ray-address auto  # a Ray cluster",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # a value that starts with '-' and a digit (--lrs -1:1, --lrs -0.1,0.2) is a value, not an
    # option, so that lrkit's own check says what is wrong with it: argparse does so from Python
    # 3.13 on (this is its pattern there); before, it took only -1 and -0.5 for values and
    # answered "--lrs: expected one argument". No option of this command starts with -<digit>.
    p._negative_number_matcher = re.compile(r"-\.?\d")
    p.add_argument("target", help="example name or path/to/file.py:function")
    p.add_argument("--lrs", default="1e-4:1",
                   help="rates: LOW:HIGH (log range), LOW:HIGH:PER_DECADE, or a list a,b,c "
                        "(default 1e-4:1)")
    p.add_argument("--points-per-decade", type=int, default=None,
                   help="resolution of a LOW:HIGH range (default 8)")
    p.add_argument("--optimizers", default=None,
                   help="comma-separated: sgd, sgd-momentum, nesterov, adam, adamw, rmsprop, any "
                        "torch.optim class, name(option=value) or 'recipe' (default: the recipe's)")
    p.add_argument("--seeds", type=int, default=1,
                   help="seeds for the top rates, to compare them with seed noise (default 1)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=int, default=None,
                        help="training steps per trial (default: the recipe's budget_steps)")
    budget.add_argument("--epochs", type=int, default=None, help="training budget in epochs")
    p.add_argument("--storage", default=None, metavar="PATH|URL",
                   help="journal file (default .lrkit/sweeps.journal) or database URL, e.g. "
                        "postgresql://user:pass@host:5432/db; with --engine ray: Ray Tune's "
                        "storage_path, a directory or URI (default .lrkit/ray)")
    p.add_argument("--study-name", default=None, help="study name (default: from the target)")
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default 1); with --engine ray: the most "
                        "trials at once (default: the cluster's CPUs over --threads)")
    p.add_argument("--engine", choices=["optuna", "ray"], default="optuna",
                   help="optuna: an Optuna study (default); ray: a Ray Tune experiment, on a "
                        "Ray cluster with --ray-address ('pip install lrkit[ray]')")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --engine ray: the Ray cluster to run on, e.g. ray://head:10001 "
                        "or auto (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--continue", dest="continue_study", action="store_true",
                   help="continue a stored study whose settings differ "
                        "(matching trials are reused)")
    p.add_argument("--strategy", choices=["refine", "grid"], default="refine",
                   help="refine: bracket then refine with successive halving (default); "
                        "grid: every rate to the full budget")
    p.add_argument("--stride", type=int, default=4,
                   help="coarse grid spacing in lattice steps (default 4)")
    p.add_argument("--repeat-top", type=int, default=3,
                   help="how many top rates get the extra seeds (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--max-retries", type=int, default=3,
                   help="attempts after the first at a rate whose trial raised or whose worker "
                        "died, before it counts as failed (default 3; raise it to retry a "
                        "failed rate)")
    p.add_argument("--report", action="store_true",
                   help="only print the stored results of the study; run nothing (Optuna "
                        "engine; a finished Ray sweep is printed by the same command)")
    p.add_argument("--plot", metavar="FILE", help="save loss-against-rate and curve plots")
    p.add_argument("--csv", metavar="FILE", help="write one row per trial as CSV")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the whole result as JSON to FILE, or to stdout without FILE")
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bar (with --engine ray: Tune's status table)")
    p.set_defaults(func=run, option_names=OPTION_NAMES,
                   run_only_defaults={dest: p.get_default(dest) for dest in RUN_ONLY})


#: the library's parameter names, as this command's options (for its error messages)
OPTION_NAMES = {"points_per_decade": "--points-per-decade", "repeat_top": "--repeat-top",
                "study_name": "--study-name", "continue_study": "--continue", "lrs": "--lrs",
                "optimizers": "--optimizers",
                "ray_address": "--ray-address", "workers": "--workers", "threads": "--threads",
                "max_retries": "--max-retries",
                # words also used in prose ("give the budget in steps"): named only as the
                # subject of a check
                "seeds must": "--seeds must", "budget must": "--budget must",
                "epochs must": "--epochs must", "stride must": "--stride must"}


#: options that say how to run a sweep, which --report (reading the stored one) does not use
RUN_ONLY = {"lrs": "--lrs", "points_per_decade": "--points-per-decade",
            "optimizers": "--optimizers", "seeds": "--seeds", "budget": "--budget",
            "epochs": "--epochs", "workers": "--workers", "continue_study": "--continue",
            "strategy": "--strategy", "stride": "--stride", "repeat_top": "--repeat-top",
            "threads": "--threads", "max_retries": "--max-retries"}


def check_args(args: argparse.Namespace) -> None:
    """Refuse output paths the sweep could not write, before it trains anything."""
    from lrkit.cli import check_distinct_paths, check_output_path, recipe_path
    from lrkit.sweep import optuna_engine, ray_engine

    # (each engine's own default: a directory for Ray's experiments, a journal file for Optuna's)
    default = (ray_engine if args.engine == "ray" else optuna_engine).DEFAULT_STORAGE
    check_output_path(args.plot, "--plot", plot=True)
    check_output_path(args.csv, "--csv")
    check_output_path(args.json, "--json")
    check_distinct_paths({"--plot": args.plot, "--csv": args.csv, "--json": args.json},
                         {"the recipe file": recipe_path(args.target),
                          "--storage": args.storage or default})


def run(args: argparse.Namespace) -> int:
    import lrkit.sweep as sweeps
    from lrkit.errors import LrkitError

    check_args(args)

    if args.engine != "ray" and args.ray_address is not None:
        raise LrkitError("--ray-address is for --engine ray")
    if args.report:
        from lrkit.sweep.api import default_study_name, problem_label, problem_source
        from lrkit.sweep.config import another_recipe

        if args.engine == "ray":
            raise LrkitError("--report reads an Optuna study; for a Ray sweep run the same "
                             "command without --report: a finished Ray sweep is restored and "
                             "reported without training anything")

        given = [option for dest, option in RUN_ONLY.items()
                 if getattr(args, dest) != args.run_only_defaults[dest]]
        if given:
            raise LrkitError(
                f"--report prints the stored study as it was run, and {', '.join(given)} "
                f"{'say' if len(given) > 1 else 'says'} how to run one: drop "
                f"{'them' if len(given) > 1 else 'it'} (or run without --report to go on with "
                f"the sweep with {'them' if len(given) > 1 else 'it'})")
        result = sweeps.load(args.storage, args.study_name or default_study_name(args.target))
        stored = result.settings.get("problem")
        target = {"problem": problem_label(args.target),
                  "problem_source": problem_source(args.target)}
        if stored is not None and another_recipe(result.settings, target):
            raise LrkitError(
                f"study {result.study_name!r} in {result.storage} holds a sweep of {stored!r}, "
                f"not of {args.target!r}: give that recipe, or the study of this one "
                "(--study-name)")
    else:
        # with --json on stdout, what the recipe prints (here, or in Ray's trial processes,
        # whose lines Ray repeats on this process's stdout) goes to stderr
        from lrkit.cli import recipe_output_to_stderr

        with recipe_output_to_stderr(args.json):
            result = sweeps.sweep(
                args.target, lrs=args.lrs, points_per_decade=args.points_per_decade,
                optimizers=args.optimizers, seeds=args.seeds, budget=args.budget,
                epochs=args.epochs, storage=args.storage, study_name=args.study_name,
                workers=args.workers, strategy=args.strategy,
                continue_study=args.continue_study, stride=args.stride,
                repeat_top=args.repeat_top, threads=args.threads, max_retries=args.max_retries,
                progress=False if args.no_progress else None, engine=args.engine,
                ray_address=args.ray_address)
    from lrkit.cli import save_plot

    # the results first, the plot last: a plot that fails loses neither
    if args.csv:
        result.to_csv(args.csv)
    if args.json and args.json != "-":
        result.to_json(args.json)
    if args.json == "-":
        print(result.to_json())
        if args.plot:
            save_plot(result, args.plot)
        return 0
    print(result.table())
    print()
    print(result.summary())
    if args.engine == "ray":
        print(f"{result.storage} (Tuner.restore and TensorBoard can open it)")
    else:
        print(f"study {result.study_name!r} in {result.storage} (optuna-dashboard can open it)")
    for what, path in (("CSV", args.csv),
                       ("JSON", args.json if args.json not in (None, "-") else None)):
        if path:
            print(f"{what} written to {path}")
    if args.plot:
        save_plot(result, args.plot)
        print(f"plot written to {args.plot}")
    sys.stdout.flush()
    return 0
