"""Rates and optimizer specs: parsing, the shared lattice, errors that name the bad value."""
import re

import pytest
import torch

from lrkit.errors import LrkitError
from lrkit.sweep.space import (lr_key, parse_optimizer, parse_optimizers, parse_rates,
                               rebuild_optimizer)


def test_log_range_lies_on_a_shared_lattice():
    rates = parse_rates("1e-4:1")
    assert rates.kind == "range" and len(rates) == 33
    assert rates.low == pytest.approx(1e-4) and rates.high == pytest.approx(1.0)
    narrow = parse_rates("1e-3:0.1")
    assert set(map(lr_key, narrow.values)) <= set(map(lr_key, rates.values))
    assert len(parse_rates("1e-4:1:4")) == 17
    assert len(parse_rates((1e-3, 1.0), points_per_decade=2)) == 7


def test_explicit_lists_are_sorted_and_deduplicated():
    rates = parse_rates("0.1, 0.001,0.01,0.1")
    assert rates.kind == "list" and rates.values == (0.001, 0.01, 0.1)
    assert parse_rates([3e-4, 1e-2]).values == (3e-4, 1e-2)


@pytest.mark.parametrize("spec, words", [
    ("", "empty"),
    ("1:1e-4", "inverted"),
    ("1e-3:1e-3", "empty"),
    ("0:1", "positive"),
    ("-1e-3:1", "positive"),
    ("abc:1", "'abc'"),
    ("1e-3:1.1e-3", "lattice"),
    ("1e-3:1:x", "'x'"),
    ("a,b", "'a'"),
    ([], "empty"),
])
def test_bad_rate_ranges_name_the_problem(spec, words):
    with pytest.raises(LrkitError, match=words):
        parse_rates(spec)


def test_bad_resolution():
    with pytest.raises(LrkitError, match="points_per_decade"):
        parse_rates("1e-3:1", points_per_decade=0)


def test_optimizer_names_options_and_classes():
    sgd, adam = parse_optimizers("sgd,adam")
    assert sgd.target == "torch.optim.SGD" and sgd.kwargs == {}
    assert adam.target == "torch.optim.Adam"
    assert parse_optimizer("sgd-momentum").kwargs == {"momentum": 0.9}
    assert parse_optimizer("nesterov").kwargs == {"momentum": 0.9, "nesterov": True}
    wd = parse_optimizer("adamw(weight_decay=0.1, betas=(0.9, 0.95))")
    assert wd.kwargs == {"weight_decay": 0.1, "betas": (0.9, 0.95)}
    assert parse_optimizer("NAdam").target == "torch.optim.NAdam"
    assert parse_optimizer("radam").target == "torch.optim.RAdam"
    assert parse_optimizer("torch.optim.Adagrad").resolve() is torch.optim.Adagrad
    assert parse_optimizer(torch.optim.Adamax).target == "torch.optim.Adamax"
    pair = parse_optimizer((torch.optim.SGD, {"momentum": 0.5}))
    assert pair.kwargs == {"momentum": 0.5}
    assert parse_optimizers(None)[0].target == "recipe"
    # commas inside options do not split the list
    assert len(parse_optimizers("adamw(betas=(0.9, 0.99)),sgd")) == 2
    # keys identify the class and options, not the spelling
    assert parse_optimizer("SGD(momentum=0.9)").key() == parse_optimizer("sgd-momentum").key()


@pytest.mark.parametrize("spec, words", [
    ("lion", "unknown optimizer 'lion'.*adam"),
    ("adam(foo=1)", "rejects its options"),
    ("adam(betas=(0.9,))", "rejects its options"),
    ("sgd(lr=0.1)", "do not set lr"),
    ("adam(0.9)", "keywords"),
    ("adam(eps=__import__('os'))", "literal"),
    ("sgd,SGD", "given twice"),
    ("recipe(momentum=0.9)", "no options"),
    ("nosuchpkg.Opt", "cannot import"),
    ("", "empty"),
])
def test_bad_optimizers_name_the_problem(spec, words):
    with pytest.raises(LrkitError, match=words):
        parse_optimizers(spec)


def test_rebuild_keeps_parameter_groups_and_their_ratios():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    original = torch.optim.SGD([
        {"params": model[0].parameters(), "lr": 0.1, "weight_decay": 1e-4},
        {"params": model[1].parameters(), "lr": 0.01, "weight_decay": 0.0},
    ], lr=0.1, momentum=0.9)
    new = rebuild_optimizer(original, parse_optimizer("adam"), lr=1e-3)
    assert isinstance(new, torch.optim.Adam)
    assert [g["lr"] for g in new.param_groups] == pytest.approx([1e-3, 1e-4])
    assert [g["weight_decay"] for g in new.param_groups] == [1e-4, 0.0]  # differs per group: kept
    assert new.param_groups[0]["params"] == original.param_groups[0]["params"]
    forced = rebuild_optimizer(original, parse_optimizer("adamw(weight_decay=0.5)"), lr=1.0)
    assert [g["weight_decay"] for g in forced.param_groups] == [0.5, 0.5]  # the spec wins
    assert rebuild_optimizer(original, parse_optimizer("recipe"), lr=1.0) is original


@pytest.mark.parametrize("spec", ["adamw", ("adamw", {"betas": (0.9, 0.95)})])
def test_an_alias_default_does_not_override_a_no_decay_group(spec):
    # adamw means weight_decay=0.01 (torch's default), but a recipe's group without decay
    # (biases, norms) keeps its 0.0: the user wrote no weight decay in the spec
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    original = torch.optim.AdamW([
        {"params": model[0].parameters(), "weight_decay": 0.05},
        {"params": model[1].parameters(), "weight_decay": 0.0},
    ], lr=3e-3)
    parsed = parse_optimizer(spec)
    assert parsed.kwargs["weight_decay"] == 0.01 and parsed.implied == ("weight_decay",)
    new = rebuild_optimizer(original, parsed, lr=1e-3)
    assert [g["weight_decay"] for g in new.param_groups] == [0.05, 0.0]
    # one group: the alias's default applies as before
    single = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.3)
    assert rebuild_optimizer(single, parsed, lr=1e-3).param_groups[0]["weight_decay"] == 0.01
    # written by the user, it is set everywhere, also through (name, options)
    written = parse_optimizer(("adamw", {"weight_decay": 0.2}))
    assert written.implied == ()
    assert [g["weight_decay"] for g in rebuild_optimizer(original, written, lr=1e-3).param_groups] \
        == [0.2, 0.2]


@pytest.mark.parametrize("spec, words", [
    ("0.1,,0.2", "lrs '0.1,,0.2' has an empty item (item 2 of 3)"),
    ("0.1,0.2,", "lrs '0.1,0.2,' has an empty item (item 3 of 3)"),
    (",", "lrs ',' has an empty item (items 1, 2 of 2)"),
    ("-0.1,0.2", "lrs '-0.1,0.2': rate 1 must be a positive finite learning rate, got '-0.1'"),
])
def test_an_empty_or_bad_item_in_a_rate_list_is_refused_naming_the_text(spec, words):
    # "0.1,,0.2" used to sweep 0.1 and 0.2 without a word
    with pytest.raises(LrkitError, match=re.escape(words)):
        parse_rates(spec)


@pytest.mark.parametrize("spec, words", [
    ("sgd,,adam", "optimizers 'sgd,,adam' has an empty item (item 2 of 3)"),
    (",sgd", "optimizers ',sgd' has an empty item (item 1 of 2)"),
    ("adamw(betas=(0.9, 0.99)),", "has an empty item (item 2 of 2)"),
    ("  ", "optimizers '' is empty"),
])
def test_an_empty_item_in_an_optimizer_list_is_refused_naming_the_text(spec, words):
    with pytest.raises(LrkitError, match=re.escape(words)):
        parse_optimizers(spec)
