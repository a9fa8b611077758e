"""The plain-function adapter: any training code, told what the PyTorch adapter measures."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import lrkit
from lrkit import LrkitError


def _quadratic(**options) -> tuple[lrkit.FunctionTrainable, dict]:
    """One weight on w**2 (the loss falls, then diverges past lr = 1), and its state."""
    state = {"w": 5.0}

    def step(lr):
        loss = state["w"] ** 2
        state["w"] -= lr * 2 * state["w"]
        return loss

    trainable = lrkit.FunctionTrainable(step, save_fn=lambda: dict(state),
                                        load_fn=lambda s: state.update(s), **options)
    return trainable, state


def _test(trainable):
    return lrkit.range_test(trainable, start_lr=1e-4, end_lr=10, num_steps=60, progress=False)


def test_a_measured_noise_and_the_adam_family_reach_the_suggestion():
    calls = []

    def noise(k):
        calls.append(k)
        return 2.0

    adam, state = _quadratic(optimizer_family="adam", noise_fn=noise)
    told = _test(adam)
    assert calls == [16] and state == {"w": 5.0}
    assert told.gradient_noise == 2.0 and told.settings["optimizer_family"] == "adam"
    assert told.settings["edge_fraction"] == 0.15  # Adam at a noise of 1.3 or more
    assert told.settings["noise_batches"] == 16  # what the measurement cost is counted

    plain, _ = _quadratic()
    untold = _test(plain)
    assert untold.gradient_noise is None and untold.settings["noise_batches"] == 0
    assert untold.settings["optimizer_family"] == "other" and untold.settings["edge_fraction"] == 0.4
    # the same curve: the suggestion moves by the fraction alone
    assert told.lrs == untold.lrs and told.losses == untold.losses
    assert told.suggested_lr == pytest.approx(untold.suggested_lr * 0.15 / 0.4, rel=1e-9)


def test_a_noise_function_that_cannot_measure_returns_none():
    trainable, _ = _quadratic(optimizer_family="sgd", noise_fn=lambda k: None)
    result = _test(trainable)
    assert result.gradient_noise is None and result.suggested_lr is not None


@pytest.mark.parametrize("value", [np.float32(2.5), torch.tensor(2.5), torch.tensor([2.5]),
                                   np.array([2.5]), 2.5])
def test_the_loss_may_be_any_one_element_number(value):
    trainable = lrkit.FunctionTrainable(lambda lr: value, eval_fn=lambda: value)
    assert trainable.train_step(0.1) == 2.5 and trainable.eval_loss() == 2.5


def test_non_finite_losses_pass_through_to_the_range_test():
    assert math.isnan(lrkit.FunctionTrainable(lambda lr: float("nan")).train_step(0.1))
    assert lrkit.FunctionTrainable(lambda lr: 1.0, eval_fn=lambda: None).eval_loss() is None


@pytest.mark.parametrize("value, shown", [(None, "NoneType None"), ("0.5", "str '0.5'"),
                                          (True, "bool True"),
                                          (torch.ones(3), "Tensor of shape (3,)")])
def test_a_step_that_returns_no_number_is_named(value, shown):
    trainable = lrkit.FunctionTrainable(lambda lr: value)
    with pytest.raises(LrkitError, match="step_fn must return the loss as a number.*got "
                       + re.escape(shown)):
        trainable.train_step(0.1)
    if value is None:
        return  # an eval_fn may say "no validation data"
    with pytest.raises(LrkitError, match="eval_fn must return the loss as a number"):
        lrkit.FunctionTrainable(lambda lr: 1.0, eval_fn=lambda: value).eval_loss()


@pytest.mark.parametrize("value", [-1.0, float("nan"), "2", torch.ones(2)])
def test_a_noise_function_returning_no_ratio_is_named(value):
    trainable, state = _quadratic(noise_fn=lambda k: value)
    with pytest.raises(LrkitError, match="noise_fn must return the noise-to-signal ratio"):
        _test(trainable)
    assert state == {"w": 5.0}  # raised inside preserved(): restored


def test_an_infinite_noise_is_a_ratio():
    trainable, _ = _quadratic(noise_fn=lambda k: math.inf)
    assert _test(trainable).gradient_noise == math.inf


@pytest.mark.parametrize("options, message", [
    ({"optimizer_family": "adamw"}, "optimizer_family must be one of \\['adam', 'sgd', 'other'\\], got 'adamw'"),
    ({"noise_fn": 2.0}, "noise_fn must be callable or None, got float"),
    ({"eval_fn": "loss"}, "eval_fn must be callable or None, got str"),
    ({"save_fn": dict}, "give both save_fn and load_fn"),
])
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(LrkitError, match=message):
        lrkit.FunctionTrainable(lambda lr: 1.0, **options)


@pytest.mark.parametrize("ratios", [[], [0, -1], [float("nan")], [0.0], "1", None])
def test_group_ratios_that_are_no_rates_are_refused(ratios):
    with pytest.raises(LrkitError, match="group_ratios must be a non-empty list of finite rates"):
        lrkit.FunctionTrainable(lambda lr: 1.0, group_ratios=ratios)


def test_group_ratios_give_one_suggestion_per_group():
    trainable, _ = _quadratic(group_ratios=(1.0, 0.1, np.float64(0.0)))
    assert trainable.group_ratios == [1.0, 0.1, 0.0]
    result = _test(trainable)
    assert result.suggested_lrs == pytest.approx([result.suggested_lr, result.suggested_lr * 0.1,
                                                  0.0])


def test_validation_asked_of_a_trainable_without_validation_data_says_so():
    trainable, _ = _quadratic()
    result = lrkit.range_test(trainable, start_lr=1e-4, end_lr=10, num_steps=60, val_every=2,
                              progress=False)
    assert result.settings["curve"] == "train"
    assert any("no validation data (its eval_loss() returned None)" in w for w in result.warnings)
    assert not any("fewer than the" in w for w in result.warnings)


def test_a_function_without_save_and_load_is_said_to_be_left_as_the_ramp_left_it():
    state = {"w": 5.0}

    def step(lr):
        state["w"] -= lr * 2 * state["w"]
        return state["w"] ** 2

    result = _test(lrkit.FunctionTrainable(step))
    assert any("nothing was restored" in w and "save_fn" in w for w in result.warnings)
    kept = _test(lrkit.FunctionTrainable(
        step, save_fn=lambda: dict(state), load_fn=lambda saved: state.update(saved)))
    assert not any("nothing was restored" in w for w in kept.warnings)
