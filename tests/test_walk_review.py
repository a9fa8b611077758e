"""From a user's walk through lrkit on a project of their own: a model returning a tuple under a
criterion, a recipe's val_loader left out by the CLI, a dict given to recommend, the range-test
plot in validation mode, a resumed sweep's trial count on the report page."""
import json
import math

import pytest
import torch
from torch import nn

import lrkit
from lrkit.cli import main
from lrkit.errors import LrkitError


class _TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x):
        return self.linear(x), x


def test_a_criterion_given_a_tuple_output_names_loss_fn():
    torch.manual_seed(0)
    model = _TupleModel()
    loader = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))] * 4
    with pytest.raises(LrkitError, match=r"the criterion failed on the model's output, a tuple "
                                         r".*pass loss_fn=lambda model, batch"):
        lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), loader,
                      nn.CrossEntropyLoss(), num_steps=20, progress=False)


def test_the_cli_says_when_a_recipes_val_loader_is_not_used(tmp_path, capsys):
    recipe = tmp_path / "r.py"
    recipe.write_text("import lrkit\n\ndef make(seed=0):\n"
                      "    return lrkit.examples.build('wine-logreg', seed=seed)\n")
    assert main(["find", f"{recipe}:make", "--steps", "30", "--no-progress"]) == 0
    assert "gives a val_loader, and the curve is the training loss: add --val-every" in \
        capsys.readouterr().out


def test_recommend_given_a_dict_names_the_fix():
    problem = lrkit.examples.build("wine-logreg", seed=0)
    as_dict = {"model": problem.model, "optimizer": problem.optimizer,
               "train_loader": problem.train_loader, "criterion": problem.criterion}
    with pytest.raises(LrkitError, match=r"pass lrkit.Problem\(\*\*that_dict\)"):
        lrkit.recommend(as_dict, steps=100)


def test_the_validation_plot_is_not_squashed_by_the_divergence():
    from lrkit.find.result import FinderResult

    lrs = [10 ** (-5 + 5 * i / 59) for i in range(60)]
    losses = [0.7 - 0.6 * i / 40 if i < 40 else 0.1 + 0.2 * (i - 40) for i in range(60)]
    result = FinderResult(lrs=lrs, losses=losses, smoothed=losses, suggested_lr=1e-3,
                          method="edge", suggestions={}, good_range=None, group_ratios=[1.0],
                          stop_reason="completed", warnings=[], settings={},
                          val_steps=list(range(60)),
                          val_losses=[v if i < 58 else 36.0 for i, v in enumerate(losses)])
    low, high = result.plot().axes[0].get_ylim()
    assert high < 5  # the curve between 0.1 and 0.7 was a sliver under a 36 at the end


def test_the_report_counts_trials_as_the_summary_does(tmp_path):
    from lrkit.show.report import render_page
    from lrkit.sweep.results import SweepResult, TrialRecord

    records = [TrialRecord(number=0, optimizer="sgd", lr=0.1, seed=0, status="failed"),
               TrialRecord(number=1, optimizer="sgd", lr=0.1, seed=0, status="finished",
                           loss=0.5, retry_of=0),
               TrialRecord(number=2, optimizer="sgd", lr=1.0, seed=0, status="finished",
                           loss=0.4)]
    result = SweepResult(records, settings={}, complete=True)
    counted = len(result.completed())
    assert f"{counted} trials" in result.summary()
    page = render_page([(None, json.loads(result.to_json()))])
    assert f"{counted} trials" in page and (counted == 3 or "3 attempts" in page)
    assert math.isfinite(result.best.loss)


def test_a_criterion_written_for_a_tuple_keeps_its_own_type_error():
    torch.manual_seed(0)
    model = _TupleModel()
    loader = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))] * 4

    def criterion(output, targets):  # made for (logits, x), raising its own TypeError
        logits, _ = output
        raise TypeError("my criterion needs a weight table first")

    with pytest.raises(TypeError, match="my criterion needs a weight table first"):
        lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, criterion,
                      num_steps=20, progress=False)


def test_progress_takes_0_and_1_as_confirm_does():
    from lrkit.show.progress import show_progress

    assert show_progress(1) is True and show_progress(0) is False
