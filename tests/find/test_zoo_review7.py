"""The finder on optimizers and setups users bring that the built-in examples do not cover (the
seventh review: schedule-free modes and warmup, a rate the optimizer sets itself, lazy
parameters outside the model, a torch scheduler's step flag, D-adaptation's lr)."""
import copy

import pytest
import torch
from torch import nn

import lrkit
from lrkit import LrkitError
from tests.find.helpers import assert_same_state, state_of, tiny_problem


def _ce(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


class _SelfRated(torch.optim.Optimizer):
    """Holds lr=None and computes its own rate, as transformers' Adafactor(relative_step=True)."""

    def __init__(self, params):
        super().__init__(params, {"lr": None})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-1e-2)


def test_an_optimizer_that_sets_its_own_rate_is_refused_with_what_to_build_instead():
    # it failed deep in base_rates with TypeError: float() argument ... not 'NoneType'
    model, loader, criterion = tiny_problem(batch_norm=False)
    with pytest.raises(LrkitError, match=r"lr=None, not a number.*relative_step=False"):
        lrkit.find_lr(model, _SelfRated(model.parameters()), loader, criterion, num_steps=30,
                      progress=False)


def test_transformers_adafactor_with_relative_step_is_refused_clearly():
    optimization = pytest.importorskip("transformers.optimization")
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = optimization.Adafactor(model.parameters(), lr=None, relative_step=True,
                                 scale_parameter=True, warmup_init=True)
    with pytest.raises(LrkitError, match="relative_step"):
        lrkit.find_lr(model, opt, loader, criterion, num_steps=30, progress=False)


def test_a_schedule_free_optimizer_in_eval_mode_is_tested_in_train_mode_and_put_back():
    # a fresh schedule-free optimizer starts in eval mode, where its step raised a bare
    # Exception from inside the test; in eval mode after training, its weights are x, not y
    schedulefree = pytest.importorskip("schedulefree")
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = schedulefree.AdamWScheduleFree(model.parameters(), lr=1e-3)
    opt.train()
    for x, y in list(loader)[:3]:
        opt.zero_grad()
        criterion(model(x), y).backward()
        opt.step()
    opt.eval()
    before = state_of(model, opt)
    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=30, noise_batches=4,
                           progress=False)
    assert result.suggested_lr is not None
    assert opt.param_groups[0]["train_mode"] is False
    assert_same_state(before, state_of(model, opt))


def _schedule_free_suggestion(warmup_steps):
    schedulefree = pytest.importorskip("schedulefree")
    model, loader, criterion = tiny_problem(batch_norm=False, dropout=0.0, n=512)
    opt = schedulefree.SGDScheduleFree(model.parameters(), lr=0.1, warmup_steps=warmup_steps)
    opt.train()
    torch.manual_seed(0)
    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=40, noise_batches=4,
                           progress=False)
    assert opt.param_groups[0]["warmup_steps"] == warmup_steps  # put back
    return result


def test_a_schedule_free_optimizers_own_warmup_does_not_move_the_suggestion():
    # its step multiplies the rate by (k + 1) / warmup_steps: the test's rates were not the
    # rates stepped at, and with warmup_steps=1000 the suggestion was 5x (SGD) to 11x (AdamW)
    # the one without warmup
    plain, warmed = _schedule_free_suggestion(0), _schedule_free_suggestion(1000)
    assert plain.suggested_lr is not None
    assert warmed.suggested_lr == pytest.approx(plain.suggested_lr)
    assert warmed.losses == pytest.approx(plain.losses)


@pytest.mark.parametrize("kind", ["lazy", "meta"])
def test_a_parameter_without_data_outside_the_model_is_named(kind):
    # a lazy head applied in the loss_fn, trained by the optimizer: the snapshot raised
    # ValueError("Attempted to use an uninitialized parameter ...") from inside lrkit
    model, loader, _ = tiny_problem(batch_norm=False)
    head = nn.LazyLinear(2) if kind == "lazy" else nn.Linear(2, 2, device="meta")
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=1e-3)
    with pytest.raises(LrkitError, match=r"optimizer's group 0 \(not in the model\)"):
        lrkit.find_lr(model, opt, loader, loss_fn=lambda m, b: _ce(lambda x: head(m(x)), b),
                      num_steps=30, progress=False)


def test_a_torch_schedulers_optimizer_step_flag_is_put_back():
    # LRScheduler wraps optimizer.step to set _opt_called: left set by the test's (undone)
    # steps, torch's "scheduler.step() before optimizer.step()" warning was silenced
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 10))
    assert not hasattr(opt, "_opt_called")
    lrkit.find_lr(model, opt, loader, criterion, num_steps=30, noise_batches=0, progress=False)
    assert not hasattr(opt, "_opt_called")
    opt._opt_called = False
    lrkit.find_lr(model, opt, loader, criterion, num_steps=30, noise_batches=0, progress=False)
    assert opt._opt_called is False


class Prodigy(torch.optim.Optimizer):
    """A stand-in of Prodigy's kind: lr scales a step size d that it estimates itself."""

    def __init__(self, params, lr=1.0, d0=1e-6):
        super().__init__(params, {"lr": lr, "d": d0, "d0": d0})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"] * group["d"])
            group["d"] = min(group["d"] * (1 + group["lr"]), 1.0)


def test_an_optimizer_that_estimates_its_own_step_size_gets_a_caveat():
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = Prodigy(model.parameters())
    groups = copy.deepcopy(opt.state_dict()["param_groups"])
    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=30, noise_batches=0,
                           progress=False)
    assert "estimates its own step size" in result.warnings[0]
    assert opt.state_dict()["param_groups"] == groups
    # and no caveat for an ordinary optimizer
    plain = lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), loader,
                          criterion, num_steps=30, noise_batches=0, progress=False)
    assert not any("estimates its own step size" in w for w in plain.warnings)
