"""Recommend, found in a code review: --code with a recipe that prints, a schedule-free
optimizer's bookkeeping, SGD subclasses and the batch-size rule, and the summary's peak line."""
import io
import sys
import textwrap
from contextlib import redirect_stdout

import pytest
import torch

import lrkit
from lrkit.cli import main
from lrkit.recommend import Recipe
from lrkit.recommend.api import optimizer_options


def test_code_on_stdout_is_the_code_alone_when_the_recipe_prints(tmp_path):
    # `lrkit recommend task.py:make --code > x.py` put the recipe's own print first: the pasted
    # file was a SyntaxError
    (tmp_path / "task.py").write_text(textwrap.dedent("""
        import torch
        from lrkit.problem import Problem

        def make(seed=0):
            print(f"building data (seed {seed})")
            g = torch.Generator().manual_seed(0)
            x = torch.randn(256, 6, generator=g)
            y = x @ torch.randn(6, 1, generator=g)
            torch.manual_seed(seed)
            model = torch.nn.Linear(6, 1)
            return Problem(model, torch.optim.SGD(model.parameters(), lr=0.01),
                           torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                                       batch_size=16, shuffle=True),
                           torch.nn.MSELoss())
        """))
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["recommend", f"{tmp_path / 'task.py'}:make", "--steps", "200", "--code",
                     "--no-progress", "--no-confirm"]) == 0
    code = out.getvalue()
    assert "building data" not in code
    namespace = {"model": torch.nn.Linear(6, 1)}
    exec(compile(code, "recipe_code.py", "exec"), namespace)  # runs as pasted
    assert isinstance(namespace["optimizer"], torch.optim.SGD)


def test_a_schedule_free_optimizers_bookkeeping_is_no_option():
    schedulefree = pytest.importorskip("schedulefree")
    model = torch.nn.Linear(4, 1)
    optimizer = schedulefree.AdamWScheduleFree(model.parameters(), lr=0.01, weight_decay=0.1)
    optimizer.train()  # as its docs require: train_mode=True goes into its defaults
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()  # and k, weight_sum, lr_max, scheduled_lr into its group
    options = optimizer_options(optimizer)
    assert options == {"weight_decay": 0.1}
    recipe = Recipe(optimizer="schedulefree.AdamWScheduleFree", optimizer_options=options,
                    peak_lr=0.01, warmup_steps=10, total_steps=100,
                    schedule="warmup(10, start=0.01) >> cosine(90)")
    recipe.build(torch.nn.Linear(4, 1).parameters())  # raised: unexpected keyword argument 'train_mode'


def test_an_sgd_subclass_follows_the_linear_rule(monkeypatch):
    class MySGD(torch.optim.SGD):
        pass

    module = type(sys)("user_optim")
    module.MySGD = MySGD
    monkeypatch.setitem(sys.modules, "user_optim", module)
    recipe = Recipe(optimizer="user_optim.MySGD", optimizer_options={}, peak_lr=0.1,
                    warmup_steps=10, total_steps=1000,
                    schedule="warmup(10, start=0.01) >> cosine(990)", batch_size=32)
    assert recipe.batch_rule == "linear"  # read from its name it was "sqrt": x2 for x4
    assert recipe.for_batch_size(128).peak_lr == pytest.approx(0.4)


def test_a_peak_printed_as_the_ranges_end_is_not_said_to_be_above_it():
    recipe = Recipe(optimizer="SGD", optimizer_options={}, peak_lr=0.307, warmup_steps=10,
                    total_steps=100, schedule="warmup(10, start=0.01) >> cosine(90)",
                    good_range=(0.0658, 0.3067953636706588))
    line = next(l for l in recipe.summary().splitlines() if "peak lr" in l)
    assert "above" not in line and "0.0658 .. 0.307" in line
