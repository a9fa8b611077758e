"""Legitimate setups the finder must handle, and the ones it must refuse with a clear message."""
import collections
import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import lrkit
from lrkit import LrkitError
from lrkit.adapters.torch import move_to, on_device
from tests.find.helpers import assert_same_state, state_of, tiny_problem

META = torch.device("meta")


def _ce(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def test_rprop_is_refused_because_its_rate_is_only_a_first_step_size():
    # Rprop reads lr once, when it creates a weight's step size: the curve would not depend on
    # the swept rates at all, and the "suggestion" would just be a fraction of end_lr
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.Rprop(model.parameters(), lr=0.01)
    with pytest.raises(LrkitError, match="Rprop uses 'lr' only as the initial step size"):
        lrkit.find_lr(model, opt, loader, criterion, num_steps=20, progress=False)


def test_maximize_gives_the_suggestion_of_the_same_training_written_as_a_minimisation():
    # SGD(maximize=True) on -CE trains exactly as SGD on CE: the suggestion must be the same
    results = []
    for maximize in (False, True):
        model, loader, _ = tiny_problem(batch_norm=False, dropout=0.0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, maximize=maximize)
        sign = -1.0 if maximize else 1.0
        torch.manual_seed(0)
        results.append(lrkit.find_lr(model, opt, loader, loss_fn=lambda m, b: sign * _ce(m, b),
                                     num_steps=60, progress=False))
    plain, ascending = results
    assert plain.suggested_lr is not None
    assert ascending.suggested_lr == pytest.approx(plain.suggested_lr)
    assert ascending.stop_reason == plain.stop_reason
    assert ascending.losses == pytest.approx(plain.losses)  # the curve: what is minimised


def test_groups_that_disagree_on_maximize_are_refused():
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD([{"params": model[0].parameters()},
                           {"params": model[3].parameters(), "maximize": True}], lr=0.1)
    with pytest.raises(LrkitError, match="disagree on maximize"):
        lrkit.find_lr(model, opt, loader, criterion, num_steps=20, progress=False)


@pytest.mark.parametrize("make_loss", [
    lambda m, b: _ce(m, b).detach(),
    lambda m, b: torch.tensor(_ce(m, b).item()),
])
def test_a_loss_without_a_graph_is_refused_with_what_to_fix(make_loss):
    model, loader, _ = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = state_of(model, opt)
    with pytest.raises(LrkitError, match="the loss does not require grad"):
        lrkit.find_lr(model, opt, loader, loss_fn=make_loss, num_steps=20, progress=False)
    assert_same_state(before, state_of(model, opt))


def test_a_call_from_inside_no_grad_still_trains():
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        result = lrkit.find_lr(model, opt, loader, criterion, num_steps=20, progress=False)
    assert result.steps > 5


def test_models_without_data_are_refused_clearly():
    meta = nn.Linear(8, 2, device="meta")
    _, loader, criterion = tiny_problem(batch_norm=False)
    with pytest.raises(LrkitError, match="weight is on the meta device"):
        lrkit.find_lr(meta, torch.optim.SGD(meta.parameters(), lr=0.1), loader, criterion,
                      progress=False)
    lazy = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(LrkitError, match="0.weight is not initialised yet"):
        lrkit.find_lr(lazy, torch.optim.SGD(lazy.parameters(), lr=0.1), loader, criterion,
                      progress=False)
    model, loader, criterion = tiny_problem(batch_norm=False)
    with pytest.raises(LrkitError, match="device='meta' holds no data"):
        lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, criterion,
                      device="meta", progress=False)


def test_validation_leaves_submodules_kept_in_eval_mode_so_for_the_next_steps():
    model, loader, _ = tiny_problem()
    model[1].eval()  # frozen BatchNorm statistics, as when fine-tuning
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    modes = []

    def loss_fn(m, batch):
        if torch.is_grad_enabled():  # training steps, not the validation passes
            modes.append((m.training, m[1].training))
        return _ce(m, batch)

    lrkit.find_lr(model, opt, loader, loss_fn=loss_fn, val_loader=loader, val_every=2,
                  num_steps=12, progress=False)
    assert len(modes) >= 6
    assert set(modes) == {(True, False)}


def test_a_generator_the_model_holds_is_put_back():
    class NoisyInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(8, 2)
            self.noise = torch.Generator().manual_seed(3)

        def forward(self, x):
            return self.linear(x + 0.1 * torch.randn(x.shape, generator=self.noise))

    torch.manual_seed(0)
    model = NoisyInput()
    _, loader, criterion = tiny_problem(batch_norm=False)
    before = model.noise.get_state().clone()
    lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, criterion,
                  num_steps=20, progress=False)
    assert torch.equal(model.noise.get_state(), before)


@dataclasses.dataclass(frozen=True)
class _Batch:
    inputs: torch.Tensor
    targets: torch.Tensor
    size: int = dataclasses.field(default=0, init=False)


class _Encoding(collections.UserDict):
    """Like a tokenizer's BatchEncoding: a mapping, not a dict, with attributes of its own."""

    def __init__(self, data=None, note="kept"):
        super().__init__(data)
        self.note = note


def test_batches_of_every_structure_are_moved_to_the_device():
    x = torch.randn(3, 4, 2)
    packed = pack_padded_sequence(x, torch.tensor([4, 3, 1]), batch_first=True,
                                  enforce_sorted=False)
    moved = move_to(packed, META)
    assert moved.data.device == META and moved.sorted_indices.device == META
    assert moved.batch_sizes.device.type == "cpu"  # an LSTM wants it there, on any device
    assert on_device(moved, META) and not on_device(packed, META)

    batch = _Batch(torch.ones(2), torch.zeros(2))
    moved = move_to(batch, META)
    assert isinstance(moved, _Batch) and moved.inputs.device == META
    assert moved.targets.device == META and batch.inputs.device.type == "cpu"
    assert on_device(moved, META) and not on_device(batch, META)

    encoding = _Encoding({"input_ids": torch.ones(2)}, note="special")
    moved = move_to(encoding, META)
    assert isinstance(moved, _Encoding) and moved.note == "special"
    assert moved["input_ids"].device == META and encoding["input_ids"].device.type == "cpu"
    assert not on_device(encoding, META)

    counts = collections.defaultdict(list, {"x": torch.ones(2)})
    moved = move_to(counts, META)
    assert isinstance(moved, collections.defaultdict) and moved.default_factory is list
    assert moved["x"].device == META


def test_a_mapping_batch_that_is_not_a_dict_is_unpacked_into_the_model():
    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(8, 2)

        def forward(self, inputs, labels):
            return {"loss": nn.functional.cross_entropy(self.linear(inputs), labels)}

    torch.manual_seed(0)
    model = WithLoss()
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    loader = [_Encoding({"inputs": x[i:i + 16], "labels": y[i:i + 16]}) for i in range(0, 64, 16)]
    result = lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), loader,
                           num_steps=20, progress=False)
    assert result.steps > 5


def test_numpy_integers_are_accepted_and_a_bad_clipping_norm_is_named():
    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lrkit.find_lr(model, opt, loader, criterion, accumulation_steps=np.int64(2),
                           val_loader=loader, val_every=2, val_batches=np.int64(2),
                           max_grad_norm=np.float32(1.0), num_steps=20, progress=False)
    assert result.settings["accumulation_steps"] == 2
    assert isinstance(result.settings["max_grad_norm"], float)
    with pytest.raises(LrkitError, match="max_grad_norm must be a positive number or None"):
        lrkit.find_lr(model, opt, loader, criterion, max_grad_norm="1", progress=False)


def test_a_stream_that_cannot_be_read_again_is_not_called_empty():
    model, _, criterion = tiny_problem(batch_norm=False)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))

    class Stream(torch.utils.data.IterableDataset):
        def __init__(self):
            self.batches = iter([(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)])

        def __iter__(self):
            return self.batches

    loader = torch.utils.data.DataLoader(Stream(), batch_size=None)
    with pytest.raises(LrkitError, match="yielded no batch on its pass 2: it cannot be iterated"):
        lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, criterion,
                      num_steps=20, progress=False)


def test_a_criterion_module_with_state_of_its_own_is_put_back():
    class RunningNormLoss(nn.Module):
        """Cross-entropy over a running mean of itself (a buffer updated in forward)."""

        def __init__(self):
            super().__init__()
            self.register_buffer("scale", torch.ones(()))
            self.dropout = nn.Dropout(0.1)

        def forward(self, output, targets):
            loss = nn.functional.cross_entropy(self.dropout(output), targets)
            with torch.no_grad():
                self.scale.mul_(0.9).add_(0.1 * loss)
            return loss / self.scale

    model, loader, _ = tiny_problem()
    criterion = RunningNormLoss().eval()
    lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, criterion,
                  num_steps=20, progress=False)
    assert torch.equal(criterion.scale, torch.ones(())) and not criterion.training


def test_a_complex_loss_is_refused_clearly():
    model, loader, _ = tiny_problem(batch_norm=False)
    with pytest.raises(LrkitError, match="the loss must be real"):
        lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), loader,
                      loss_fn=lambda m, b: _ce(m, b) * (1 + 1j), num_steps=20, progress=False)


def test_an_optimizer_built_on_other_parameters_than_the_models_is_named():
    import copy

    model, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rebuilt = copy.deepcopy(model)  # as when the model is created again after the optimizer
    with pytest.raises(LrkitError, match="none of the SGD's parameters received a gradient"):
        lrkit.find_lr(rebuilt, opt, loader, criterion, num_steps=20, progress=False)


@pytest.mark.parametrize("mistake,fragment", [
    (lambda m, loader: dict(optimizer=torch.optim.SGD, train_loader=loader,
                            criterion=nn.CrossEntropyLoss()),
     "optimizer is the class SGD, not an optimizer: create one"),
    (lambda m, loader: dict(criterion=nn.CrossEntropyLoss),
     "criterion is the class CrossEntropyLoss, not a loss: pass an instance"),
    (lambda m, loader: dict(loss_fn=nn.CrossEntropyLoss()),
     "loss_fn=CrossEntropyLoss[(][)] is a criterion, called as criterion[(]output, targets[)]"),
    (lambda m, loader: dict(),
     "no criterion and no loss_fn were given, so the model's own output is taken as the loss"),
    (lambda m, loader: dict(train_loader=loader.dataset, criterion=nn.CrossEntropyLoss()),
     "got TensorDataset: wrap the dataset in a DataLoader"),
])
def test_common_mistakes_are_named_before_torch_fails_deep_inside(mistake, fragment):
    model, loader, _ = tiny_problem(batch_norm=False)
    arguments = dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                     train_loader=loader)
    arguments.update(mistake(model, loader))
    with pytest.raises(LrkitError, match=fragment):
        lrkit.find_lr(**arguments, num_steps=20, progress=False)


class _GrowingCache(nn.Module):
    """A cache buffer registered again, larger, when a longer input comes (as rotary-embedding
    caches are), or only on the first forward when ``lazy``."""

    def __init__(self, lazy: bool):
        super().__init__()
        self.linear = nn.Linear(8, 2)
        if not lazy:
            self.register_buffer("cache", torch.zeros(2), persistent=False)

    def forward(self, x):
        n = x.shape[0]
        if getattr(self, "cache", None) is None or self.cache.shape[0] < n:
            self.register_buffer("cache", torch.arange(float(n)), persistent=False)
        return self.linear(x) + 0 * self.cache[:n, None]


@pytest.mark.parametrize("lazy", [False, True])
def test_buffers_the_steps_register_or_resize_are_put_back(lazy):
    torch.manual_seed(0)
    model = _GrowingCache(lazy)
    _, loader, criterion = tiny_problem(batch_norm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = state_of(model, opt)
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    lrkit.find_lr(model, opt, loader, criterion, num_steps=20, progress=False)
    assert_same_state(before, state_of(model, opt))
    after = dict(model.named_buffers())
    assert after.keys() == buffers.keys()
    assert all(torch.equal(after[name], buffers[name]) for name in buffers)
    assert "cache" not in model.state_dict()  # still not persistent


def test_amp_chooses_the_precision_and_refuses_others():
    import lrkit
    from lrkit.adapters.torch import TorchTrainable, amp_dtype
    from lrkit.errors import LrkitError

    assert amp_dtype(True, "cuda") == torch.float16 and amp_dtype(True, "cpu") == torch.bfloat16
    assert amp_dtype("bf16", "cuda") == torch.bfloat16 and amp_dtype(torch.float16, "cpu") == torch.float16
    assert amp_dtype(False, "cuda") is None
    with pytest.raises(LrkitError, match="amp='fp8'.*'bf16', 'fp16'"):
        amp_dtype("fp8", "cpu")
    seen = []
    model = torch.nn.Linear(4, 2)
    model.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    loader = [(torch.randn(16, 4), torch.randint(0, 2, (16,)))] * 4
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lrkit.find_lr(model, optimizer, loader, torch.nn.CrossEntropyLoss(), amp="bf16",
                           num_steps=10, progress=False)
    assert set(seen) == {torch.bfloat16} and result.settings["amp"] == "bf16"
    json.loads(result.to_json())  # the setting is plain JSON
    trainable = TorchTrainable(model, optimizer, loader, torch.nn.CrossEntropyLoss(), amp="fp16")
    assert trainable._amp_dtype == torch.float16 and trainable._scaler is not None


def _small_regression():
    """A review's tanh MLP on 256 linear samples, SGD: (model, optimizer, batches)."""
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 1) + 0.1 * torch.randn(256, 1)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    return model, opt, batches


def test_a_coarse_ramp_does_not_also_say_the_loss_never_fell():
    # "too coarse: use more steps" beside "the loss never fell: check the model and data", both
    # read from the same 12 points
    model, opt, batches = _small_regression()
    result = lrkit.find_lr(model, opt, batches, nn.MSELoss(), num_steps=12, progress=False)
    assert result.warnings[0].startswith("only 1.5 steps per decade")
    assert not any("never fell" in w or "check the model" in w for w in result.warnings)


@pytest.mark.skipif(not hasattr(torch.optim, "Adafactor"), reason="torch without Adafactor")
def test_adafactor_is_refused_past_its_rate_cap_and_taken_below_it():
    # torch's Adafactor steps at min(lr, 1/sqrt(step)): the rates above the cap trained bit for
    # bit the same, and the suggestion (3.3) read the step count, not the rate
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    batches = [(torch.randn(16, 4), torch.randn(16, 1)) for _ in range(8)]
    opt = torch.optim.Adafactor(model.parameters(), lr=0.01)
    with pytest.raises(LrkitError, match=r"min\(lr, 1/sqrt\(step\)\).*end_lr=0.1 or lower"):
        lrkit.find_lr(model, opt, batches, nn.MSELoss(), progress=False)
    result = lrkit.find_lr(model, opt, batches, nn.MSELoss(), end_lr=0.1, progress=False)
    assert result.lrs[-1] <= 0.1


def test_a_buffer_registered_as_none_is_none_again_after_the_test():
    # a cache registered as None and filled on first use (rotary embeddings, masks) was removed,
    # name and all, and the next forward failed with an AttributeError
    class Cached(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 1)
            self.register_buffer("cache", None, persistent=False)

        def forward(self, x):
            if self.cache is None:
                self.cache = torch.arange(x.shape[0], dtype=x.dtype)
            return self.lin(x) + 0 * self.cache.sum()

    torch.manual_seed(0)
    model = Cached()
    batches = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    lrkit.find_lr(model, opt, batches, nn.MSELoss(), num_steps=30, progress=False)
    assert "cache" in model._buffers and model.cache is None
    model(torch.randn(8, 4))  # and the module works as before


def test_a_blow_ups_last_losses_do_not_hide_a_clear_fall():
    # 30 steps over 8 decades: the loss fell from 6.1 to 0.61, then the last steps before the
    # divergence stop read 2, 18 and 3387, which the centred smoother spread back over the
    # fall: "the loss never fell ... check the model and data", and no suggestion
    model, opt, batches = _small_regression()
    result = lrkit.find_lr(model, opt, batches, nn.MSELoss(), num_steps=30, progress=False)
    assert max(result.losses) > 1000 * min(result.losses)  # the blow-up is in the curve
    assert result.suggested_lr is not None
    assert not any("never fell" in w for w in result.warnings)
    lowest = result.lrs[int(np.argmin(result.losses))]
    assert lowest / 10 < result.suggested_lr < lowest


def test_every_validation_batch_is_moved_to_the_models_device(monkeypatch):
    """Whether a validation batch was moved hung on the first *train* batch: train batches
    already on the device left every validation batch where its loader put it (on a GPU, a
    device mismatch)."""
    import lrkit.adapters.torch as adapter

    model, loader, criterion = tiny_problem(batch_norm=False)
    moved = []
    real = adapter.move_to

    def counting(batch, device, non_blocking=False):
        moved.append(1)
        return real(batch, device, non_blocking)

    monkeypatch.setattr(adapter, "move_to", counting)
    result = lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, criterion,
                           val_loader=loader, val_every=5, val_batches=2, num_steps=20,
                           noise_batches=0, progress=False)
    assert len(result.val_steps) == 4 and len(moved) >= 4 * 2
