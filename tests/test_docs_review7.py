"""The docs' command-line synopses, quoted error messages and help texts agree with the code.

tests/test_docs.py runs the docs' ```python blocks; this file checks what those runs cannot see:
the ``lrkit ...`` synopses in README.md and docs/*.md against each command's argparse options,
the error messages docs/schedules.md quotes against the ones lrkit raises, and each ``--help``
against the checks behind it. Nothing here trains a model.
"""
from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

import pytest

from lrkit.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```[^`\s]*\s*$")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _command_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser, by its words: "find", "schedule show", ..."""
    commands = {}
    for name, sub in _subparsers(build_parser()).items():
        if name == "schedule":
            for action, parser in _subparsers(sub).items():
                commands[f"schedule {action}"] = parser
        else:
            commands[name] = sub
    return commands


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings
            if option.startswith("--") and option != "--help"}


def _fenced_text_blocks(path: Path) -> list[list[str]]:
    """The lines of every fenced block of a markdown file (any language)."""
    blocks, current = [], None
    for line in path.read_text().splitlines():
        if FENCE.match(line.strip()):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _synopsis(path: Path, command: str) -> str:
    """The synopsis of ``lrkit COMMAND`` in a doc's fenced blocks: each line that starts with it
    and the indented lines that continue it, whitespace collapsed; "" when there is none."""
    parts = []
    for block in _fenced_text_blocks(path):
        taking = False
        for line in block:
            if line.startswith("lrkit "):
                taking = re.match(rf"lrkit {re.escape(command)}(\s|$)", line) is not None
                if taking and command == "schedule" and not line.startswith("lrkit schedule "):
                    taking = False
            elif not line.startswith(" "):
                taking = False
            if taking:
                parts.append(line.split("  (", 1)[0] if line.startswith("lrkit ") else line)
    return " ".join(" ".join(parts).split())


def _top_level_groups(text: str) -> list[str]:
    """The top-level ``[...]`` groups of a synopsis, whitespace collapsed."""
    groups, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "[":
            if depth == 0:
                start = i
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                groups.append(" ".join(text[start:i + 1].split()))
    return groups


#: the docs that give each command's synopsis: README's "Command line" and the command's guide
SYNOPSES = {
    "find": ["README.md", "docs/find.md"],
    "recommend": ["README.md", "docs/recommend.md"],
    "diagnose": ["README.md", "docs/diagnose.md"],
    "sweep": ["README.md", "docs/sweep.md"],
    "schedule show": ["README.md", "docs/schedules.md"],
    "demo": ["README.md", "docs/report.md"],
    "report": ["README.md", "docs/report.md"],
}


@pytest.mark.parametrize("command,doc", [(c, d) for c, docs in SYNOPSES.items() for d in docs])
def test_each_synopsis_names_every_option_of_its_command(command: str, doc: str) -> None:
    """README's sweep synopsis left out --points-per-decade, --stride, --repeat-top and
    --threads, which `lrkit sweep --help` lists."""
    assert set(SYNOPSES) | {"schedule list"} == set(_command_parsers())  # every command is here
    assert "lrkit schedule list" in (ROOT / "README.md").read_text()
    assert "lrkit schedule list" in (ROOT / "docs/schedules.md").read_text()
    synopsis = _synopsis(ROOT / doc, command)
    assert synopsis, f"{doc} has no synopsis of lrkit {command}"
    named = set(re.findall(r"--[a-z][a-z-]*", synopsis))
    options = _long_options(_command_parsers()[command])
    assert options - named == set(), f"{doc}: lrkit {command} options missing from the synopsis"
    assert named - options == set(), f"{doc}: lrkit {command} has no such options"


@pytest.mark.parametrize("doc", SYNOPSES["schedule show"])
def test_the_schedule_show_synopsis_is_the_usage_of_its_help(doc: str) -> None:
    """The docs gave [--steps N] and [--epochs E] apart (they exclude each other), --grad-accum
    as required with --batches-per-epoch (it is optional) and --log on its own (it is refused
    without --plot); the help's usage has each right."""
    usage = _command_parsers()["schedule show"].format_usage()
    usage = " ".join(usage.split("lrkit schedule show", 1)[1].split())
    documented = _synopsis(ROOT / doc, "schedule show")
    assert sorted(_top_level_groups(documented)) == sorted(_top_level_groups(usage))


def test_schedule_show_options_are_listed_with_the_usage_metavars() -> None:
    """The usage said --steps N and --steps-per-epoch K, the options list --steps STEPS and
    --steps-per-epoch STEPS_PER_EPOCH."""
    help_text = _command_parsers()["schedule show"].format_help()
    usage, options = help_text.split("options:", 1)
    pairs = re.findall(r"(--[a-z][a-z-]*) ([A-Z]+)\b", usage)
    assert len(pairs) >= 8
    for option, metavar in pairs:
        assert re.search(rf"^\s+{re.escape(option)} {metavar}\b", options, re.M), (option, metavar)


def test_the_schedule_errors_quoted_in_the_docs_are_the_ones_raised() -> None:
    """docs/schedules.md quoted the 'flor' error without the 'did you mean' lrkit adds."""
    from lrkit.errors import LrkitError
    from lrkit.schedules import parse

    text = (ROOT / "docs/schedules.md").read_text().split("## Errors", 1)[1]
    lines = [line for line in text.split("```", 2)[1].splitlines() if line.strip()]
    assert len(lines) >= 4
    for line in lines:
        match = re.match(r"bad schedule spec (['\"])(?P<spec>.*?)\1: ", line)
        assert match, line
        with pytest.raises(LrkitError) as error:
            parse(match.group("spec"))
        assert str(error.value) == line


@pytest.mark.parametrize("argv,option,minimum", [
    (["find", "--steps", "9"], "--steps", 10),
    (["diagnose", "log.csv", "--min-points", "2"], "--min-points", 3),
])
def test_help_states_the_minimum_its_check_enforces(argv, option, minimum, tmp_path, monkeypatch,
                                                     capsys) -> None:
    """`lrkit find --steps 9` and `lrkit diagnose --min-points 2` are refused with a minimum
    that their --help did not give."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log.csv").write_text("step,loss\n" + "".join(f"{i},{2 - i / 20}\n"
                                                             for i in range(20)))
    assert main(argv) == 2
    assert f"{option} must be an integer >= {minimum}" in capsys.readouterr().err
    (action,) = [a for a in _command_parsers()[argv[0]]._actions if option in a.option_strings]
    assert f">= {minimum}" in action.help


def test_recommend_help_says_when_steps_are_needed(tmp_path, monkeypatch, capsys) -> None:
    """README: --steps or --epochs is needed unless the target gives its budget_steps; the help
    said nothing of a default, and a recipe without a budget is refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "task.py").write_text(
        "import torch\n\n"
        "def make(seed=0):\n"
        "    x = torch.randn(64, 4)\n"
        "    data = torch.utils.data.TensorDataset(x, x[:, 0] > 0)\n"
        "    model = torch.nn.Linear(4, 2)\n"
        "    loader = torch.utils.data.DataLoader(data, batch_size=8)\n"
        "    return (model, torch.optim.SGD(model.parameters(), lr=0.1), loader,\n"
        "            lambda out, y: torch.nn.functional.cross_entropy(out, y.long()))\n")
    assert main(["recommend", "task.py:make", "--no-progress"]) == 2
    assert "--steps N" in capsys.readouterr().err
    (steps,) = [a for a in _command_parsers()["recommend"]._actions if "--steps" in a.option_strings]
    assert "budget_steps" in steps.help and "--epochs" in steps.help


def test_the_sweep_band_signature_in_the_docs_is_the_methods() -> None:
    """docs/sweep.md gave band(optimizer=None, tolerance=0.02); its default is None, the
    sweep's own band_tolerance (0.02 unless the sweep was given another)."""
    from lrkit.sweep.results import SweepResult

    text = (ROOT / "docs/sweep.md").read_text()
    (documented,) = re.findall(r"`band\(([^`]*)\)`", text)
    actual = ", ".join(f"{name}={p.default!r}" for name, p in
                       inspect.signature(SweepResult.band).parameters.items() if name != "self")
    assert documented == actual
    assert "band_tolerance" in text
