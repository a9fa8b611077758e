"""Small models and data for finder tests."""
import copy

import torch
from torch import nn


def tiny_problem(seed: int = 0, batch_norm: bool = True, dropout: float = 0.2, n: int = 256):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    torch.manual_seed(seed)
    layers = [nn.Linear(8, 16)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2)]
    model = nn.Sequential(*layers)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32,
                                         shuffle=True)
    return model, loader, nn.CrossEntropyLoss()


def state_of(model, optimizer):
    """Everything that must come back bit for bit, as plain tensors and values."""
    tensors = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=False).items()}
    modes = {n: m.training for n, m in model.named_modules()}
    opt = copy.deepcopy(optimizer.state_dict())  # state_dict() holds live tensors
    return tensors, modes, opt


def assert_same_state(before, after):
    t0, m0, o0 = before
    t1, m1, o1 = after
    assert t0.keys() == t1.keys()
    for k in t0:
        assert torch.equal(t0[k], t1[k]), f"{k} changed"
    assert m0 == m1
    assert o0["param_groups"] == o1["param_groups"]
    assert o0["state"].keys() == o1["state"].keys()
    for pid in o0["state"]:
        for key, value in o0["state"][pid].items():
            other = o1["state"][pid][key]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), f"optimizer state {pid}/{key} changed"
            else:
                assert value == other
