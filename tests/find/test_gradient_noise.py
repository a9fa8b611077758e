"""The gradient's noise-to-signal ratio: the estimate, its measurement on a PyTorch model before
the ramp, and how the default suggestion reads it."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import lrkit
from lrkit.errors import LrkitError
from lrkit.find import suggest
from lrkit.find.noise import describe, noise_ratio
from lrkit.find.result import FinderResult
from tests.find.helpers import assert_same_state, state_of, tiny_problem
from tests.find.test_suggest import synthetic_curve


def _sums(grads: np.ndarray) -> tuple[float, float]:
    squares = float((grads ** 2).sum())
    total = grads.sum(axis=0)
    return squares, float((total @ total - squares) / 2)  # sum over pairs i < j of g_i . g_j


def test_the_ratio_recovers_a_known_noise_over_signal():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(50)  # |G|^2 ~ 50
    noise_sd = 2.0  # tr(Sigma) = 50 * 4 = 200: a ratio of 200 / |G|^2
    grads = signal + noise_sd * rng.standard_normal((4000, 50))
    truth = 50 * noise_sd ** 2 / float(signal @ signal)
    assert noise_ratio(*_sums(grads), 4000) == pytest.approx(truth, rel=0.05)


def test_the_ratio_says_when_it_knows_nothing_or_sees_only_noise():
    assert noise_ratio(1.0, 0.5, 1) is None  # one gradient: no pair
    assert noise_ratio(math.nan, 0.5, 4) is None and noise_ratio(1.0, math.inf, 4) is None
    assert noise_ratio(0.0, 0.0, 4) is None  # every gradient zero
    assert noise_ratio(4.0, -1.0, 4) == math.inf  # no common direction
    assert noise_ratio(4.0, 6.0, 4) == 0.0  # identical gradients: no noise at all
    assert describe(None) is None
    assert "noise dominates" in describe(math.inf)
    assert "(low)" in describe(0.2) and "about 3x this one" in describe(3.0)


def test_the_edge_fraction_rises_only_where_the_noise_is_low():
    assert suggest.edge_fraction(None) == suggest.EDGE_FRACTION
    assert suggest.edge_fraction(0.0) == 1.0
    assert suggest.edge_fraction(0.25) == pytest.approx(0.8)
    assert suggest.edge_fraction(3.0) == suggest.EDGE_FRACTION  # 1/4 < 0.4: never lowered
    assert suggest.edge_fraction(math.inf) == suggest.EDGE_FRACTION
    assert suggest.edge_fraction(math.nan) == suggest.EDGE_FRACTION
    lrs, losses = synthetic_curve(100, 2.0, -3.0, 1.0, 0.01, 0)
    plain = suggest.analyse(lrs, losses)
    quiet = suggest.analyse(lrs, losses, gradient_noise=0.25)
    minimum = float(plain.curve.lrs[plain.curve.min_index])
    assert plain.suggested_lr == pytest.approx(0.4 * minimum)
    assert quiet.suggested_lr == pytest.approx(0.8 * minimum)
    # the other methods do not read it
    assert {k: v for k, v in quiet.suggestions.items() if k != "edge"} == \
        {k: v for k, v in plain.suggestions.items() if k != "edge"}


def test_adam_at_a_high_noise_takes_a_smaller_share_of_the_minimum():
    adam = suggest.ADAM_NOISY_FRACTION
    assert suggest.edge_fraction(1.3, "adam") == adam
    assert suggest.edge_fraction(math.inf, "adam") == adam
    assert suggest.edge_fraction(1.2, "adam") == pytest.approx(1 / 2.2)  # below: as for SGD
    assert suggest.edge_fraction(None, "adam") == suggest.EDGE_FRACTION  # not measured
    # a short run: the noise has no time to tell, and speed counts
    assert suggest.edge_fraction(2.0, "adam", budget_steps=99) == suggest.EDGE_FRACTION
    assert suggest.edge_fraction(2.0, "adam", budget_steps=100) == adam
    assert suggest.edge_fraction(3.0, "sgd") == suggest.edge_fraction(3.0, "other") == \
        suggest.EDGE_FRACTION
    lrs, losses = synthetic_curve(100, 2.0, -3.0, 1.0, 0.01, 0)
    sgd = suggest.analyse(lrs, losses, gradient_noise=2.0, optimizer_family="sgd")
    noisy = suggest.analyse(lrs, losses, gradient_noise=2.0, optimizer_family="adam")
    min_rate = float(sgd.curve.lrs[sgd.curve.min_index])
    assert sgd.suggested_lr == pytest.approx(suggest.EDGE_FRACTION * min_rate)
    assert noisy.suggested_lr == pytest.approx(adam * min_rate)
    # the good range reaches down to it, wherever the fall started
    assert noisy.good_range[0] <= noisy.suggested_lr <= noisy.good_range[1]
    assert noisy.good_range[1] == pytest.approx(sgd.good_range[1])
    # a fall that starts a quarter decade below the minimum: 0.15x the minimum's rate lies below
    # where the fall started, and the range reaches down to it
    lrs = np.geomspace(1e-6, 1.0, 80)
    x = np.log10(lrs)
    losses = np.where(x < -2.3, 1.0, np.where(x < -2.0, 1.0 - 0.7 * (x + 2.3) / 0.3, 0.3))
    losses = losses + np.where(x > -1.9, 10.0 ** (3 * (x + 1.9)) - 1, 0.0)
    late = suggest.analyse(lrs, losses, gradient_noise=5.0, optimizer_family="adam")
    plain = suggest.analyse(lrs, losses, gradient_noise=5.0, optimizer_family="sgd")
    assert late.suggested_lr < plain.good_range[0]  # below where the fall started
    assert late.good_range[0] <= late.suggested_lr <= late.good_range[1]


class _Lion(torch.optim.Optimizer):  # betas but no eps: a sign rule, not Adam's kind
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99)):
        super().__init__(params, dict(lr=lr, betas=betas))


class _ThirdPartyAdam(torch.optim.Optimizer):  # an Adam variant outside torch.optim
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))


class _MyAdamW(torch.optim.AdamW):
    pass


@pytest.mark.parametrize("make, family", [
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), "sgd"),
    (lambda p: torch.optim.ASGD(p, lr=0.1), "sgd"),
    (lambda p: torch.optim.Adam(p), "adam"),
    (lambda p: torch.optim.NAdam(p), "adam"),
    (_MyAdamW, "adam"),
    (_ThirdPartyAdam, "adam"),
    (lambda p: torch.optim.RMSprop(p), "other"),
    (lambda p: torch.optim.Adagrad(p), "other"),
    (_Lion, "other"),
])
def test_the_torch_adapter_names_the_optimizer_family(make, family):
    model, loader, criterion = tiny_problem()
    trainable = lrkit.TorchTrainable(model, make(model.parameters()), loader, criterion)
    assert trainable.optimizer_family == family


def test_find_lr_records_the_family_and_the_fraction_it_took():
    model, loader, criterion = tiny_problem(batch_norm=False, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=40, progress=False)
    assert result.gradient_noise is not None
    assert result.settings["optimizer_family"] == "adam"
    assert result.settings["edge_fraction"] == \
        suggest.edge_fraction(result.gradient_noise, "adam")
    again = FinderResult.from_dict(result.to_dict())
    assert again.settings["optimizer_family"] == "adam"
    short = lrkit.find_lr(model, opt, loader, criterion, num_steps=40, budget_steps=60,
                          progress=False)  # the planned run's length reaches the rule
    assert short.settings["edge_fraction"] == \
        suggest.edge_fraction(short.gradient_noise, "adam", 60)
    noisy = FinderResult.from_dict({**result.to_dict(), "gradient_noise": 2.0,
                                    "settings": {**result.settings, "edge_fraction": 0.15}})
    # the loss minimum's own rate is printed (the table's "minimum" is fastai's tenth of it)
    edge = noisy.suggestions["edge"]
    assert (f"edge takes 0.15x the loss minimum's rate of {edge / 0.15:.3g} (Adam at this noise"
            in noisy.summary())
    assert "minimum/10" in noisy.summary()
    assert "(Adam at this noise" not in FinderResult.from_dict(
        {**result.to_dict(), "gradient_noise": 0.5}).summary()


def _quadratic() -> tuple[lrkit.FunctionTrainable, dict]:
    """A trainable of one weight on w**2, with no gradient_noise; and its state."""
    state = {"w": 5.0}

    def step(lr):
        loss = state["w"] ** 2
        state["w"] -= lr * 2 * state["w"]
        return loss

    return lrkit.FunctionTrainable(step, save_fn=lambda: dict(state),
                                   load_fn=lambda s: state.update(s)), state


@pytest.mark.parametrize("bad", ["Adam", None, 1])
def test_a_trainable_with_an_unknown_family_is_refused_by_name(bad):
    trainable, state = _quadratic()
    trainable.optimizer_family = bad
    with pytest.raises(LrkitError, match="optimizer_family must be one of"):
        lrkit.range_test(trainable, start_lr=1e-4, end_lr=10, num_steps=60, progress=False)
    assert state == {"w": 5.0}


@settings(max_examples=40, deadline=None)
@given(noise=st.floats(0, 1e6) | st.just(math.inf), seed=st.integers(0, 1000),
       edge=st.floats(-4.5, -1.5))
def test_edge_stays_inside_the_swept_range_at_any_noise(noise, seed, edge):
    lrs, losses = synthetic_curve(80, 1.0, edge, 1.0, 0.02, seed)
    lr = suggest.analyse(lrs, losses, gradient_noise=noise).suggestions["edge"]
    assert lr is None or lrs[0] <= lr <= lrs[-1]


# -- the measurement on a PyTorch model -----------------------------------------------------------
def _regression(seed=0, n=512, batch=16):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen)
    y = x @ torch.linspace(-1, 1, 6) + 0.5 * torch.randn(n, generator=gen)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
    batches = [(x[i:i + batch], y[i:i + batch].unsqueeze(1)) for i in range(0, n, batch)]
    return model, batches, nn.MSELoss()


def _brute_force(model, batches, criterion, k) -> float:
    """The same estimate from each batch's own gradient, kept and compared pair by pair."""
    grads = []
    for x, y in batches[:k]:
        model.zero_grad()
        criterion(model(x), y).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double())
    model.zero_grad(set_to_none=True)
    g = torch.stack(grads)
    gram = g @ g.T
    signal = (gram.sum() - gram.diag().sum()) / (k * (k - 1))
    return float((gram.diag().mean() - signal) / signal)


def test_the_measurement_matches_a_brute_force_estimate_without_copying_gradients():
    model, batches, criterion = _regression()
    expected = _brute_force(model, batches, criterion, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainable = lrkit.TorchTrainable(model, opt, batches, criterion)
    assert trainable.gradient_noise(16) == pytest.approx(expected, rel=1e-6)
    # two micro-batches per step: the step's gradient averages two, half the noise
    accumulating = lrkit.TorchTrainable(model, opt, batches, criterion, accumulation_steps=2)
    assert accumulating.gradient_noise(16) == pytest.approx(expected / 2, rel=1e-6)


def test_the_measurement_takes_no_step_and_leaves_no_gradient_or_hook():
    model, batches, criterion = _regression()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    trainable = lrkit.TorchTrainable(model, opt, batches, criterion)
    assert trainable.gradient_noise(8) > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert all(not p._backward_hooks for p in model.parameters())
    assert opt.state_dict()["state"] == {}


def test_find_lr_measures_the_noise_reports_it_and_restores_everything():
    model, loader, criterion = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.step()
    before = state_of(model, opt)
    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=40, progress=False)
    assert_same_state(before, state_of(model, opt))
    assert result.gradient_noise is not None and result.gradient_noise >= 0
    assert result.settings["noise_batches"] == 16 and result.cost == result.steps + 16
    assert result.settings["edge_fraction"] == suggest.edge_fraction(result.gradient_noise)
    assert "Gradient noise:" in result.summary()
    assert f"; edge takes {result.settings['edge_fraction']:.2g}x the loss minimum's rate" in \
        result.summary()
    again = FinderResult.from_dict(result.to_dict())
    assert again.gradient_noise == pytest.approx(result.gradient_noise)
    off = lrkit.find_lr(model, opt, loader, criterion, num_steps=40, noise_batches=0,
                        progress=False)
    assert off.gradient_noise is None and off.settings["noise_batches"] == 0
    assert off.cost == off.steps and "Gradient noise" not in off.summary()


def test_a_non_finite_loss_while_measuring_gives_no_ratio_and_the_test_goes_on():
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = {"n": 0}

    def loss_fn(m, batch):
        calls["n"] += 1
        loss = criterion(m(batch[0]), batch[1])
        return loss * float("nan") if calls["n"] == 5 else loss

    result = lrkit.find_lr(model, opt, loader, loss_fn=loss_fn, num_steps=40, progress=False,
                           diverge_threshold=1e9)
    assert result.gradient_noise is None
    assert result.steps == 40 and all(math.isfinite(v) for v in result.losses)
    assert result.settings["edge_fraction"] == suggest.EDGE_FRACTION


def test_sparse_gradients_are_not_measured():
    torch.manual_seed(0)
    embedding = nn.Embedding(20, 4, sparse=True)
    head = nn.Linear(4, 1)
    model = nn.Sequential(embedding, nn.Flatten(), head)
    batches = [(torch.randint(0, 20, (8, 1)), torch.randn(8, 1)) for _ in range(40)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainable = lrkit.TorchTrainable(model, opt, batches, nn.MSELoss())
    assert trainable.gradient_noise(8) is None
    assert all(p.grad is None for p in model.parameters())


def test_a_trainable_that_cannot_measure_it_is_left_as_it_was():
    trainable, _ = _quadratic()
    result = lrkit.range_test(trainable, start_lr=1e-4, end_lr=10, num_steps=60, progress=False)
    assert result.gradient_noise is None and result.settings["noise_batches"] == 0
    assert result.cost == result.steps


@pytest.mark.parametrize("bad", [1, -2, 2.5, True, "16"])
def test_a_bad_noise_batches_is_refused_by_name(bad):
    model, loader, criterion = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(LrkitError, match="noise_batches must be 0"):
        lrkit.find_lr(model, opt, loader, criterion, noise_batches=bad, progress=False)


def test_a_saved_result_with_a_bad_ratio_is_refused():
    result = FinderResult.from_dict({"lrs": [1e-3, 1e-2], "losses": [1.0, 0.5]})
    assert result.gradient_noise is None
    with pytest.raises(LrkitError, match="gradient_noise must be a number"):
        FinderResult.from_dict({"lrs": [1e-3], "losses": [1.0], "gradient_noise": "high"})


MEMORY_SCRIPT = '''
import torch
from torch import nn
import lrkit

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                      nn.Linear(2048, 10))
batches = [(torch.randn(64, 512), torch.randint(0, 10, (64,))) for _ in range(4)]
trainable = lrkit.TorchTrainable(model, torch.optim.SGD(model.parameters(), lr=0.1), batches,
                                 nn.CrossEntropyLoss())
trainable.gradient_noise(2)  # the first gradients and activations: the baseline
before = rss_mb()
trainable.gradient_noise(14)
print(rss_mb() - before)
'''


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc")
def test_the_measurement_does_not_grow_memory_with_each_batch():
    """A 0-dim tensor kept from each pass split the freed gradient's memory, and the next pass's
    16 MB gradient no longer fit there: +16 MB a pass (+190 MB here) before the running sums."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True,
                         check=True)
    assert float(out.stdout.strip().splitlines()[-1]) < 96  # 30-40 MB now, 160 MB before


def test_an_interrupt_during_the_noise_batches_restores_everything_and_removes_the_hooks():
    model, loader, criterion = tiny_problem()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = next(iter(loader))
    criterion(model(x), y).backward()
    opt.step()  # Adam state to restore, and gradients left in place
    before = state_of(model, opt)
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    calls = {"n": 0}

    def loss_fn(m, batch):
        calls["n"] += 1
        if calls["n"] == 5:  # the fifth of the 16 noise batches
            raise KeyboardInterrupt
        return criterion(m(batch[0]), batch[1])

    with pytest.raises(KeyboardInterrupt):
        lrkit.find_lr(model, opt, loader, loss_fn=loss_fn, num_steps=40, progress=False)
    assert calls["n"] == 5
    assert_same_state(before, state_of(model, opt))
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert torch.equal(rng, torch.get_rng_state())
    assert all(not p._backward_hooks for p in model.parameters())


def test_a_float16_loss_scale_that_overflows_is_halved_until_the_first_gradient_is_finite():
    """float16's GradScaler starts at 65536; a loss whose gradient is ~1 per output then overflows
    float16 in the backward pass, and every noise batch gave inf: no ratio."""
    model, batches, _ = _regression()
    used = []

    def summed_squares(m, batch):  # a sum, not a mean: the output's gradient is 2 x the error
        used.append(next(i for i, b in enumerate(batches) if b[0] is batch[0]))
        return (m(batch[0]) - batch[1]).pow(2).sum()

    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    half = lrkit.TorchTrainable(model, opt, batches, loss_fn=summed_squares, amp="fp16")
    assert half._scaler.get_scale() == 65536.0
    measured = half.gradient_noise(16)
    assert half._scaler.get_scale() < 65536.0  # the ramp starts from the scale that fitted
    assert len(used) > 16  # the first batch was measured again
    last = [batches[i] for i in used[-16:]]  # the 16 batches measured at the final scale
    expected = _brute_force(model, last, lambda out, y: (out - y).pow(2).sum(), 16)
    assert measured == pytest.approx(expected, rel=0.05)
    # and the whole finder, restored as ever, with a ratio
    before = state_of(model, opt)
    result = lrkit.find_lr(model, opt, batches, loss_fn=summed_squares, amp="fp16", num_steps=30,
                           end_lr=0.1, progress=False)
    assert result.gradient_noise is not None and result.gradient_noise > 0
    assert_same_state(before, state_of(model, opt))


def test_the_good_range_reaches_the_suggestion_when_low_noise_raised_it():
    # tiny-transformer suggested 0.0267 with a good range ending at 0.0188 (half the minimum's
    # rate): a suggestion outside its own good range
    lrs, losses = synthetic_curve(100, 2.0, -3.0, 1.0, 0.01, 0)
    quiet = suggest.analyse(lrs, losses, gradient_noise=0.25)
    minimum = float(quiet.curve.lrs[quiet.curve.min_index])
    assert quiet.good_range[1] == pytest.approx(quiet.suggested_lr) == pytest.approx(0.8 * minimum)
    noisy = suggest.analyse(lrs, losses, gradient_noise=3.0)
    assert noisy.good_range[1] == pytest.approx(0.5 * minimum)  # as without a measurement
    assert noisy.good_range == suggest.analyse(lrs, losses).good_range


def test_a_fall_hidden_in_a_noisy_loss_gets_advice_about_noise_not_the_model():
    trainable, state = _quadratic()
    plain_step, calls = trainable.train_step, [0]

    def noisy_step(lr):  # the quadratic's small fall, under batches that swing by +-1
        calls[0] += 1
        return 20.0 + 0.1 * plain_step(lr) / 25.0 + (-1.0) ** calls[0]

    trainable.train_step = noisy_step
    trainable.gradient_noise = lambda k: 40.0  # as a trainable that measured it would say
    result = lrkit.range_test(trainable, start_lr=1e-4, end_lr=1.0, num_steps=60,
                              diverge_threshold=1e9, progress=False)
    assert result.suggested_lr is None
    assert result.settings["no_suggestion"].startswith("the loss did not fall clearly")
    assert "num_steps=120" in result.settings["no_suggestion"]
    assert not any("check the model and data, or widen" in w for w in result.warnings)
    assert state["w"] == 5.0  # restored
    # without a noise measurement the advice stays about the model, the data and the range
    trainable.gradient_noise = lambda k: None
    quiet = lrkit.range_test(trainable, start_lr=1e-4, end_lr=1.0, num_steps=60,
                             diverge_threshold=1e9, progress=False)
    assert quiet.settings["no_suggestion"].startswith("the loss never fell")


@pytest.mark.parametrize("noise, warned", [(4.9, False), (5.0, True), (math.inf, True),
                                           (None, False)])
def test_a_very_noisy_gradient_comes_with_a_warning(noise, warned):
    trainable, state = _quadratic()
    trainable.gradient_noise = lambda k: noise
    result = lrkit.range_test(trainable, start_lr=1e-4, end_lr=10, num_steps=60, progress=False)
    assert result.suggested_lr is not None
    assert any("very noisy" in w for w in result.warnings) == warned
    assert state["w"] == 5.0
