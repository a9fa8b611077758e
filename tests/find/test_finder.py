"""Range-test behaviour: batch formats, parameter groups, divergence, validation mode, options."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import lrkit
from lrkit.find.divergence import has_diverged
from tests.find.helpers import tiny_problem


def test_tuple_batches_give_a_float_suggestion():
    model, loader, criterion = tiny_problem(seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = lrkit.find_lr(model, opt, loader, criterion, progress=False)
    assert isinstance(result.suggested_lr, float)
    assert result.lrs[0] <= result.suggested_lr <= result.lrs[-1]
    lo, hi = result.good_range
    assert lo <= hi
    assert set(result.suggestions) >= {"steepest", "valley", "minimum"}


def test_exponential_and_linear_ramps():
    model, loader, criterion = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    exp = lrkit.find_lr(model, opt, loader, criterion, start_lr=1e-3, end_lr=1.0, num_steps=20,
                        progress=False, diverge_threshold=1e9)
    lin = lrkit.find_lr(model, opt, loader, criterion, start_lr=1e-3, end_lr=1.0, num_steps=20,
                        ramp="linear", progress=False, diverge_threshold=1e9)
    assert np.allclose(np.diff(np.log(exp.lrs)), np.log(1000) / 19)
    assert np.allclose(np.diff(lin.lrs), (1.0 - 1e-3) / 19)


class DictModel(nn.Module):
    """A Hugging Face-like model: takes keyword tensors, returns an object with .loss."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8, 2)

    def forward(self, features, labels):
        logits = self.net(features)
        return SimpleNamespace(loss=nn.functional.cross_entropy(logits, labels), logits=logits)


def _dict_batches(n=8):
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.randn(16, 8, generator=gen)
        out.append({"features": x, "labels": (x[:, 0] > 0).long()})
    return out


def test_dict_batches_and_model_output_with_loss_attribute():
    model = DictModel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    result = lrkit.find_lr(model, opt, _dict_batches(), num_steps=30, end_lr=0.1, progress=False)
    assert result.steps == 30 and result.stop_reason == "completed"
    assert all(math.isfinite(v) for v in result.losses)


def test_dict_batches_with_user_loss_fn_returning_a_dict():
    model = DictModel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen = []

    def loss_fn(m, batch):
        seen.append(type(batch))
        return {"loss": m(**batch).loss}

    result = lrkit.find_lr(model, opt, _dict_batches(), loss_fn=loss_fn, num_steps=20, progress=False)
    assert result.steps == 20 and seen and all(t is dict for t in seen)


def test_short_loader_is_cycled():
    model = nn.Linear(8, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = _dict_batches(3)
    pairs = [(b["features"], b["labels"]) for b in batches]
    result = lrkit.find_lr(model, opt, pairs, nn.CrossEntropyLoss(), num_steps=25,
                           end_lr=0.1, progress=False)
    assert result.steps == 25


def test_parameter_groups_keep_their_ratios():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.01},
                           {"params": model[2].parameters(), "lr": 0.1}], lr=0.05)
    seen = []

    class Spy(nn.CrossEntropyLoss):
        def forward(self, logits, targets):
            seen.append([g["lr"] for g in opt.param_groups])
            return super().forward(logits, targets)

    _, loader, _ = tiny_problem(batch_norm=False)
    result = lrkit.find_lr(model, opt, loader, Spy(), num_steps=20, end_lr=1.0, progress=False)
    assert all(b / a == pytest.approx(10.0) for a, b in seen)
    assert [r for r in result.group_ratios] == pytest.approx([1.0, 10.0])
    if result.suggested_lr is not None:
        assert result.suggested_lrs == pytest.approx([result.suggested_lr, 10 * result.suggested_lr])
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]


def test_nan_loss_stops_and_never_corrupts_the_suggestion():
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = {"n": 0}

    def loss_fn(m, batch):
        calls["n"] += 1
        x, y = batch
        loss = criterion(m(x), y)
        # (the first 16 batches measure the gradient noise, before the ramp)
        return loss * float("nan") if calls["n"] > 16 + 60 else loss

    result = lrkit.find_lr(model, opt, loader, loss_fn=loss_fn, start_lr=1e-4, end_lr=1.0,
                           progress=False)
    assert result.steps == 61
    assert "nan" in result.stop_reason
    assert math.isnan(result.losses[-1])
    for lr in result.suggestions.values():
        assert lr is None or (math.isfinite(lr) and lr <= result.lrs[-2])
    assert result.to_dict()["losses"][-1] is None  # JSON-safe


def test_negative_losses_diverge_properly_and_shift_invariantly():
    model, loader, criterion = tiny_problem(batch_norm=False, dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    common = dict(start_lr=1e-4, end_lr=1e4, num_steps=60, progress=False)
    plain = lrkit.find_lr(model, opt, loader, criterion, **common)
    shifted = lrkit.find_lr(model, opt, loader, loss_fn=lambda m, b: criterion(m(b[0]), b[1]) - 100.0,
                            **common)
    assert max(shifted.losses[:5]) < 0
    assert shifted.stop_reason != "completed"  # the rule still sees the blow-up
    assert plain.suggestions == pytest.approx(shifted.suggestions, rel=1e-6, abs=0)


@pytest.mark.parametrize("best,first,value,noise,expected", [
    (1.0, 2.0, 3.9, 0.0, False), (1.0, 2.0, 4.1, 0.0, True),   # 3x the improvement above best
    (-10.0, -5.0, 4.0, 0.0, False), (-10.0, -5.0, 5.5, 0.0, True),  # negative losses
    (0.0, 1.0, 2.0, 0.0, False), (0.0, 1.0, 3.5, 0.0, True),   # zero best
    (5.0, 5.0, 5.2, 0.1, False), (5.0, 5.0, 5.4, 0.1, True),   # no improvement yet: noise scale
])
def test_divergence_rule(best, first, value, noise, expected):
    assert has_diverged(value, best, first, 4.0, noise) is expected
    # the same rule after shifting every loss by a constant
    assert has_diverged(value - 50, best - 50, first - 50, 4.0, noise) is expected


def test_validation_mode_evaluates_a_fixed_subset_every_k_steps():
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches_seen = []

    class CountingLoader:
        def __init__(self, data):
            self.data = data

        def __iter__(self):
            for batch in self.data:
                batches_seen.append(id(batch))
                yield batch

    val = CountingLoader(list(loader))
    result = lrkit.find_lr(model, opt, loader, criterion, val_loader=val, val_every=5,
                           val_batches=2, num_steps=50, end_lr=1.0, progress=False)
    assert len(result.val_losses) == result.steps // 5
    assert len(batches_seen) == 2  # the subset is drawn once, not re-read every evaluation
    assert result.settings["curve"] == "validation"


def test_too_few_validation_points_say_the_training_curve_was_used():
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lrkit.find_lr(model, opt, loader, criterion, val_loader=loader, val_every=20,
                           num_steps=50, end_lr=1.0, progress=False)
    assert result.settings["curve"] == "train"
    warning = next(w for w in result.warnings if "validation every 20 steps" in w)
    assert "gave 2 points" in warning and "val_every=3" in warning


def test_gradient_accumulation_takes_one_optimizer_step_per_k_batches():
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    counts = {"batches": 0, "steps": 0}

    def loss_fn(m, batch):
        counts["batches"] += 1
        return criterion(m(batch[0]), batch[1])

    opt.register_step_post_hook(lambda *a: counts.__setitem__("steps", counts["steps"] + 1))
    lrkit.find_lr(model, opt, loader, loss_fn=loss_fn, accumulation_steps=4, num_steps=12,
                  end_lr=0.1, progress=False)
    # and 16 micro-batches, no step, before the ramp: the gradient noise
    assert counts == {"batches": 16 + 48, "steps": 12}


def test_mixed_precision_runs_on_cpu_with_bfloat16():
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lrkit.find_lr(model, opt, loader, criterion, amp=True, num_steps=15, end_lr=0.1,
                           progress=False)
    assert result.steps == 15 and all(math.isfinite(v) for v in result.losses)


def test_plot_saves_without_a_display_and_json_round_trips(tmp_path):
    model, loader, criterion = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = lrkit.find_lr(model, opt, loader, criterion, progress=False)
    fig = result.plot(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 5000
    assert fig.axes[0].get_xscale() == "log"
    path = tmp_path / "r.json"
    result.to_json(path)
    import json

    back = lrkit.FinderResult.from_dict(json.loads(path.read_text()))
    assert back.lrs == result.lrs and back.suggested_lr == result.suggested_lr
    assert len(back.losses) == result.steps


def test_plain_function_adapter():
    """The core drives any step function: here a noisy quadratic with a known stability edge."""
    rng = np.random.default_rng(0)
    state = {"w": 5.0}

    def step(lr):
        loss = state["w"] ** 2
        state["w"] -= lr * 2 * state["w"]  # diverges for lr > 1
        return loss + 0.01 * rng.standard_normal()

    trainable = lrkit.FunctionTrainable(step, save_fn=lambda: dict(state),
                                        load_fn=lambda s: state.update(s))
    result = lrkit.range_test(trainable, start_lr=1e-4, end_lr=100, num_steps=100, progress=False)
    assert state["w"] == 5.0
    assert result.stop_reason != "completed"
    assert 1e-3 < result.suggested_lr < 1.0


def test_a_test_longer_than_30_percent_of_the_planned_run_says_so():
    model, loader, criterion = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    short = lrkit.find_lr(model, opt, loader, criterion, num_steps=40, budget_steps=100,
                          progress=False, diverge_threshold=1e9)
    # the 16 batches that measure the gradient noise count too
    assert any("56 steps, 56% of the planned run of 100" in w for w in short.warnings)
    long = lrkit.find_lr(model, opt, loader, criterion, num_steps=40, budget_steps=1000,
                         progress=False, diverge_threshold=1e9)
    assert not any("planned run" in w for w in long.warnings)
    assert short.settings["accumulation_steps"] == 1 and short.settings["max_grad_norm"] is None


def test_the_advice_to_keep_the_snapshot_on_the_device_comes_only_when_the_copy_was_costly():
    from lrkit.adapters.torch import snapshot_advice

    advice = snapshot_advice("cuda", "cpu", copy_seconds=0.67, total_seconds=1.13)
    assert "59% of the test" in advice and "snapshot='device'" in advice and "cuda memory" in advice
    assert snapshot_advice("cuda", "cpu", copy_seconds=0.05, total_seconds=1.0) is None
    assert snapshot_advice("cuda", "device", copy_seconds=0.67, total_seconds=1.13) is None
    assert snapshot_advice("cpu", "cpu", copy_seconds=0.67, total_seconds=1.13) is None
    model, loader, criterion = tiny_problem()  # a CPU model: never advised
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=20, progress=False,
                           diverge_threshold=1e9)
    assert not any("snapshot='device'" in w for w in result.warnings)


def test_a_ramp_too_coarse_to_read_gives_no_suggestion_and_says_why():
    # 10 steps over 8 decades: `lrkit find --steps 10` suggested 4 on digits-mlp, where 0.5
    # diverges, with only "raise end_lr" as advice
    model, loader, criterion = tiny_problem(seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=10, progress=False)
    assert result.suggested_lr is None and result.good_range is None
    assert result.warnings[0].startswith("only 1.25 steps per decade")
    assert "num_steps=24" in result.warnings[0]
    assert not any("raise end_lr" in w for w in result.warnings)
    assert result.summary().startswith("No suggestion: only 1.25 steps per decade")
    # the same 10 steps over two decades are fine
    narrow = lrkit.find_lr(model, opt, loader, criterion, start_lr=1e-3, end_lr=1e-1,
                           num_steps=10, progress=False)
    assert not any("steps per decade" in w for w in narrow.warnings)


def test_the_stop_reason_says_what_the_rule_measured():
    model, loader, criterion = tiny_problem(seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = lrkit.find_lr(model, opt, loader, criterion, end_lr=1e4, progress=False)
    # the rule compares the rise over the best with the fall so far, not loss / best
    assert result.stop_reason.startswith("diverged at lr=")
    assert "rose above its best by over 3x its fall so far" in result.stop_reason


def test_a_coarse_ramp_shows_no_method_rate_as_an_answer():
    # the summary said "No suggestion" but the table still marked edge = 4 with a star, the
    # JSON held it, and the plot drew the other methods' ticks
    model, loader, criterion = tiny_problem(seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=10, progress=False)
    assert set(result.suggestions) >= {"edge", "steepest"}
    assert all(v is None for v in result.suggestions.values())
    assert not any(w.startswith("the methods disagree") for w in result.warnings)
    assert "lrkit find --steps 24" in result.warnings[0]


def test_no_suggestion_names_its_own_cause_not_the_first_warning():
    from lrkit.find import FinderResult

    lrs = list(np.geomspace(1e-4, 1, 40))
    saved = FinderResult.from_dict({"lrs": lrs, "losses": [1.0] * 40, "suggested_lr": None,
                                    "warnings": ["the test took 120 steps, 40% of the run"]})
    assert saved.summary().startswith("No suggestion: the curve gave none (see the warnings)")
    # a loss that never falls, and a test longer than 30% of the run: the cause comes first
    flat = lrkit.range_test(lrkit.FunctionTrainable(lambda lr: 1.0), start_lr=1e-4, end_lr=1.0,
                            num_steps=40, budget_steps=50, progress=False)
    assert flat.suggested_lr is None
    assert any(w.startswith("the test took") for w in flat.warnings)
    assert flat.summary().startswith("No suggestion: the loss never fell")
    assert flat.settings["no_suggestion"].startswith("the loss never fell")


def test_from_dict_takes_nulls_as_missing_and_refuses_non_numbers():
    from lrkit.find import FinderResult

    lrs, losses = [1e-3, 1e-2, 1e-1], [1.0, 0.5, 2.0]
    result = FinderResult.from_dict({"lrs": lrs, "losses": losses, "suggested_lr": 0.01,
                                     "group_ratios": None, "method": None, "stop_reason": None})
    assert result.group_ratios == [1.0] and result.method == "unknown"
    assert "None" not in result.summary() and result.to_dict()["stop_reason"] == "unknown"
    with pytest.raises(lrkit.LrkitError, match="suggestions must map method names to rates"):
        FinderResult.from_dict({"lrs": lrs, "losses": losses, "suggested_lr": 0.01,
                                "suggestions": {"edge": "x"}})
