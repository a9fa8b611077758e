"""From a review of the schedules: the collapse lint on warm restarts, chains whose last piece is
wrapped, onecycle's end, "did you mean", a spec over several lines, the hooks of dropped
schedulers, and --log refused before anything is written."""
import gc

import pytest
import torch

from lrkit.cli import main
from lrkit.errors import LrkitError
from lrkit.schedules import lint, parse, to_torch


def test_warm_restarts_and_cycles_are_no_collapse():
    # a trough at the middle of the run read "the rest of the run trains at almost nothing"
    assert [w.code for w in lint(parse("restarts(3000)"), 5998)] == []
    assert "collapse" not in [w.code for w in lint(parse("cyclic(50, low=0)"), 1000)]
    assert [w.code for w in lint(parse("exponential(0.9)"), 20000)] == ["collapse"]


@pytest.mark.parametrize("spec", [
    "warmup(0.1*total, start=0.01) >> cosine(0.9*total) * 0.5",
    "warmup(0.1*total, start=0.01) >> floor(cosine(0.9*total), 0.1)",
    "warmup(0.1*total, start=0.01) >> wsd(0.9*total, decay=0.2*total)",
])
def test_a_chain_whose_last_piece_is_wrapped_fills_the_run_exactly(spec):
    # 101 + 905 = 1006 steps at 1005, and --strict failed on "long-horizon"
    resolved = parse(spec).resolve(total_steps=1005)
    assert resolved.length == 1005
    assert "long-horizon" not in [w.code for w in lint(resolved, 1005)]


def test_onecycle_ends_inside_its_bounds():
    s = parse("onecycle(1001, pct=0.25, div=1, anneal='linear')")
    low, _ = s.bounds()
    assert s(1000) == low and all(s(t) >= low for t in range(1001))


@pytest.mark.parametrize("spec, hint", [
    ("cosin(100)", "did you mean 'cosine'?"),
    ("Cosine(100)", "did you mean 'cosine'?"),
    ("cosine(100, eta_min=0.1)", "did you mean 'floor'? 'eta_min' is torch's name for it"),
    ("cosine(100, flor=0.1)", "did you mean 'floor'?"),
    ("cosine(totl)", "did you mean 'total'?"),
])
def test_a_misspelt_name_gets_a_suggestion(spec, hint):
    with pytest.raises(LrkitError, match="did you mean") as info:
        parse(spec)
    assert hint in str(info.value)


def test_a_spec_over_several_lines_parses():
    # a YAML block or a shell string broken over lines: "unexpected indent"
    assert parse("  warmup(10)\n  >> cosine(\n 100)") == parse("warmup(10) >> cosine(100)")


def test_a_dropped_scheduler_takes_its_hook_with_it():
    # 1000 schedulers made on one optimizer left 1000 hooks, each step 10x slower
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=0.1)
    for _ in range(50):
        to_torch(optimizer, "cosine(100)")
    gc.collect()
    assert len(optimizer._optimizer_step_post_hooks) <= 1
    kept = to_torch(optimizer, "cosine(100)")
    assert len(optimizer._optimizer_step_post_hooks) >= 1 and kept.current_step == 0


def test_log_with_no_rate_above_zero_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "p.json"
    code = main(["schedule", "show", "constant() * 0", "--steps", "10", "--plot",
                 str(tmp_path / "p.png"), "--log", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and "--log needs a rate above 0" in captured.err
    assert not out.exists() and captured.out == ""


def test_a_comment_in_a_spec_over_several_lines_ends_at_its_line():
    # joined into one line, the comment took the rest of the schedule (warmup alone, no decay)
    spec = "warmup(500)  # ramp up\n  >> cosine(10000)  # main decay"
    assert parse(spec) == parse("warmup(500) >> cosine(10000)")


def test_torch_names_point_at_lrkit_parameters_that_exist():
    with pytest.raises(LrkitError, match="did you mean 'period'"):
        parse("restarts(100, T_0=10)")
    with pytest.raises(LrkitError, match="did you mean 'mult'"):
        parse("restarts(100, T_mult=2)")
