"""lrkit.state.Snapshot: restorable bit for bit, and more than once."""
import pytest
import torch
from torch import nn

from lrkit.state import Snapshot


def _state_of(model, optimizer):
    """Copies of the model's state and the optimizer's per-parameter state."""
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {k: {n: t.clone() for n, t in s.items()}
             for k, s in optimizer.state_dict()["state"].items()})


def _assert_state_is(model, optimizer, state):
    saved, saved_opt = state
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    for key, opt_state in optimizer.state_dict()["state"].items():
        for name, tensor in opt_state.items():
            assert torch.equal(torch.as_tensor(tensor), saved_opt[key][name]), (key, name)


@pytest.mark.parametrize("optimizer_cls", [torch.optim.Adam, torch.optim.SGD])
@pytest.mark.parametrize("where", ["cpu", "disk", "device"])
def test_a_snapshot_restores_the_same_state_again_after_more_training(optimizer_cls, where, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    options = {"momentum": 0.9} if optimizer_cls is torch.optim.SGD else {}
    optimizer = optimizer_cls(model.parameters(), lr=0.01, **options)
    x, y = torch.randn(8, 3), torch.randn(8, 1)

    def step():
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()

    step()
    snapshot = Snapshot(model, optimizer, where=where, directory=tmp_path)
    state = _state_of(model, optimizer)
    for _ in range(2):  # restore, train on (the optimizer's buffers change in place), restore again
        for _ in range(3):
            step()
        snapshot.restore()
        _assert_state_is(model, optimizer, state)
    snapshot.discard()


def test_the_last_restore_hands_the_state_over_and_frees_the_snapshot():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.randn(8, 3)
    model(x).pow(2).mean().backward()
    optimizer.step()
    snapshot = Snapshot(model, optimizer)
    saved = model.weight.detach().clone()
    exp_avg = optimizer.state[model.weight]["exp_avg"].clone()
    model(x).pow(2).mean().backward()
    optimizer.step()
    snapshot.restore(last=True)
    assert torch.equal(model.weight, saved)
    assert torch.equal(optimizer.state[model.weight]["exp_avg"], exp_avg)
    assert snapshot._payload is None  # discarded: no second copy is kept


def test_restored_gradients_do_not_share_memory_with_the_snapshot():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    grad = model.weight.grad.clone()
    snapshot = Snapshot(model, optimizer)
    model.weight.grad = None
    snapshot.restore()
    model(torch.randn(4, 3)).sum().backward()  # accumulates into the restored gradient
    model.weight.grad = None
    snapshot.restore()
    assert torch.equal(model.weight.grad, grad)


def test_a_snapshot_can_take_over_the_buffers_of_one_no_longer_needed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 3), torch.randn(8, 1)

    def step():
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()

    first = Snapshot(model, optimizer)  # before any step: no optimizer state, no gradients
    step()
    second = Snapshot(model, optimizer, reuse=first)  # new structure: nothing to reuse there
    assert first._payload is None  # the old one is discarded
    step()
    buffers = {n: t.data_ptr() for n, t in second._payload["tensors"].items()}
    third = Snapshot(model, optimizer, reuse=second)
    assert {n: t.data_ptr() for n, t in third._payload["tensors"].items()} == buffers  # reused
    state = _state_of(model, optimizer)
    for _ in range(2):  # restorable again and again, and training does not write into it
        for _ in range(3):
            step()
        third.restore()
        _assert_state_is(model, optimizer, state)
    assert third.parameters_finite()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    assert not Snapshot(model, optimizer, reuse=third).parameters_finite()


class _Mixed(nn.Module):
    """Parameters and buffers of several dtypes, a 0-dim one, and a channels-last weight (not
    contiguous: copied on its own, outside the block)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3).to(memory_format=torch.channels_last)
        self.wide = nn.Parameter(torch.randn(5, dtype=torch.float64))
        self.narrow = nn.Parameter(torch.randn(7).half())
        self.register_buffer("mask", torch.tensor([True, False, True]))
        self.register_buffer("count", torch.tensor(3))

    def forward(self, x):
        return (self.conv(x).mean() + self.wide.sum() + self.narrow.float().sum()
                + self.mask.sum() * self.count)


def test_copies_come_from_two_blocks_and_restore_exactly():
    torch.manual_seed(0)
    model = _Mixed()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.randn(2, 2, 5, 5)

    def step():
        optimizer.zero_grad()
        model(x).backward()
        optimizer.step()

    step()
    state = _state_of(model, optimizer)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    snapshot = Snapshot(model, optimizer)
    payload = snapshot._payload
    dense = [t for n, t in payload["tensors"].items() if n != "conv.weight" and t.dim()]
    assert len({t.untyped_storage().data_ptr() for t in dense}) == 1  # one block
    assert not payload["tensors"]["conv.weight"].is_contiguous()  # alone, its layout kept
    # 0-dim tensors are copied alone: an optimizer's step, kept on the CPU by load_state_dict
    # even for a model on a GPU, must not keep a whole block alive
    assert payload["tensors"]["buffer:count"].untyped_storage().nbytes() == 8
    opt_tensors = [t for s in payload["optimizer"]["state"].values() for t in s.values()]
    assert all(t.untyped_storage().nbytes() <= 8 for t in opt_tensors if not t.dim())
    opt_blocks = {t.untyped_storage().data_ptr() for t in opt_tensors
                  if t.dim() and t.is_contiguous()}
    assert len(opt_blocks) == 1 and opt_blocks.isdisjoint({dense[0].untyped_storage().data_ptr()})
    params_block = dense[0].untyped_storage().nbytes()
    for _ in range(3):
        step()
    snapshot.restore(last=True)
    _assert_state_is(model, optimizer, state)
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter.grad, grads[name]), name
    # the handed-back optimizer state holds its own block, not the parameters' copies
    handed = optimizer.state[model.wide]["exp_avg"].untyped_storage()
    assert handed.data_ptr() in opt_blocks and handed.nbytes() != params_block


def test_a_tensor_rate_in_the_param_groups_is_not_a_view_of_the_state_block():
    # load_state_dict deep-copies param_groups: a view there would copy the whole block
    model = nn.Linear(64, 64)
    optimizer = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    model(torch.randn(4, 64)).sum().backward()
    optimizer.step()
    snapshot = Snapshot(model, optimizer)
    lr = snapshot._payload["optimizer"]["param_groups"][0]["lr"]
    assert lr.untyped_storage().nbytes() == lr.element_size()
    snapshot.restore(last=True)
    assert optimizer.param_groups[0]["lr"].untyped_storage().nbytes() == lr.element_size()


def test_a_device_snapshot_stays_beside_the_model_and_reuses_its_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    optimizer.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()
    first = Snapshot(model, optimizer, where="device")
    second = Snapshot(model, optimizer, where="device", reuse=first)
    for name, tensor in model.named_parameters():
        copy = second._payload["tensors"][name]
        assert copy.device == tensor.device and copy.data_ptr() != tensor.data_ptr()
    state = _state_of(model, optimizer)
    optimizer.step()
    second.restore()
    _assert_state_is(model, optimizer, state)
    with pytest.raises(Exception, match="snapshot location must be one of"):
        Snapshot(model, optimizer, where="gpu")


@pytest.mark.parametrize("where", ["cpu", "disk", "device"])
def test_parameters_the_optimizer_trains_outside_the_model_are_restored(where, tmp_path):
    # a learned temperature in the loss, not a module of the model
    model = nn.Linear(4, 2)
    log_temp = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.Adam(list(model.parameters()) + [log_temp], lr=0.1)
    snapshot = Snapshot(model, optimizer, where=where, directory=tmp_path)
    for _ in range(5):
        optimizer.zero_grad()
        (model(torch.randn(8, 4)).sum() * log_temp.exp()).backward()
        optimizer.step()
    assert log_temp.item() != 0.0 and log_temp.grad is not None
    snapshot.restore()
    assert log_temp.item() == 0.0 and log_temp.grad is None
    assert not optimizer.state  # Adam's moments for both: as before the steps


def test_a_tensor_rate_keeps_its_identity_through_a_restore():
    model = nn.Linear(4, 2)
    lr = torch.tensor(0.01)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    snapshot = Snapshot(model, optimizer)
    lr.fill_(0.5)  # something changes the rate (a finder's ramp)
    snapshot.restore(last=True)
    assert optimizer.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.01)
    lr.fill_(0.001)  # the user's handle still steers the optimizer
    assert optimizer.param_groups[0]["lr"].item() == pytest.approx(0.001)


@pytest.mark.parametrize("where", ["cpu", "disk"])
def test_every_object_a_group_holds_keeps_its_identity_and_its_value(where, tmp_path):
    """Tensor betas, a user's dict and list, a function: the user's own objects after a
    restore (load_state_dict deep-copies the groups), with the values they had."""
    model = nn.Linear(4, 2)
    b1, b2 = torch.tensor(0.9), torch.tensor(0.999)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(b1, b2))
    group = optimizer.param_groups[0]
    meta, tags, clip = {"name": "body", "scale": torch.tensor([1.0, 2.0])}, ["a"], lambda g: g
    group.update(meta=meta, tags=tags, clip=clip)
    snapshot = Snapshot(model, optimizer, where=where, directory=tmp_path)
    b1.fill_(0.5)
    meta["scale"].mul_(3)
    meta["name"] = "changed"
    tags.append("b")
    snapshot.restore(last=True)
    group = optimizer.param_groups[0]
    assert group["betas"][0] is b1 and group["betas"][1] is b2 and b1.item() == pytest.approx(0.9)
    assert group["meta"] is meta and meta["name"] == "body"
    assert torch.equal(meta["scale"], torch.tensor([1.0, 2.0]))
    assert group["tags"] is tags and tags == ["a"]
    assert group["clip"] is clip
    b1.fill_(0.8)  # the user's handle still steers the optimizer
    assert optimizer.param_groups[0]["betas"][0].item() == pytest.approx(0.8)


def test_a_disk_snapshot_keeps_unpicklable_group_values_in_memory(tmp_path):
    """A lambda in a group: the disk snapshot works (the groups stay in memory) and restores."""
    import threading
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    lock = threading.Lock()
    optimizer.param_groups[0].update(clip=lambda g: g, lock=lock)
    before = _state_of(model, optimizer)
    snapshot = Snapshot(model, optimizer, where="disk", directory=tmp_path)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    optimizer.param_groups[0]["lr"] = 1.0
    snapshot.restore(last=True)
    _assert_state_is(model, optimizer, before)
    assert optimizer.param_groups[0]["lr"] == 0.1 and optimizer.param_groups[0]["lock"] is lock
    assert list(tmp_path.iterdir()) == []


class _KeepsAFunction(torch.optim.SGD):
    """An optimizer whose per-parameter state holds what pickle cannot write."""

    def step(self, closure=None):
        for group in self.param_groups:
            for param in group["params"]:
                self.state[param]["hook"] = lambda g: g
        return super().step(closure)


def test_a_disk_snapshot_that_cannot_be_written_says_so_and_leaves_no_file(tmp_path):
    from lrkit.errors import LrkitError
    model = nn.Linear(4, 2)
    optimizer = _KeepsAFunction(model.parameters(), lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    with pytest.raises(LrkitError, match="cannot be written to disk.*snapshot='cpu'"):
        Snapshot(model, optimizer, where="disk", directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_gives_one_clear_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import errno
    from lrkit.errors import LrkitError
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def full_disk(payload, handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(LrkitError, match="No space left on device.*snapshot='cpu'"):
        Snapshot(model, optimizer, where="disk", directory=tmp_path)
    assert list(tmp_path.iterdir()) == []
