"""From a review of recommend: the training options the recipe was measured with (clipping),
a finder of another optimizer, the batch-size rule of a subclass, schedule-free optimizers, the
pasted code's linear end, the device flags."""
import json

import pytest
import torch
from torch import nn

import lrkit
from lrkit.errors import LrkitError


def _problem(opt="sgd", n=512, step_options=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = x[:, :1] * 2 - x[:, 1:2] + 0.1 * torch.randn(n, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = (torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if opt == "sgd"
                 else torch.optim.AdamW(model.parameters(), lr=1e-3))
    loader = [(x[i:i + 32], y[i:i + 32]) for i in range(0, n, 32)]
    return lrkit.Problem(model, optimizer, loader, nn.MSELoss(), val_loader=loader[:2],
                         step_options=step_options or {})


def test_a_recipe_measured_with_clipping_says_so_in_its_code_json_and_summary():
    # a peak measured with clipping at 0.1 was 24x the one without; the pasted code did not
    # clip and went to NaN by step 100
    recipe = lrkit.recommend(_problem(step_options={"max_grad_norm": 0.1,
                                                    "accumulation_steps": 2}),
                             steps=300, progress=False)
    assert recipe.evidence["training"] == {"max_grad_norm": 0.1, "accumulation_steps": 2}
    code = recipe.to_code()
    assert "torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)" in code
    assert "(loss / 2).backward() for each of 2 micro-batches" in code
    assert "gradient clipping at 0.1" in str(recipe)
    again = lrkit.Recipe.from_json(recipe.to_json())
    assert again == recipe and "clip_grad_norm_" in again.to_code()
    plain = lrkit.recommend(_problem(), steps=300, progress=False)
    assert "training" not in plain.evidence and "clip" not in plain.to_code()


def test_a_finder_of_another_optimizer_family_is_refused():
    sgd = _problem("sgd")
    finder = lrkit.find_lr(sgd.model, sgd.optimizer, sgd.train_loader, sgd.criterion,
                           num_steps=30, progress=False)
    with pytest.raises(LrkitError, match="measured on an optimizer of the 'sgd' family.*AdamW"):
        lrkit.recommend(_problem("adamw"), steps=300, finder=finder, progress=False)


class MomentumSGD(torch.optim.SGD):
    pass


def test_the_batch_size_rule_is_read_from_the_optimizer_when_measured():
    problem = _problem()
    problem.optimizer = MomentumSGD(problem.model.parameters(), lr=0.01, momentum=0.9)
    recipe = lrkit.recommend(problem, steps=300, confirm=False, progress=False)
    assert recipe.evidence["sgd_like"] is True
    data = recipe.to_dict()
    data["optimizer"] = "not_a_module_here.MomentumSGD"  # read where it does not import
    data["batch_size"] = 32
    again = lrkit.Recipe.from_dict(json.loads(json.dumps(data)))
    assert again.is_sgd_like  # the linear rule, as measured (it fell back to the square root)
    assert again.for_batch_size(64).peak_lr == pytest.approx(2 * recipe.peak_lr)


def test_a_schedule_free_recipe_builds_in_train_mode():
    schedulefree = pytest.importorskip("schedulefree")  # (a dev dependency)
    model = nn.Linear(4, 1)
    recipe = lrkit.Recipe(optimizer="schedulefree.AdamWScheduleFree", optimizer_options={},
                          peak_lr=1e-3, warmup_steps=10, total_steps=100,
                          schedule="warmup(10, start=0.01) >> cosine(90)")
    optimizer, scheduler = recipe.build(model.parameters())
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()  # "Optimizer was not in train mode" before
    scheduler.step()
    assert "optimizer.train()" in recipe.to_code()
    assert isinstance(optimizer, schedulefree.AdamWScheduleFree)


def test_the_pasted_code_ends_a_linear_piece_exactly():
    recipe = lrkit.Recipe(optimizer="SGD", optimizer_options={}, peak_lr=0.1, warmup_steps=0,
                          total_steps=200, schedule="linear(100, start=1.0, end=0.1)")
    namespace = {"model": nn.Linear(2, 1)}
    exec(recipe.to_code(), namespace)
    for step in (99, 100, 150, 199):
        assert namespace["lr_factor"](step) * recipe.peak_lr == recipe.lr_at(step), step


def test_device_flags_left_out_are_named():
    problem = _problem("adamw")
    problem.optimizer = torch.optim.AdamW(problem.model.parameters(), lr=1e-3, foreach=True)
    recipe = lrkit.recommend(problem, steps=300, confirm=False, progress=False)
    assert "foreach" not in recipe.optimizer_options
    assert "its device flags (foreach=True) are left out" in recipe.notes[0]


def test_the_training_options_name_the_precision_measured_and_leave_out_an_infinite_clip():
    from lrkit.recommend.api import training_options

    assert training_options({"amp": True}, precision="fp16") == {"amp": "fp16"}  # CUDA's
    assert training_options({"amp": "float16"}, precision="fp16") == {"amp": "fp16"}
    assert training_options({"max_grad_norm": float("inf")}) == {}  # it clips nothing
    recipe = lrkit.recommend(_problem(step_options={"max_grad_norm": float("inf")}),
                             steps=300, confirm=False, progress=False)
    again = lrkit.Recipe.from_json(recipe.to_json())
    assert str(again) and again.to_code()  # a null clip broke both after the round trip


def test_a_schedule_free_closure_class_gets_no_train_call():
    recipe = lrkit.Recipe(optimizer="schedulefree.SGDScheduleFreeClosure", optimizer_options={},
                          peak_lr=0.1, warmup_steps=0, total_steps=100, schedule="cosine(100)")
    assert "optimizer.train()" not in recipe.to_code()  # it has no train(): AttributeError


def test_a_finder_saved_without_its_precision_keeps_the_problems():
    from lrkit.recommend.api import training_options

    assert training_options({"amp": "bf16"}, precision=None) == {"amp": "bf16"}
    assert training_options({"amp": "fp16"}, precision=None) == {"amp": "fp16"}
    assert training_options({"amp": "bf16"}, precision=False) == {}  # it ran without autocast
