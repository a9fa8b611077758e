"""What a review of the recipe form, the short training runs and the example scripts found (each
test failed before its fix)."""
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lrkit
from lrkit.errors import LrkitError
from lrkit.problem import build_problem, load_problem
from lrkit.training import train

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _recipe(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(64, 4)
    model = nn.Linear(4, 2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long()),
                                         batch_size=16)
    return lrkit.Problem(model, torch.optim.SGD(model.parameters(), lr=0.1), loader,
                         nn.CrossEntropyLoss(), val_loader=loader)


@pytest.mark.parametrize("target", ["wine-logreg", _recipe])
def test_numpy_and_tensor_seeds_build_as_the_same_int(target):
    # np.int64(3) and torch.tensor(3) overflowed in `seed % 2**64` (OverflowError), though
    # examples.build takes them as seeds
    weights = [build_problem(target, seed=seed).model.weight.detach().clone()
               for seed in (3, np.int64(3), torch.tensor(3))]
    assert all(torch.equal(weights[0], w) for w in weights[1:])


@pytest.mark.parametrize("target, seed", [(target, seed) for target in ("wine-logreg", _recipe)
                                           for seed in ("3", 1.5, None)]
                         + [(_recipe, True), (_recipe, 2 ** 64)])
def test_a_seed_that_is_not_an_integer_is_refused_by_name(target, seed):
    # a TypeError from `seed % 2**64` or from numpy's seeding, deep inside; True built a recipe,
    # and 2**64 failed inside it (examples.build refused these two already)
    with pytest.raises(LrkitError, match=r"seed must be an integer from -2\*\*63 to 2\*\*64 - 1"):
        build_problem(target, seed=seed)


def test_a_recipe_files_module_level_data_is_the_same_for_the_same_seed(tmp_path, monkeypatch):
    # data drawn when the file is imported came from unseeded generators: numpy's differs in
    # every process (lrkit find gave another suggestion per run), and a sweep, which imports
    # the file for each trial, trained each trial on other data
    monkeypatch.setattr(sys, "path", list(sys.path))  # (the file's folder is put first)
    path = tmp_path / "toplevel_data_recipe.py"
    path.write_text(
        "import numpy as np, random, torch\n"
        "X = torch.tensor(np.random.randn(32, 3), dtype=torch.float32) + torch.randn(32, 3)"
        " + random.random()\n"
        "def make(seed=0):\n"
        "    model = torch.nn.Linear(3, 1)\n"
        "    return model, torch.optim.SGD(model.parameters(), lr=0.1), "
        "[(X, X.sum(1, keepdim=True))], torch.nn.MSELoss()\n")
    first = load_problem(f"{path}:make", seed=5).train_loader[0][0]
    np.random.seed(123), torch.manual_seed(123), random.seed(123)  # another trial ran before
    again = load_problem(f"{path}:make", seed=5).train_loader[0][0]
    assert torch.equal(first, again)


@pytest.mark.parametrize("value", ["abc", 2.5, -1, 0, True, "2"])
def test_a_bad_accumulation_steps_is_refused_as_training_refuses_it(value):
    # 'abc' raised ValueError from int(); 2.5 read as 2 and -1 as -1 (recommend's and the
    # sweep's epochs counted optimizer steps with them)
    problem = _recipe()
    problem.step_options = {"accumulation_steps": value}
    with pytest.raises(LrkitError, match="accumulation_steps must be an integer >= 1"):
        problem.accumulation_steps
    # what it read right stays so: none is 1, numpy's integers are integers
    for given, expected in ((None, 1), (np.int64(3), 3)):
        problem.step_options = {"accumulation_steps": given}
        assert problem.accumulation_steps == expected
    problem.step_options = {}
    assert problem.accumulation_steps == 1


@pytest.mark.parametrize("every", ["2", -1, 2.5, True])
def test_a_bad_eval_every_is_refused_by_name(every):
    # "2": TypeError from %; -1 evaluated after every step; 2.5 at odd steps
    with pytest.raises(LrkitError, match="eval_every must be an integer >= 1"):
        train(_recipe(), lr=0.1, steps=4, eval_every=every)


def test_eval_every_without_validation_data_is_refused():
    # it recorded a curve of NaN, written as nulls by to_dict
    problem = _recipe()
    problem.val_loader = None
    with pytest.raises(LrkitError, match="eval_every=2 records the validation .* no val_loader"):
        train(problem, lr=0.1, steps=4, eval_every=2)
    assert train(problem, lr=0.1, steps=4).val_curve == []
    # with validation data the curve is recorded as before (numpy's integers too; 0: none)
    run = train(_recipe(), lr=0.1, steps=4, eval_every=np.int64(2))
    assert [step for step, _ in run.val_curve] == [2, 4]
    assert train(_recipe(), lr=0.1, steps=4, eval_every=0).val_curve == []


def test_a_one_shot_validation_iterator_read_already_is_named_as_such():
    # the message said the loader was empty (or smaller than a batch)
    problem = _recipe()
    problem.val_loader = (batch for batch in problem.train_loader)
    with pytest.raises(LrkitError, match="one-shot iterator"):
        train(problem, lr=0.1, steps=4, eval_every=2)


def test_schedule_preview_prints_the_rates_torch_used(tmp_path):
    # "torch rates" printed step 0 from the schedule, not from torch, and as "last" the rate
    # after the last step (0 here, where the preview's end, the last step's rate, is 0.000111)
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "schedule_preview.py"), "--spec",
         "warmup(10, start=0.1) >> linear(90)", "--steps", "100", "--lr", "0.01", "--out",
         "s.png"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "torch rates: step 0 0.001, peak 0.01, last 0.000111" in out.stdout
