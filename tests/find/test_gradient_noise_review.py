"""Review of the gradient-noise measurement: gradients that arrive in pieces, float32 norms that
overflow or underflow, the cost under gradient accumulation, an infinite ratio through JSON and
the report, and what the text says between 0.5 and 1."""
import json
import math
import re
import warnings

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import lrkit
from lrkit.errors import LrkitError
from lrkit.find import suggest
from lrkit.find.noise import describe
from lrkit.find.result import FinderResult
from lrkit.show import report as rp
from tests.find.helpers import tiny_problem
from tests.find.test_gradient_noise import _brute_force, _regression


def _ratio(model, batches, k=16, **options):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return lrkit.TorchTrainable(model, opt, batches, **options).gradient_noise(k)


# -- gradients that reach a parameter in pieces -----------------------------------------------------
def test_a_loss_that_takes_gradients_of_the_parameters_itself_gives_no_ratio():
    """A gradient penalty (torch.autograd.grad on the parameters inside the loss) ran every
    parameter's hook a second time per pass: the ratio came out 2.47 where it is 0.55."""
    model, batches, criterion = _regression()

    def penalised(m, batch):
        loss = criterion(m(batch[0]), batch[1])
        grads = torch.autograd.grad(loss, list(m.parameters()), create_graph=True)
        return loss + 0.0 * sum((g ** 2).sum() for g in grads)  # the same gradient as the loss's

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and quietly: no torch warning from lrkit's hooks
        assert _ratio(model, batches, loss_fn=penalised) is None
    # the plain loss on the same model is still measured, and exactly
    expected = _brute_force(model, batches, criterion, 16)
    assert _ratio(model, batches, criterion=criterion) == pytest.approx(expected, rel=1e-6)


def test_a_parameter_used_inside_and_outside_a_reentrant_checkpoint_gives_no_ratio():
    """Its gradient arrives twice a backward pass (the checkpoint's own backward, then the outer
    one): the squared norms were the two pieces', 0.547 where the ratio is 0.517."""
    _, batches, criterion = _regression()
    torch.manual_seed(0)
    model = nn.ModuleList([nn.Linear(6, 6), nn.Linear(6, 1)])

    def loss_fn(m, batch):
        x = batch[0].clone().requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = checkpoint(lambda v: torch.tanh(m[0](v)), x, use_reentrant=True)
        return criterion(m[1](torch.tanh(m[0](h))), batch[1])

    assert _ratio(model, batches, loss_fn=loss_fn) is None


# -- float32 norms of huge and tiny gradients --------------------------------------------------------
@pytest.mark.parametrize("scale", [1e22, 1e-22])
def test_the_ratio_does_not_depend_on_the_gradients_scale(scale):
    """The ratio is scale-free; float32's sum of squares overflowed for a gradient norm over
    1.8e19 (no ratio) and lost digits under entries of 1e-19 (a wrong one)."""
    model, batches, criterion = _regression()
    plain = _ratio(model, batches, criterion=criterion)
    scaled = _ratio(model, batches, loss_fn=lambda m, b: criterion(m(b[0]), b[1]) * scale)
    assert plain is not None and 0 < plain < 10
    assert scaled == pytest.approx(plain, rel=1e-4)


# -- the cost under gradient accumulation ----------------------------------------------------------
def test_with_accumulation_the_noise_batches_cost_micro_batches_not_steps():
    """16 noise batches are 4 steps of 4 micro-batches: 30 steps + 4 is 26% of 130, under the
    30% the warning is for (it said "the test took 46 steps, 35%")."""
    model, loader, criterion = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=30, accumulation_steps=4,
                           budget_steps=130, progress=False)
    assert result.steps == 30 and result.settings["noise_batches"] == 16
    assert not [w for w in result.warnings if "planned run" in w]
    assert result.cost == 30 * 4 + 16  # forward and backward passes
    short = lrkit.find_lr(model, opt, loader, criterion, num_steps=30, accumulation_steps=4,
                          budget_steps=100, progress=False)
    assert any("the test took 34 steps, 34% of the planned run of 100" in w
               for w in short.warnings)


# -- an infinite ratio ----------------------------------------------------------------------------
def _dominated() -> FinderResult:
    model, loader, criterion = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lrkit.find_lr(model, opt, loader, criterion, num_steps=40, noise_batches=0,
                           progress=False)
    result.gradient_noise = math.inf
    result.settings["noise_batches"] = 16
    return result


def test_noise_that_dominates_survives_json_and_reaches_the_report():
    """inf was written as null: read back, "noise dominates" became "not measured", and the
    HTML report dropped the line even for a live result."""
    result = _dominated()
    assert "noise dominates" in result.summary()
    data = json.loads(result.to_json())
    again = FinderResult.from_dict(data)
    assert again.gradient_noise == math.inf and "noise dominates" in again.summary()
    page = rp.render_page([("f.json", data)])
    line = re.search(r'<p id="gradient-noise[^"]*">([^<]*)</p>', page)
    assert line and "noise dominates" in line.group(1)
    with pytest.raises(LrkitError, match="gradient_noise must be a number"):
        FinderResult.from_dict({**data, "gradient_noise": "-inf"})


# -- the text --------------------------------------------------------------------------------------
def test_the_text_never_calls_a_batch_below_this_one_larger():
    """Between 0.5 and 1 it said "larger batches, up to about 0.6x this one, would need fewer
    steps"; B_noise is then below the batch size already."""
    for ratio in (0.5, 0.6, 0.99):
        text = describe(ratio)
        assert "larger batches, up to" not in text and "would save few steps" in text
    assert "up to about 1x this one" in describe(1.0)
    assert "(low)" in describe(0.49)
    big = describe(1234.5)
    assert "e+" not in big and "1,234x" in big  # not "1.2e+03x"


def test_a_one_shot_iterator_that_runs_out_names_the_noise_batches():
    """40 batches were enough for num_steps=40 before the 16 noise batches came first."""
    model, loader, criterion = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = list(loader) * 5
    with pytest.raises(LrkitError, match="noise_batches=0 skips them"):
        lrkit.find_lr(model, opt, iter(batches[:40]), criterion, num_steps=40, progress=False)
    result = lrkit.find_lr(model, opt, iter(batches[:40]), criterion, num_steps=40,
                           noise_batches=0, progress=False)
    assert result.steps >= 30 and "ran out" not in result.stop_reason
    assert result.settings["edge_fraction"] == suggest.EDGE_FRACTION
