"""Review of the pasted code (``Recipe.to_code``, ``lrkit recommend --code``) in a real training
loop: parameter groups the code would merge, a warmup the schedule does not have, hand-written
YAML numbers, options held as arrays, non-finite options, and the refusal of wsd's own warmup."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from lrkit.errors import LrkitError
from lrkit.recommend import Recipe
from lrkit.recommend.shapes import SHAPES, shape_spec


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def train(namespace: dict, steps: int) -> list[list[float]]:
    """Step the pasted optimizer and scheduler as a training loop does: each group's rates."""
    optimizer, scheduler = namespace["optimizer"], namespace["scheduler"]
    net, rates = namespace["model"], []
    for _ in range(steps):
        rates.append([g["lr"] for g in optimizer.param_groups])
        net(torch.randn(8, 4)).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return rates


def paste(code: str, net: nn.Module, **names) -> dict:
    namespace = {"model": net, **names}
    exec(compile(code, "<pasted>", "exec"), namespace)  # noqa: S102 - the point of the test
    return namespace


# -- 1. parameter groups ---------------------------------------------------------------------------
def grouped_recipe() -> Recipe:
    """As recommend() returns it for AdamW with no weight decay on the biases and a head at 2x."""
    groups = [{"lr_ratio": 1.0}, {"lr_ratio": 1.0, "weight_decay": 0.0},
              {"lr_ratio": 2.0, "weight_decay": 0.0}]
    return Recipe("AdamW", {"weight_decay": 0.05, "betas": (0.9, 0.95)}, 4e-3, 10, 100,
                  shape_spec("cosine", 100, 10), evidence={"param_groups": groups})


def test_code_of_a_grouped_optimizer_shows_the_groups_it_would_merge():
    recipe = grouped_recipe()
    code = recipe.to_code()
    # the code still runs as pasted (one group), and says that it merged three
    assert "3 parameter groups" in code
    listed = re.search(r"#\s+(\[\{.*?\}\])\n(?!#)", code, re.S)
    assert listed, code
    groups_text = re.sub(r"\n#\s*", " ", listed.group(1))
    net = model()
    params = [[net[0].weight, net[2].weight], [net[0].bias], [net[2].bias]]
    for i in range(3):
        groups_text = groups_text.replace(f"<group {i}'s parameters>", f"params[{i}]")
    groups = eval(groups_text, {"params": params})  # noqa: S307
    namespace = paste(code.replace("model.parameters()", "groups"), net, groups=groups)
    optimizer = namespace["optimizer"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0, 0.0]
    assert all(g["betas"] == (0.9, 0.95) for g in optimizer.param_groups)
    rates = train(namespace, recipe.total_steps)
    for step in (0, 9, 10, 11, 50, 99):
        want = recipe.lr_at(step)
        assert rates[step] == pytest.approx([want, want, 2 * want], rel=1e-12, abs=1e-15)


def test_code_of_groups_alike_adds_nothing():
    recipe = grouped_recipe()
    recipe.evidence["param_groups"] = [{"lr_ratio": 1.0}, {"lr_ratio": 1.0}]
    assert "parameter groups" not in recipe.to_code()


# -- 2. warmup_steps that the schedule does not have -----------------------------------------------
@pytest.mark.parametrize("warmup, spec", [(20, "cosine(200)"), (0, "warmup(10) >> cosine(190)"),
                                          (5, "warmup(10) >> cosine(190)"),
                                          (20, "wsd(200, decay=40, warmup=10)")])
def test_warmup_steps_must_be_the_schedules_warmup(warmup, spec):
    # the summary and the code's header would say "warmup 20 steps" of a schedule without one
    with pytest.raises(LrkitError, match="warmup"):
        Recipe("SGD", {}, 0.1, warmup, 200, spec)
    data = Recipe("SGD", {}, 0.1, 10, 200, "warmup(10) >> cosine(190)").to_dict()
    data["warmup_steps"] = 20  # edited in the YAML, the schedule left as it was
    with pytest.raises(LrkitError, match="warmup"):
        Recipe.from_dict(data)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("warmup", [0, 1, 10])
def test_agreeing_warmups_are_accepted(shape, warmup):
    recipe = Recipe("SGD", {}, 0.1, warmup, 200, shape_spec(shape, 200, warmup))
    assert f"warmup {warmup} step" in recipe.to_code().splitlines()[0]
    Recipe("SGD", {}, 0.1, 10, 200, "wsd(200, decay=40, warmup=10)")
    Recipe("SGD", {}, 0.1, 10, 200, "warmup(10) >> cosine(100) >> constant(0.1)")
    Recipe("SGD", {}, 0.1, 0, 200, "onecycle(200)")  # its rise is no warmup of the recipe's


# -- 3. hand-written YAML ------------------------------------------------------------------------
def test_yaml_numbers_without_a_dot_are_numbers():
    text = ("optimizer: AdamW\noptimizer_options:\n  weight_decay: 1e-4\n  eps: 1E-8\n"
            "peak_lr: 3e-4\nwarmup_steps: 10\ntotal_steps: 100\n"
            "schedule: warmup(10) >> cosine(90)\n")
    recipe = Recipe.from_yaml(text)
    assert recipe.peak_lr == 3e-4
    assert recipe.optimizer_options == {"weight_decay": 1e-4, "eps": 1e-8}
    assert "weight_decay=0.0001" in recipe.to_code()
    optimizer = paste(recipe.to_code(), model())["optimizer"]
    assert optimizer.defaults["weight_decay"] == 1e-4
    assert Recipe.from_yaml("optimizer: SGD\npeak_lr: 0.1\nwarmup_steps: 0\ntotal_steps: 10\n"
                            "schedule: cosine(10)\nnotes: ['1e3']\n").notes == ["1e3"]


# -- 4. options held as arrays ---------------------------------------------------------------------
@pytest.mark.parametrize("betas", [torch.tensor([0.9, 0.99]), np.array([0.9, 0.99])])
def test_array_options_are_tuples_the_code_and_json_can_hold(betas):
    recipe = Recipe("Adam", {"betas": betas}, 1e-3, 0, 10, "cosine(10)")
    assert recipe.optimizer_options["betas"] == pytest.approx((0.9, 0.99))
    assert type(recipe.optimizer_options["betas"]) is tuple
    optimizer = paste(recipe.to_code(), model())["optimizer"]
    assert optimizer.defaults["betas"] == recipe.optimizer_options["betas"]
    assert Recipe.from_json(recipe.to_json()) == recipe


# -- 5. non-finite options -------------------------------------------------------------------------
def test_non_finite_options_are_valid_python():
    # (prodigyopt.Prodigy's growth_rate is inf by default, and kept when its defaults are unknown)
    recipe = Recipe("SGD", {"growth": (float("inf"), -float("inf"), float("nan"))},
                    0.1, 0, 10, "cosine(10)")
    code = recipe.to_code()
    line = next(line for line in code.splitlines() if line.startswith("optimizer ="))
    args = line.split("growth=", 1)[1].rsplit(")", 1)[0]
    value = eval(args, {})  # noqa: S307
    assert value[:2] == (float("inf"), -float("inf")) and value[2] != value[2]


# -- 6. what to_code refuses, said right ----------------------------------------------------------
def test_wsd_with_a_warmup_of_its_own_is_refused_by_name():
    recipe = Recipe("SGD", {}, 0.1, 10, 200, "wsd(200, decay=40, warmup=10)")
    with pytest.raises(LrkitError, match=r"wsd without a warmup of its own"):
        recipe.to_code()


def test_build_warns_when_a_groups_lr_looks_like_a_multiple_not_a_rate():
    # the note gives each group's lr_ratio; lr=1.0 for "1 x peak_lr" trained at 1.0, 675x peak
    import warnings

    recipe = Recipe("AdamW", {"weight_decay": 0.05}, 0.001, 0, 200, "cosine(200)")
    model = nn.Linear(4, 2)
    with pytest.warns(UserWarning, match=r"parameter group 1 has lr=1, 1e\+03x the recipe's peak_lr"):
        recipe.build([{"params": [model.weight]}, {"params": [model.bias], "lr": 1.0,
                                                   "weight_decay": 0.0}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recipe.build([{"params": [model.weight]}, {"params": [model.bias], "weight_decay": 0.0}])


def test_build_does_not_warn_about_a_group_set_as_the_note_says_but_checks_tensor_rates():
    import warnings

    recipe = Recipe("SGD", {}, 0.01, 0, 100, "constant()",
                    evidence={"param_groups": [{"lr_ratio": 1.0}, {"lr_ratio": 20.0}]})
    model = nn.Linear(4, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # lr 0.2 = 20 x peak_lr, as the note said
        recipe.build([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.2}])
    with pytest.warns(UserWarning, match="parameter group 1 has lr=1"):
        recipe.build([{"params": [model.weight]},
                      {"params": [model.bias], "lr": torch.tensor(1.0)}])
