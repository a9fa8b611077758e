"""lrkit.recommend end to end on small problems, its bad input, and the CLI."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn

import lrkit
from lrkit.cli import main
from lrkit.errors import LrkitError
from lrkit.recommend import Recipe, recommend


def regression_problem(seed: int = 0, optimizer: str = "adam") -> lrkit.Problem:
    """A small noisy linear-regression problem (fast: ~0.2 ms per step)."""
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(2048, 8, generator=gen)
    y = x @ torch.randn(8, 1, generator=gen) + 0.3 * torch.randn(2048, 1, generator=gen)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = (torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99)) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:1536], y[:1536]),
                                        batch_size=32, shuffle=True,
                                        generator=torch.Generator().manual_seed(seed))
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[1536:], y[1536:]),
                                      batch_size=256)
    return lrkit.Problem(model, opt, train, nn.MSELoss(), val_loader=val, name="regression")


def test_lrkit_recommend_is_callable_in_any_import_order():
    import lrkit.recommend as module

    assert callable(lrkit.recommend)
    assert callable(module)
    assert lrkit.Recipe is Recipe


def test_recommend_on_a_problem_keeps_its_optimizer_and_restores_it():
    problem = regression_problem()
    before = {k: v.clone() for k, v in problem.model.state_dict().items()}
    torch.manual_seed(1234)
    expected_draw = torch.rand(3)
    torch.manual_seed(1234)
    recipe = recommend(problem, steps=2000, seed=0, progress=False)
    after = problem.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # measured, then put back
    # the seeded measurements leave the caller's generator where it was
    assert torch.equal(torch.rand(3), expected_draw)
    assert problem.optimizer.param_groups[0]["lr"] == 1e-3
    assert recipe.optimizer == "Adam"
    assert recipe.optimizer_options == {"betas": (0.9, 0.99)}
    assert recipe.total_steps == 2000 and 0 < recipe.warmup_steps < 2000
    assert recipe.batch_size == 32
    assert recipe.good_range is not None
    lo, hi = recipe.good_range
    assert 1e-5 < recipe.peak_lr < 10 and lo < hi
    assert recipe.lr_at(recipe.warmup_steps) == pytest.approx(recipe.peak_lr)
    evidence = recipe.evidence
    assert len(evidence["finder"]["lrs"]) == len(evidence["finder"]["losses"]) > 10
    assert evidence["cost"]["fraction"] <= 0.2 + 1e-9
    assert evidence["confirmations"], "a 2000-step budget leaves room for confirmation runs"
    for run in evidence["confirmations"]:
        assert {"lr", "score", "steps", "diverged"} <= set(run)
    assert any("Adam kept" in note for note in recipe.notes)
    assert Recipe.from_json(recipe.to_json()) == recipe
    # the recipe trains: a full run with its optimizer and schedule ends well below the start
    optimizer, scheduler = recipe.build(problem.model.parameters())
    loss = None
    batches = iter(problem.train_loader)
    first = None
    for step in range(200):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(problem.train_loader)
            x, y = next(batches)
        loss = nn.functional.mse_loss(problem.model(x), y)
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    assert float(loss.detach()) < first


def test_recommend_without_confirmation_is_finder_only():
    recipe = recommend(regression_problem(optimizer="sgd"), steps=2000, confirm=False, progress=False)
    assert recipe.optimizer == "SGD" and recipe.optimizer_options == {"momentum": 0.9}
    assert recipe.evidence["confirmations"] == []
    assert recipe.evidence["cost"]["steps"] == len(recipe.evidence["finder"]["lrs"])
    assert recipe.batch_rule == "linear"


def test_short_budget_skips_confirmation_and_says_so():
    recipe = recommend(regression_problem, steps=300, progress=False)
    assert recipe.evidence["confirmations"] == []
    assert any("no confirmation runs" in note for note in recipe.notes)
    # the range test alone is a third of so short a run: the notes say so
    share = recipe.evidence["cost"]["fraction"]
    assert share > 0.2 and any(f"{share:.0%} of the planned 300" in n for n in recipe.notes)


def test_epochs_and_callable_target():
    calls = []

    def recipe_fn(seed):
        calls.append(seed)
        return regression_problem(seed)

    recipe = recommend(recipe_fn, epochs=2, seed=3, confirm=False, progress=False)
    assert calls == [3]
    assert recipe.total_steps == 2 * 48
    assert any("2 epochs x 48 steps" in note for note in recipe.notes)


def test_example_name_uses_its_budget_by_default():
    recipe = recommend("wine-logreg", confirm=False, progress=False)
    assert recipe.total_steps == lrkit.examples.get("wine-logreg").budget_steps
    assert recipe.evidence["problem"] == "wine-logreg"


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be a whole number of optimizer steps >= 1, got 0"),
    ({"steps": -10}, "steps must be a whole number of optimizer steps >= 1, got -10"),
    ({"steps": 2.5}, "steps must be a whole number"),
    ({"epochs": 0}, "epochs must be a positive number, got 0"),
    ({"epochs": -1.0}, "epochs must be a positive number"),
    ({"steps": 10, "epochs": 1}, "not both"),
])
def test_bad_lengths(kwargs, message):
    with pytest.raises(LrkitError, match=message):
        recommend(regression_problem(), progress=False, **kwargs)


def test_bad_targets():
    with pytest.raises(LrkitError, match="unknown example 'nope'"):
        recommend("nope", steps=100)
    with pytest.raises(LrkitError, match="needs an example name"):
        recommend(42, steps=100)
    problem = regression_problem()
    problem.budget_steps = None
    with pytest.raises(LrkitError, match="give the planned training length"):
        recommend(problem)


# -- CLI --------------------------------------------------------------------------------------------
def test_cli_json_and_code(capsys):
    assert main(["recommend", "wine-logreg", "--steps", "400", "--json", "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    recipe = Recipe.from_dict(data)
    assert recipe.total_steps == 400 and recipe.optimizer == "SGD"
    assert main(["recommend", "wine-logreg", "--steps", "400", "--code", "--no-progress"]) == 0
    code = capsys.readouterr().out
    assert "torch.optim.SGD(model.parameters(), lr=" in code and "LambdaLR" in code


def test_cli_summary_file_target_and_batch_size(tmp_path, capsys):
    script = tmp_path / "task.py"
    script.write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def make(seed=0):
            torch.manual_seed(seed)
            x = torch.randn(512, 4)
            y = (x.sum(1) > 0).long()
            model = nn.Linear(4, 2)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
            return model, opt, loader, nn.CrossEntropyLoss()
    """))
    out_json = tmp_path / "r.json"
    assert main(["recommend", f"{script}:make", "--steps", "200", "--batch-size", "64",
                 "--json", str(out_json), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "optimizer  AdamW" in text and "square-root rule" in text
    recipe = Recipe.from_json(out_json)
    assert recipe.batch_size == 64 and recipe.total_steps == 50


def test_cli_bad_input_exits_2(capsys):
    assert main(["recommend", "wine-logreg", "--steps", "0"]) == 2
    assert "--steps must be an integer >= 1 (optimizer steps), got 0" in capsys.readouterr().err
    assert main(["recommend", "no-such-example", "--steps", "100"]) == 2
    assert "unknown example" in capsys.readouterr().err


def test_a_range_test_already_measured_is_reused_not_run_again():
    # find_lr then recommend measured twice, and the two good ranges disagreed
    import lrkit

    problem = lrkit.examples.build("wine-logreg", seed=0)
    measured = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                             problem.criterion, progress=False)
    recipe = lrkit.recommend(problem, steps=300, confirm=False, progress=False, finder=measured)
    assert recipe.good_range == measured.good_range
    assert recipe.evidence["finder"]["lrs"] == measured.lrs
    assert any("the one given (finder=" in note for note in recipe.notes)
    with pytest.raises(lrkit.LrkitError, match="finder must be the FinderResult"):
        lrkit.recommend(problem, steps=300, finder={"lrs": []})


def test_a_finder_measured_another_way_is_refused():
    import lrkit

    problem = lrkit.examples.build("wine-logreg", seed=0)
    measured = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                             problem.criterion, accumulation_steps=4, progress=False)
    with pytest.raises(lrkit.LrkitError, match="measured with accumulation_steps=4"):
        lrkit.recommend(problem, steps=300, confirm=False, finder=measured)


def test_a_recipe_for_an_unnamed_problem_is_not_titled_custom():
    import dataclasses

    import lrkit

    named = lrkit.examples.build("wine-logreg", seed=0)
    measured = lrkit.find_lr(named.model, named.optimizer, named.train_loader, named.criterion,
                             progress=False)
    unnamed = lrkit.Problem(named.model, named.optimizer, named.train_loader, named.criterion)
    assert unnamed.name == "custom"
    recipe = lrkit.recommend(unnamed, steps=300, confirm=False, progress=False, finder=measured)
    assert recipe.summary().startswith("Recipe: 300 steps") and "custom" not in recipe.summary()
    titled = lrkit.recommend(dataclasses.replace(unnamed, name="my-cnn"), steps=300,
                             confirm=False, progress=False, finder=measured)
    assert titled.summary().startswith("Recipe for my-cnn: 300 steps")
