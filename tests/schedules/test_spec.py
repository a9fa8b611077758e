"""Text specs and configs: grammar, round trips, and errors that name the bad part."""
import json
import pickle
import subprocess
import sys

import pytest

from lrkit.errors import LrkitError
from lrkit.schedules import (Duration, Join, constant, cosine, epoch, floor, from_config,
                             from_json, from_yaml, join, linear, load, onecycle, parse, peak,
                             plateau, restarts, to_config, to_json, to_spec, to_yaml, total,
                             warmup, wsd)

EXAMPLES = [
    "warmup(500) >> cosine(10000, floor=0.1)",
    "warmup(2*epoch) >> cosine(total - 2*epoch, floor=0.1)",
    "warmup(0.05*total, start=0.01, shape='exponential') >> wsd(0.95*total, decay=0.2*total)",
    "peak(plateau(warmup(100) >> cosine(1000), factor=0.5, patience=3), 0.0003)",
    "join([cosine(100), constant(0.5)], [50])",
    "cosine(100) >> constant(0.1) * 0.5",
    "(cosine(100) >> linear(10)) * 2",
    "multistep([30, 60, 80], gamma=0.2)",
    "cyclic(2000, down=3000, low=0.2, mode='triangular2')",
    "onecycle(1000, pct=0.25, anneal='linear', three_phase=True)",
    "restarts(1000, mult=2, floor=0.01, decay=0.7)",
    "warmup(4000) >> inverse_sqrt(4000)",
    "step(30*epoch, gamma=0.5)",
    "exponential(0.999, floor=0.01)",
    "polynomial(1000, power=2, end=0.01)",
    "floor(cosine(100), 0.2) * 3",
    "warmup(5) >> (warmup(3) >> cosine(10))",
    "cosine(10) >> (linear(5) >> cosine(4))",
    "constant(0.5)",
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_examples_round_trip_as_text_and_config(text):
    s = parse(text)
    assert to_spec(s) == text  # the examples are written in canonical form
    assert parse(to_spec(s)) == s
    assert from_config(to_config(s)) == s
    assert from_json(to_json(s)) == s
    assert from_yaml(to_yaml(s)) == s
    assert pickle.loads(pickle.dumps(s)) == s
    assert hash(parse(text)) == hash(s)


def test_python_api_reads_like_the_spec():
    assert warmup(500) >> cosine(10000, floor=0.1) == parse("warmup(500) >> cosine(10000, floor=0.1)")
    assert 0.5 * cosine(10) == cosine(10) * 0.5 == parse("0.5 * cosine(10)")
    assert repr(warmup(5) >> cosine(10)) == "warmup(5) >> cosine(10)"
    assert str(peak(cosine(10), 1e-3)) == "peak(cosine(10), 0.001)"


def test_warmup_ramps_into_the_next_schedule_and_join_counts_from_each_start():
    s = warmup(10) >> cosine(100, floor=0.1)
    assert s(0) == 0.0 and s(5) == 0.5 and s(10) == 1.0 and s(110) == pytest.approx(0.1)
    j = cosine(10) >> linear(10, start=0.5, end=0.25)
    assert j(10) == 0.5 and j(20) == 0.25
    cut = join([cosine(100), constant(0.3)], [20])
    assert cut(19) == cosine(100)(19) and cut(20) == 0.3
    # warmup target is the next piece's first value
    assert (warmup(4) >> constant(0.5))(2) == 0.25


def test_equal_values_compare_equal_whatever_their_spelling():
    assert parse("cosine(100, floor=0)") == parse("cosine(100)") == cosine(100.0)
    assert parse("warmup(1*epoch)") == warmup(epoch) == warmup(Duration(epochs=1))
    assert parse("cosine(total - 100)") == cosine(total - 100) == cosine(-100 + total)
    assert parse("warmup(10) >> cosine(100) >> constant(0.1)") == \
        (warmup(10) >> cosine(100)) >> constant(0.1)


def test_chain_from_a_list_config_and_yaml():
    text = """
- {type: warmup, steps: 500, start: 0.01}
- type: cosine
  steps: 2*epoch
  floor: 1e-2
"""
    s = from_yaml(text)
    assert s == warmup(500, start=0.01) >> cosine(2 * epoch, floor=0.01)
    assert from_config({"type": "join", "schedules": ["cosine(10)", {"type": "constant"}]}) == \
        cosine(10) >> constant()


def test_load_reads_files(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("schedule: warmup(10) >> cosine(100)\nother: 1\n")
    assert load(str(path)) == warmup(10) >> cosine(100)
    jpath = tmp_path / "s.json"
    jpath.write_text(json.dumps(to_config(wsd(100, 20))))
    assert load(jpath) == wsd(100, 20)


def test_resolve_units():
    s = parse("warmup(2*epoch) >> cosine(total - 2*epoch, floor=0.1)")
    assert not s.is_resolved
    r = s.resolve(total_steps=1000, steps_per_epoch=50)
    assert r == warmup(100) >> cosine(900, floor=0.1)
    # gradient accumulation: 100 batches / 3 per step -> 34 optimizer steps per epoch
    r2 = s.resolve(batches_per_epoch=100, grad_accum=3, epochs=10)
    assert r2 == warmup(68) >> cosine(272, floor=0.1)
    assert wsd(total, 0.2 * total).resolve(total_steps=1001) == wsd(1001, 200)


BAD = [
    # (spec, fragments the message must contain)
    ("cosin(100)", ["'cosin'", "allowed:", "cosine", "warmup"]),
    ("cosine(100, flor=0.1)", ["'flor'", "allowed: steps, floor"]),
    ("cosine()", ["missing steps", "cosine(steps, floor=0)"]),
    ("cosine(100, 0.1, 3)", ["at most 2 values"]),
    ("cosine(100, floor=-1)", ["floor=-1", "must be >= 0"]),
    ("cosine(-5)", ["steps must be > 0"]),
    ("cosine(0.5)", ["whole number of steps", "0.5*total"]),
    ("cosine('long')", ["cosine(): steps must be a length"]),
    ("warmup(10, shape='sqrt') >> cosine(10)", ["shape='sqrt'", "'linear', 'cosine', 'exponential'"]),
    ("wsd(100, 20, shape='exp')", ["shape='exp'", "'linear', 'cosine', '1-sqrt'"]),
    ("cyclic(10, mode='sine')", ["mode='sine'", "'triangular', 'triangular2', 'exp_range'"]),
    ("onecycle(100, anneal='cos')", ["anneal='cos'", "'cosine', 'linear'"]),
    ("plateau(cosine(10), mode='lowest')", ["mode='lowest'", "'min', 'max'"]),
    ("multistep([30, 20])", ["non-decreasing"]),
    ("constant() >> cosine(10)", ["never ends", "join([a, b], [step])"]),
    ("cosine(10) * peak(cosine(10), 1)", ["multiplies a schedule or a length by a number"]),
    ("cosine(10) + cosine(10)", ["not allowed", ">> (then)"]),
    ("cosine(10) >> 5", [">> needs a schedule on both sides"]),
    ("join([cosine(10), cosine(10)], [5, 6])", ["2 schedules need 1 boundaries"]),
    ("join([cosine(10), cosine(10), cosine(1)], [6, 5])", ["non-decreasing"]),
    ("join([cosine(10), cosine(10), cosine(1)], [5, 5])", ["strictly increasing"]),
    ("scale(peak(cosine(10), 0.1), 2)", ["peak() must wrap the whole schedule"]),
    ("warmup(5) >> plateau(cosine(10))", ["plateau() must wrap the whole schedule"]),
    ("plateau(peak(cosine(10), 0.1))", ["peak() must wrap the whole schedule"]),
    ("onecycle(10, pct=0.05)", ["pct*steps", "must be > 1"]),
    ("onecycle(10, pct=0.6, three_phase=True)", ["three_phase=True", "pct must be <"]),
    ("wsd(100, 80, warmup=30)", ["warmup + decay = 110", "<= steps = 100"]),
    ("step(10, gamma=1.5)", ["gamma=1.5", "<= 1"]),
    ("exponential(0)", ["gamma=0", "> 0"]),
    ("peak(cosine(10), 0)", ["lr=0", "> 0"]),
    ("cosine(10, floor=True)", ["floor must be a number"]),
    ("warmup(10, start=2) >> cosine(10)", ["start=2", "<= 1"]),
    ("cosine", ["cosine is a schedule; call it"]),
    ("cosine(steps)", ["unknown name 'steps'", "epoch and total"]),
    ("cosine(10", ["not valid syntax"]),
    ("", ["empty"]),
    ("100", ["not a schedule"]),
    ("__import__('os').system('true')", ["only schedule names can be called"]),
    ("cosine(10).__class__", ["an attribute (a.b) is not allowed"]),
    ("[c for c in ()]", ["a list comprehension is not allowed"]),
    ("(lambda: 1)()", ["only schedule names can be called"]),
    ("cosine(*[10])", ["*args is not allowed"]),
    ("cosine(**{'steps': 10})", ["**kwargs is not allowed"]),
    ("cosine(10, floor=0.1, floor=0.2)", ["given twice"]),
    ("cosine(2**10)", ["not allowed"]),
    ("cosine(epoch * epoch)", ["multiplies a schedule or a length by a number"]),
]


@pytest.mark.parametrize("text,fragments", BAD, ids=[b[0] or "empty" for b in BAD])
def test_bad_specs_name_the_bad_part_and_the_allowed_values(text, fragments):
    with pytest.raises(LrkitError) as info:
        parse(text)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


def test_errors_quote_the_offending_part_of_a_longer_spec():
    with pytest.raises(LrkitError, match=r"in \"cosine\(100, floor=-1\)\"|in 'cosine\(100, floor=-1\)'"):
        parse("warmup(10) >> cosine(100, floor=-1)")


BAD_CONFIGS = [
    ({"type": "cosin", "steps": 10}, ["'type' must be one of", "cosine"]),
    ({"steps": 10}, ["'type' must be one of"]),
    ({"type": "cosine", "steps": 10, "flor": 0.1}, ["no parameter 'flor'", "allowed: steps, floor"]),
    ({"type": "cosine", "steps": "ten"}, ["schedule.steps", "is not a length"]),
    ({"type": "warmup", "steps": 10, "then": {"type": "nope"}}, ["schedule.then", "'type' must be"]),
    ([], ["empty list"]),
    (42, ["expected a spec string"]),
]


@pytest.mark.parametrize("config,fragments", BAD_CONFIGS, ids=[str(c[0])[:30] for c in BAD_CONFIGS])
def test_bad_configs_name_the_bad_key(config, fragments):
    with pytest.raises(LrkitError) as info:
        from_config(config)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_bad_json_and_yaml_and_units():
    with pytest.raises(LrkitError, match="JSON is not valid"):
        from_json("{")
    with pytest.raises(LrkitError, match="YAML is not valid"):
        from_yaml("a: [")
    with pytest.raises(LrkitError, match="in epochs: give steps_per_epoch"):
        warmup(2 * epoch).resolve(total_steps=100)
    with pytest.raises(LrkitError, match="fraction of the run: give total_steps"):
        cosine(0.5 * total).resolve(steps_per_epoch=10)
    with pytest.raises(LrkitError, match="resolve"):
        cosine(total)(3)
    with pytest.raises(LrkitError, match="resolves to 0 steps"):
        cosine(total - 100).resolve(total_steps=100)
    with pytest.raises(LrkitError, match="step must be a number >= 0"):
        cosine(10)(-1)


def test_explicit_fallback_keeps_odd_trees_exact():
    # a join whose first piece is itself a join cannot be written with >> (it would flatten)
    odd = Join((cosine(10) >> linear(5), cosine(3)), (15,))
    assert parse(to_spec(odd)) == odd
    assert from_config(to_config(odd)) == odd
    odd2 = warmup(5, then=join([cosine(10), warmup(3)], [4]))
    assert parse(to_spec(odd2)) == odd2
    assert from_config(to_config(odd2)) == odd2


def test_importing_schedules_does_not_import_torch_or_matplotlib():
    code = ("import sys, lrkit.schedules as s; s.parse('warmup(5) >> cosine(10)');"
            "print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_top_level_exports():
    import lrkit

    assert lrkit.schedules.cosine(10)(0) == 1.0
    assert callable(lrkit.to_torch)


def test_misc_nodes_evaluate():
    assert floor(cosine(10), 0.3)(9) == 0.3
    assert peak(warmup(2) >> constant(), 0.5)(1) == 0.25
    assert plateau(cosine(10))(5) == cosine(10)(5)
    assert restarts(10, decay=0.5)(10) == 0.5
    assert onecycle(100)(99) == pytest.approx(1 / 25 / 1e4)


def test_length_mixing_units_resolves_before_its_sign_is_judged():
    """``total - 1*epoch`` is positive once resolved, although its parts add up to 0 unresolved."""
    from lrkit.schedules import parse
    from lrkit.errors import LrkitError

    schedule = parse("warmup(1*epoch) >> cosine(total - 1*epoch)")
    resolved = schedule.resolve(steps_per_epoch=10, total_steps=100)
    assert resolved(10) == pytest.approx(1.0)
    assert resolved(55) == pytest.approx(0.5)
    assert resolved(100) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(LrkitError, match="positive length"):
        parse("cosine(0*total - 1*epoch)")


@pytest.mark.parametrize("spec, name", [("linear(100, start=0.5, end=2)", "end=2"),
                                        ("linear(100, start=1.5)", "start=1.5")])
def test_linear_ends_above_the_peak_are_refused_like_every_familys(spec, name):
    # the docs: a family's own end or floor above 1, the peak, is an error (torch's LinearLR too)
    with pytest.raises(LrkitError, match=f"{name} is not allowed; it must be >= 0 and <= 1"):
        parse(spec)
    assert parse("linear(100, start=0, end=1)")(100) == 1.0  # a ramp up to the peak is fine


@pytest.mark.parametrize("spec, kind", [("[cosine(100)]", "list"), ("(cosine(100), 3)", "tuple"),
                                        ("3", "int")])
def test_a_spec_that_is_no_schedule_is_named_as_written(spec, kind):
    with pytest.raises(LrkitError, match=f"it is a {kind}, not a schedule"):
        parse(spec)


def test_a_large_whole_number_of_steps_is_whole_and_past_the_limit_too_large():
    # "cosine(9999999999999999999999)" said "steps must be a whole number of steps" (the int is
    # whole; only its nearest float differs): lengths are whole up to 2**1000 steps, the largest
    # step a schedule evaluates, and too large beyond
    s = parse("cosine(9999999999999999999999)")
    assert s == cosine(9999999999999999999999) and s.steps == 9999999999999999999999
    assert parse(to_spec(s)) == s and from_config(to_config(s)) == s and s(5) == 1.0
    assert cosine(2 ** 1000).steps == 2 ** 1000
    for bad in (2 ** 1000 + 1, 10 ** 400):  # 10**400 was an OverflowError from inside
        with pytest.raises(LrkitError, match=r"cosine\(\): steps is too large, got \d{6}\.\.\. "
                                             r"\(\d+ digits\): a length is at most 2\*\*1000 steps"):
            cosine(bad)
    with pytest.raises(LrkitError, match=r"bad schedule spec .*cosine\(\): steps is too large, got "
                                         r"999999\.\.\. \(400 digits\)"):
        parse("cosine(" + "9" * 400 + ")")
    with pytest.raises(LrkitError, match=r"warmup\(\): steps must be >= 0 steps, got "
                                         r"-100000\.\.\. \(401 digits\)"):
        warmup(-10 ** 400)
    with pytest.raises(LrkitError, match=r"cosine\(\): floor is too large for a float"):
        cosine(10, floor=10 ** 400)
    assert plateau(cosine(10), patience=10 ** 30).patience == 10 ** 30


@pytest.mark.parametrize("text", ["0.5 * warmup(500) >> cosine(10000)",
                                  "floor(warmup(500, start=0.01), 0.05) >> cosine(10000)"])
def test_a_wrapped_bare_warmup_before_a_join_names_the_brackets(text):
    # '*' binds tighter than '>>': the error said the warmup "never ends" and pointed at join()
    with pytest.raises(LrkitError, match=r"put the whole chain in brackets"):
        parse(text)
    parse("0.5 * (warmup(500) >> cosine(10000))")  # the bracketed form is fine


def test_a_warmup_that_resolves_to_no_steps_is_the_schedule_after_it():
    # warmup(0.01*total) worked at 10,000 steps and raised "resolves to 0 steps" on a 40-step
    # smoke run; transformers takes num_warmup_steps=0 too
    spec = "warmup(0.01*total) >> cosine(total - 0.01*total)"
    short = parse(spec).resolve(total_steps=40)
    plain = cosine(40)
    assert [short(t) for t in range(41)] == [plain(t) for t in range(41)]
    assert parse("warmup(0)")(0) == 1.0
    assert parse("warmup(0) >> cosine(10)").bounds() == cosine(10).bounds()
    with pytest.raises(LrkitError, match="steps must be >= 0"):
        parse("warmup(-1) >> cosine(10)")
