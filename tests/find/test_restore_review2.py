"""Exact restore in setups the first restore tests do not cover (second review)."""
import pytest
import torch
from torch import nn

import lrkit
from tests.find.helpers import tiny_problem


def _warm(model, optimizer, loader, criterion, steps=2):
    for x, y in list(loader)[:steps]:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("make", [
    lambda params: torch.optim.NAdam(params, lr=1e-3),  # mu_product
    lambda params: torch.optim.ASGD(params, lr=1e-2, t0=1),  # eta, mu
], ids=["NAdam", "ASGD"])
def test_optimizer_state_kept_in_its_own_dtype_comes_back_in_it(make, dtype):
    # NAdam's mu_product and ASGD's eta and mu are float32 scalars whatever the parameters'
    # dtype; load_state_dict casts them to the parameter's (rounded, for bfloat16)
    model, loader, criterion = tiny_problem(batch_norm=False)
    model.to(dtype)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(loader.dataset.tensors[0].to(dtype),
                                       loader.dataset.tensors[1]), batch_size=32)
    optimizer = make(model.parameters())
    _warm(model, optimizer, loader, criterion)
    before = {i: {k: v.clone() for k, v in s.items()}
              for i, s in optimizer.state_dict()["state"].items()}
    lrkit.find_lr(model, optimizer, loader, criterion, num_steps=12, progress=False)
    after = optimizer.state_dict()["state"]
    for i, entries in before.items():
        for key, value in entries.items():
            assert after[i][key].dtype == value.dtype, (i, key)
            assert torch.equal(after[i][key], value), (i, key)


@pytest.mark.parametrize("wrap", [nn.utils.weight_norm, nn.utils.spectral_norm])
def test_the_weight_the_old_norm_hooks_compute_in_forward_is_put_back(wrap):
    # torch.nn.utils.weight_norm/spectral_norm keep the effective weight as a plain attribute,
    # recomputed in every forward: it must not be left as the last (diverged) step made it
    model, loader, criterion = tiny_problem(batch_norm=False, dropout=0.0)
    wrap(model[0])
    model(loader.dataset.tensors[0][:4])
    weight = model[0].weight
    expected = weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    lrkit.find_lr(model, optimizer, loader, criterion, num_steps=12, end_lr=1e3, progress=False)
    assert model[0].weight is weight
    assert torch.equal(model[0].weight, expected)
