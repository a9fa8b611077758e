"""``lrkit report``: one self-contained HTML page from saved lrkit results."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="an HTML page from saved finder, sweep, diagnose, schedule or recipe JSON",
        description="Make one self-contained HTML page (plots embedded, no network needed) from "
                    "saved results: 'lrkit find --json', 'lrkit sweep --json', 'lrkit diagnose "
                    "--json', 'lrkit schedule show --json', a recipe's to_dict(), or a demo's "
                    "summary.json. Each file's kind is read from its 'kind' key or its keys.")
    p.add_argument("results", nargs="+", metavar="RESULT.json", help="saved result files")
    p.add_argument("--out", default="lrkit-report", metavar="DIR",
                   help="output directory for index.html, created when missing; an index.html "
                        "already there is replaced (default: lrkit-report)")
    p.add_argument("--title", default=None,
                   help="page title (default: 'lrkit report'; 'lrkit demo' for the summary of "
                        "lrkit demo alone)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lrkit.cli import check_output_dir
    from lrkit.errors import LrkitError
    from lrkit.show.report import load_result, report

    check_output_dir(args.out, "--out")
    page_file = (Path(args.out) / "index.html").resolve()
    for path in args.results:  # the page would replace the result it is made from
        if Path(path).resolve() == page_file:
            raise LrkitError(f"{path} is the page this report would write ({page_file}); give "
                             "another --out, or move the result out of that folder")
    kinds = [(path, load_result(path)[0]) for path in args.results]  # every file checked first
    for path, kind in kinds:
        print(f"{_shown(path)}: {kind}")
    page = report(args.results, args.out, title=args.title)
    print(f"page: {_shown(page)}")
    return 0


def _shown(path: object) -> str:
    """A path as text any stream can print: a file name that is not UTF-8 (lone surrogates in
    Python) with its bytes escaped."""
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")
