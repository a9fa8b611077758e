"""Fixes from a review of lrkit.recommend: options the recipe lost or could not write as code,
parameter groups, short runs that broke on validation, batch rescaling at its edges, recipe
files, optimizers from recipe files, numpy counts."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import lrkit
from lrkit.cli import main
from lrkit.errors import LrkitError
from lrkit.recommend import Recipe, policy, recommend
from lrkit.recommend.api import _short_run
from lrkit.recommend.shapes import shape_spec


def regression(optimizer=None, *, val: bool = True, model: nn.Module | None = None,
               **optimizer_kwargs) -> lrkit.Problem:
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(1024, 8, generator=gen)
    y = x @ torch.randn(8, 1, generator=gen) + 0.3 * torch.randn(1024, 1, generator=gen)
    torch.manual_seed(0)
    model = model or nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    params = optimizer(model) if callable(optimizer) else model.parameters()
    opt = torch.optim.Adam(params, **{"lr": 1e-3, **optimizer_kwargs})
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:768], y[:768]),
                                        batch_size=32, shuffle=True,
                                        generator=torch.Generator().manual_seed(0))
    valid = (torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[768:], y[768:]),
                                         batch_size=128) if val else None)
    return lrkit.Problem(model, opt, train, nn.MSELoss(), val_loader=valid, name="regression")


def run_code(recipe: Recipe, model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, list]:
    """Execute ``recipe.to_code()`` as pasted, then step it: the optimizer and the rates used."""
    namespace = {"model": model}
    exec(compile(recipe.to_code(), "<recipe>", "exec"), namespace)  # noqa: S102
    optimizer, scheduler = namespace["optimizer"], namespace["scheduler"]
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return optimizer, rates


# -- maximize ----------------------------------------------------------------------------------
def test_maximize_is_kept_in_the_recipe_its_build_and_its_code():
    problem = regression(maximize=True)
    problem.criterion = lambda output, target: -nn.functional.mse_loss(output, target)
    recipe = recommend(problem, steps=300, confirm=False, progress=False)
    assert recipe.optimizer_options == {"maximize": True}
    optimizer, _ = recipe.build(nn.Linear(2, 1).parameters())
    assert optimizer.param_groups[0]["maximize"] is True
    pasted, _ = run_code(recipe, nn.Linear(2, 1), 1)
    assert pasted.param_groups[0]["maximize"] is True
    assert Recipe.from_json(recipe.to_json()).optimizer_options == {"maximize": True}
    assert problem.optimizer.param_groups[0]["maximize"] is True


# -- options that are tensors or numpy numbers -----------------------------------------------------
def test_tensor_betas_become_numbers_the_pasted_code_can_run():
    problem = regression(lr=torch.tensor(1e-3), betas=(torch.tensor(0.9), torch.tensor(0.99)))
    recipe = recommend(problem, steps=300, confirm=False, progress=False)
    betas = recipe.optimizer_options["betas"]
    assert all(type(b) is float for b in betas)
    assert betas == pytest.approx((0.9, 0.99), rel=1e-6)
    assert "tensor(" not in recipe.to_code()
    pasted, rates = run_code(recipe, nn.Linear(2, 1), recipe.total_steps)
    assert pasted.defaults["betas"] == betas
    assert rates == pytest.approx([recipe.lr_at(t) for t in range(recipe.total_steps)],
                                  rel=1e-12, abs=1e-15)


def test_numpy_options_are_plain_numbers_in_the_code():
    recipe = Recipe("SGD", {"momentum": np.float64(0.9), "nesterov": np.bool_(True),
                            "weight_decay": np.float32(0.5)},
                    0.1, 1, 10, "warmup(1) >> cosine(9)")
    assert recipe.optimizer_options == {"momentum": 0.9, "nesterov": True, "weight_decay": 0.5}
    assert all(type(v) in (float, bool) for v in recipe.optimizer_options.values())
    pasted, _ = run_code(recipe, nn.Linear(2, 1), 1)
    assert pasted.defaults["nesterov"] is True and pasted.defaults["momentum"] == 0.9


# -- parameter groups ------------------------------------------------------------------------------
def test_groups_with_other_weight_decays_are_named_in_the_notes_and_evidence():
    def groups(model):
        return [{"params": model[0].parameters(), "weight_decay": 0.0},
                {"params": model[2].parameters(), "weight_decay": 0.1, "lr": 2e-3}]

    recipe = recommend(regression(groups, betas=(0.9, 0.95)), steps=300, confirm=False,
                       progress=False)
    assert recipe.optimizer_options == {"betas": (0.9, 0.95)}  # group 0's (weight_decay 0)
    note = next(n for n in recipe.notes if "parameter groups" in n)
    assert "group 1: lr 2 x peak_lr, weight_decay=0.1" in note
    assert recipe.evidence["param_groups"] == [{"lr_ratio": 1.0}, {"lr_ratio": 2.0,
                                                                   "weight_decay": 0.1}]
    assert Recipe.from_json(recipe.to_json()).evidence["param_groups"][1]["weight_decay"] == 0.1


def test_a_first_group_at_rate_zero_is_not_the_recipes_group():
    # the range test sets the first group with a rate: the recipe describes that one
    def groups(model):
        return [{"params": model[0].parameters(), "lr": 0.0, "weight_decay": 0.5},
                {"params": model[2].parameters()}]

    recipe = recommend(regression(groups), steps=300, confirm=False, progress=False)
    assert recipe.optimizer_options == {}
    note = next(n for n in recipe.notes if "parameter groups" in n)
    assert "group 1's" in note and "group 0: lr 0 x peak_lr, weight_decay=0.5" in note


def test_groups_alike_say_so():
    def groups(model):
        return [{"params": model[0].parameters()}, {"params": model[2].parameters()}]

    recipe = recommend(regression(groups), steps=300, confirm=False, progress=False)
    assert any("all at the same rate with the same options" in n for n in recipe.notes)


# -- short runs ------------------------------------------------------------------------------------
class BreaksOnValidation(nn.Module):
    """Finite in training; in eval mode its output overflows once a weight passes 0.5 (a model
    whose validation loss blows up while its training batches still look fine)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 1)

    def forward(self, x):
        out = self.lin(x)
        if not self.training and self.lin.weight.abs().max() > 0.5:
            return out * float("inf")
        return out


def test_a_short_run_with_a_non_finite_validation_loss_diverged():
    torch.manual_seed(0)
    problem = regression(model=BreaksOnValidation())
    result = _short_run(problem, lambda step: 0.05, 90)
    assert result["val"] == float("inf")
    assert result["diverged"] and result["score"] == float("inf")
    # without validation data the training loss scores it, as before
    assert not _short_run(regression(model=BreaksOnValidation(), val=False),
                          lambda step: 0.05, 90)["diverged"]


# -- no usable range test --------------------------------------------------------------------------
def test_no_curve_keeps_the_rate_without_a_meaningless_factor_note():
    class NoCurve:
        lrs, smoothed, good_range, suggested_lr = [], [], None, None

    plan = policy.plan(NoCurve(), total_steps=2000, optimizer="SGD", current_lr=0.05,
                       confirm=True, epochs=40.0)
    choice = policy.choose(plan, [])
    assert choice.peak_lr == 0.05
    assert not any("x that rate" in n for n in choice.notes)
    assert any("falls back to your optimizer's rate 0.05" in n for n in choice.notes)


# -- batch size ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["cosine", "linear", "wsd", "constant"])
def test_rescaled_warmup_filling_the_run_ends_a_step_before_it(shape):
    recipe = Recipe("SGD", {}, 0.1, 199, 200, shape_spec(shape, 200, 199), batch_size=32)
    moved = recipe.for_batch_size(64)  # 199.5 -> 100 warmup steps of a 100-step run
    assert (moved.warmup_steps, moved.total_steps) == (99, 100)
    assert moved.schedule.startswith("warmup(99,")
    assert moved.lr_at(moved.warmup_steps) == pytest.approx(moved.peak_lr)
    length = moved.parsed_schedule.length
    assert length is None or length == moved.total_steps


# -- recipe files ----------------------------------------------------------------------------------
def test_missing_and_malformed_recipe_files_raise_clear_errors(tmp_path):
    for reader, name in ((Recipe.from_json, "recipe.json"), (Recipe.from_yaml, "recipe.yaml")):
        for path in (str(tmp_path / name), tmp_path / name, name):
            with pytest.raises(LrkitError, match="no recipe file .*does not exist"):
                reader(path)
        with pytest.raises(LrkitError, match="cannot read the recipe file"):
            reader(tmp_path)
    (tmp_path / "bad.yaml").write_text("optimizer: [SGD\n")
    with pytest.raises(LrkitError, match="not a YAML recipe in .*bad.yaml"):
        Recipe.from_yaml(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(LrkitError, match="not a JSON recipe in .*bad.json"):
        Recipe.from_json(str(tmp_path / "bad.json"))
    with pytest.raises(LrkitError, match="a recipe is a dict, got list"):
        Recipe.from_json("[1, 2]")


@pytest.mark.parametrize("key, value, message", [
    ("good_range", 5, "good_range must be two rates"),
    ("evidence", [1, 2], "evidence must be a dict"),
    ("notes", "one note", "notes must be a list of strings"),
    ("kind", "lrkit.schedule", "not a recipe: its kind is 'lrkit.schedule'"),
])
def test_from_dict_refuses_wrong_types_clearly(key, value, message):
    data = Recipe("SGD", {}, 0.1, 10, 200, shape_spec("cosine", 200, 10)).to_dict()
    data[key] = value
    with pytest.raises(LrkitError, match=message):
        Recipe.from_dict(data)


def test_build_refuses_options_torch_rejects_with_an_lrkit_error():
    recipe = Recipe("SGD", {"nesterov": True}, 0.1, 1, 10, "warmup(1) >> cosine(9)")
    with pytest.raises(LrkitError, match="cannot build SGD .*Nesterov"):
        recipe.build(nn.Linear(2, 1).parameters())


# -- an optimizer defined in the recipe file -------------------------------------------------------
def test_optimizer_class_from_a_recipe_file_is_named_by_the_file(tmp_path, capsys, monkeypatch):
    script = tmp_path / "mytask.py"
    script.write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class MySGD(torch.optim.SGD):
            pass

        def make(seed=0):
            torch.manual_seed(seed)
            x = torch.randn(256, 4)
            y = (x.sum(1) > 0).long()
            model = nn.Linear(4, 2)
            opt = MySGD(model.parameters(), lr=1e-2, momentum=0.9)
            loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                                 batch_size=16)
            return model, opt, loader, nn.CrossEntropyLoss()
    """))
    out = tmp_path / "r.json"
    assert main(["recommend", f"{script}:make", "--steps", "100", "--no-progress",
                 "--json", str(out), "--code"]) == 0
    code = capsys.readouterr().out
    assert "from mytask import MySGD" in code and "lrkit_recipe_" not in code
    recipe = Recipe.from_json(out)
    assert recipe.optimizer == "mytask.MySGD"
    optimizer, _ = recipe.build(nn.Linear(2, 1).parameters())
    assert type(optimizer).__name__ == "MySGD"
    # the pasted code imports it as a training script next to the file would
    monkeypatch.syspath_prepend(str(tmp_path))
    pasted, _ = run_code(recipe, nn.Linear(2, 1), 1)
    assert type(pasted).__name__ == "MySGD" and pasted.defaults["momentum"] == 0.9


# -- numpy counts ----------------------------------------------------------------------------------
def test_numpy_steps_epochs_and_seed_are_accepted():
    recipe = recommend(regression(), steps=np.int64(300), seed=np.int64(1), confirm=False,
                       progress=False)
    assert recipe.total_steps == 300 and type(recipe.total_steps) is int
    assert recipe.evidence["seed"] == 1 and type(recipe.evidence["seed"]) is int
    by_epochs = recommend(regression(), epochs=np.float32(2.0), confirm=False, progress=False)
    assert by_epochs.total_steps == 2 * 24
    json.loads(by_epochs.to_json())


def test_numpy_batch_sizes_are_accepted():
    recipe = Recipe("SGD", {}, 0.1, 10, 200, shape_spec("cosine", 200, 10),
                    batch_size=np.int64(32))
    assert type(recipe.batch_size) is int
    moved = recipe.for_batch_size(np.int64(64))
    assert moved.batch_size == 64 and type(moved.batch_size) is int
    assert moved.peak_lr == pytest.approx(0.2)
    assert Recipe("SGD", {}, 0.1, 10, 200, shape_spec("cosine", 200, 10)).for_batch_size(
        64, old=np.int32(32)).peak_lr == pytest.approx(0.2)
    json.loads(moved.to_json())
