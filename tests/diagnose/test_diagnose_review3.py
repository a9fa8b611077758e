"""diagnose(): a {step: loss} dict is reported by its steps; a loss that never changed (all
zero, or exactly constant) is not called "too slow"."""
import json

import numpy as np
import pytest

from lrkit.cli import main
from lrkit.diagnose import diagnose
from lrkit.diagnose.synthetic import curve
from lrkit.errors import LrkitError

SPIKES = (120, 180, 240)


def _spiky(n=300):
    rng = np.random.default_rng(0)
    loss = 2.3 * np.exp(-np.arange(n) / 40) + 0.2 + 0.01 * rng.standard_normal(n)
    for i in SPIKES:
        loss[i] = 3.0
    return loss


def _as_dict(values, first=3000, every=10):
    return {first + every * i: float(v) for i, v in enumerate(values)}


# -- a {step: loss} dict -------------------------------------------------------------------------

def test_a_dict_is_reported_by_its_steps_not_by_position():
    d = diagnose(_as_dict(_spiky()))
    assert d.verdict == "unstable"
    assert d.evidence["spike_steps"] == [4200, 4800, 5400]
    assert "steps 4200, 4800, 5400" in " ".join(d.reasons)
    assert "steps 120, 180, 240" not in " ".join(d.reasons)


def test_a_dict_gives_what_the_steps_option_gives():
    values = _spiky()
    steps = [3000 + 10 * i for i in range(len(values))]
    by_dict = diagnose(_as_dict(values), 0.1)
    by_steps = diagnose(values, 0.1, steps=steps)
    assert by_dict.evidence == by_steps.evidence and by_dict.reasons == by_steps.reasons
    assert by_dict.explanation == by_steps.explanation
    assert "trouble started at step 4200" in by_dict.explanation


def test_a_dict_in_any_order_is_read_in_the_order_of_its_steps():
    values = _spiky()
    items = list(_as_dict(values).items())
    np.random.default_rng(1).shuffle(items)
    shuffled = diagnose(dict(items))
    assert shuffled.evidence == diagnose(_as_dict(values)).evidence
    assert shuffled.evidence["spike_steps"] == [4200, 4800, 5400]


def test_json_string_keys_are_steps_too():
    values = _spiky()
    as_json = json.loads(json.dumps(_as_dict(values)))  # keys "3000", "3010", ...
    assert diagnose(as_json).evidence == diagnose(_as_dict(values)).evidence
    assert diagnose({float(k): v for k, v in _as_dict(values).items()}).evidence == \
        diagnose(_as_dict(values)).evidence  # 3000.0 is step 3000


def test_a_list_of_rates_follows_the_dicts_items_as_given():
    """Rates that change along the run, given as a list in the dict's own (unsorted) order:
    they are put in the steps' order with the losses, not paired by position."""
    values = _spiky()
    rates = np.linspace(0.1, 0.2, len(values))  # the rate at each loss, in step order
    order = np.random.default_rng(2).permutation(len(values))
    steps = [3000 + 10 * i for i in range(len(values))]
    losses = {steps[i]: float(values[i]) for i in order}
    d = diagnose(losses, [float(rates[i]) for i in order])
    assert d.evidence["lr_at_trouble"] == pytest.approx(rates[SPIKES[0]])
    assert d.evidence["lr_end"] == pytest.approx(rates[-1])


def test_a_dict_of_rates_is_matched_by_step():
    values = _spiky()
    rates = {3000 + 10 * i: 0.1 + 0.001 * i for i in reversed(range(len(values)))}
    d = diagnose(_as_dict(values), rates)
    assert d.evidence["lr_at_trouble"] == pytest.approx(0.1 + 0.001 * SPIKES[0])
    with pytest.raises(LrkitError, match=r"different steps \(e\.g\. step 3000"):
        diagnose(_as_dict(values), {k + 1: v for k, v in rates.items()})


@pytest.mark.parametrize("key", [1.5, "1.5", "abc", None, True, float("nan"), float("inf"), (1,)])
def test_a_key_that_is_not_a_whole_step_number_is_refused(key):
    losses = {i: 1.0 / i for i in range(10, 30)}  # 10..29: True (== 1) is a key of its own
    losses[key] = 0.5
    with pytest.raises(LrkitError) as info:
        diagnose(losses)
    message = str(info.value)
    assert f"losses has the key {key!r}" in message
    assert "whole numbers" in message and "steps=" in message


def test_the_same_step_twice_is_refused():
    losses = {i: 1.0 / (i + 1) for i in range(20)}
    losses["3"] = 0.2
    with pytest.raises(LrkitError, match=r"the step 3 twice \(keys 3 and '3'\)"):
        diagnose(losses)


def test_a_dict_with_other_steps_is_refused_and_with_its_own_steps_accepted():
    losses = _as_dict(_spiky())
    with pytest.raises(LrkitError, match=r"keys are the steps, and steps= gives other step "
                                         r"numbers; drop steps="):
        diagnose(losses, steps=list(range(len(losses))))
    with pytest.raises(LrkitError, match="drop steps="):
        diagnose(losses, steps=list(losses)[:-1])
    same = diagnose(losses, steps=list(losses))  # redundant, but the same steps: fine
    assert same.evidence == diagnose(losses).evidence


def test_an_empty_dict_is_refused_as_empty():
    with pytest.raises(LrkitError, match="losses is empty"):
        diagnose({})


# -- a loss that never changed ------------------------------------------------------------------

def test_an_all_zero_loss_is_not_called_too_slow():
    d = diagnose(np.zeros(200))
    assert d.verdict == "not_enough_data" and d.lr_factor is None and d.suggested_lr is None
    assert d.evidence["constant_loss"] == 0.0
    assert d.reasons == ["the loss is exactly 0 at all 200 steps: it never changed, so it says "
                         "nothing about the rate"]
    assert "nothing left to learn" in d.explanation and "not wired to the model" in d.explanation
    assert "too low" not in d.explanation and "x10" not in str(d)
    assert d.recommendation.startswith("none (the loss never changed")


@pytest.mark.parametrize("value", [2.302585, -1.5, 1e-13, 1e6])
def test_a_constant_loss_says_no_learning_happened(value):
    d = diagnose(np.full(150, value), lrs=0.01)
    assert d.verdict == "not_enough_data" and d.lr_factor is None and d.suggested_lr is None
    assert "no learning happened at all" in d.explanation
    assert "gradients do not flow" in d.explanation and "does not depend on the parameters" \
        in d.explanation
    assert "The rate was 0.01, not 0" in d.explanation
    assert f"exactly {value:.6g} at all 150 steps" in d.reasons[0]


def test_a_constant_loss_at_a_rate_of_zero_says_so():
    d = diagnose([1.5] * 50, lrs=[0.0] * 50)
    assert d.verdict == "not_enough_data" and d.suggested_lr is None
    assert "The logged rate is 0 at every step" in d.explanation


def test_a_constant_loss_without_rates_still_names_a_zero_rate_as_a_cause():
    d = diagnose([0.7] * 30)
    assert "rate is not 0" in d.explanation and d.lr_factor is None


def test_a_constant_loss_in_the_cli(tmp_path, capsys):
    path = tmp_path / "flat.csv"
    path.write_text("step,loss,lr\n" + "".join(f"{100 * i},0.0,0.01\n" for i in range(50)))
    assert main(["diagnose", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "not_enough_data" and data["lr_factor"] is None
    assert data["evidence"]["constant_loss"] == 0.0 and "exactly 0 at all 50 steps" in \
        data["reasons"][0]


def test_what_is_not_exactly_constant_keeps_its_verdict():
    """A constant stretch with one different value, a short constant history, a constant
    history with a non-finite value: the ordinary rules, as before."""
    one_off = np.r_[np.full(99, 1.5), 1.6]
    assert diagnose(one_off).evidence.get("constant_loss") is None
    assert diagnose(np.full(5, 0.0)).reasons == ["only 5 finite loss values; at least 8 are "
                                                 "needed"]
    assert diagnose(np.r_[np.full(99, 1.5), np.nan]).verdict == "diverged"
    falls_to_zero = np.r_[2.3 * np.exp(-np.arange(100) / 10), np.zeros(100)]
    assert diagnose(falls_to_zero).verdict == "healthy"


@pytest.mark.parametrize("family", ["healthy", "too_slow", "plateaued", "unstable", "diverged"])
def test_noisy_curves_are_never_taken_for_constant(family):
    rng = np.random.default_rng(7)
    for per_epoch in (False, True):
        d = diagnose(curve(family, rng=rng, per_epoch=per_epoch))
        assert "constant_loss" not in d.evidence and d.verdict != "not_enough_data"


def test_a_loss_that_has_not_moved_is_not_described_as_falling_slowly():
    rng = np.random.default_rng(0)
    flat = 2.3 + 0.01 * rng.standard_normal(300)
    d = diagnose(flat)
    assert d.verdict == "too_slow" and d.lr_factor == 10.0
    assert "barely moved" in d.explanation and "falling steadily" not in d.explanation
    slow = 2.3 * np.exp(-np.linspace(0, 0.5, 300)) + 0.01 * rng.standard_normal(300)
    d = diagnose(slow)
    assert d.verdict == "too_slow" and d.lr_factor == 3.0
    assert "falling steadily but slowly" in d.explanation


def test_a_noisy_loss_at_a_logged_rate_of_zero_says_the_rate_is_zero():
    rng = np.random.default_rng(1)
    flat = 2.3 + 0.01 * rng.standard_normal(300)
    d = diagnose(flat, lrs=np.zeros(300))
    assert d.suggested_lr is None
    assert "logged rate is 0 at every step" in d.explanation
    assert "logged rate is 0" not in diagnose(flat, lrs=np.full(300, 1e-4)).explanation


def test_a_finite_blow_up_is_placed_where_the_loss_turned_up_not_at_its_peak():
    """The loss was 1e12 at step 8 and kept growing to step 36: the trouble, and the rate the
    advice is cut from, are where it turned up (a warmup's rate there), not at the peak."""
    losses = ([2.3, 2.2, 2.1, 2.0, 50.0, 1e3, 1e5, 1e8, 1e12]
              + [1e12 * 10 ** (i / 5) for i in range(1, 30)] + [1e17] * 20)
    lrs = np.geomspace(1e-3, 1.0, len(losses))  # a warmup that rises through the blow-up
    d = diagnose(losses, lrs=lrs)
    assert d.verdict == "diverged"
    assert d.evidence["peak_at"] >= 30 and d.evidence["blowup_at"] <= 4
    turn = d.evidence["blowup_at"]
    assert d.suggested_lr == pytest.approx(0.1 * lrs[turn])
    assert f"trouble started at step {turn}," in d.explanation
    # a fall, then a slow climb to 9x the start: the turn is at the bottom (step ~60)
    rng = np.random.default_rng(0)
    slow = np.concatenate([2.3 * np.exp(-np.linspace(0, 1.5, 60)),
                           0.5 * np.exp(np.linspace(0, 3.7, 100))])
    d = diagnose(slow * np.exp(0.05 * rng.standard_normal(160)), lrs=np.geomspace(0.01, 1, 160))
    assert d.verdict == "diverged" and 50 <= d.evidence["blowup_at"] <= 65
