"""lrkit.training: the short runs behind sweeps, recipes and benchmarks."""
import torch

import lrkit
from lrkit.training import evaluate, train


def _problem(maximize: bool) -> lrkit.Problem:
    torch.manual_seed(0)
    x, y = torch.randn(128, 6), torch.randint(0, 3, (128,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16),
                                torch.nn.ReLU(), torch.nn.Linear(16, 3))
    sign = -1.0 if maximize else 1.0

    def loss_fn(m, batch):
        inputs, targets = batch
        return sign * torch.nn.functional.cross_entropy(m(inputs), targets)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, maximize=maximize)
    return lrkit.Problem(model=model, optimizer=optimizer, train_loader=loader,
                         val_loader=loader, loss_fn=loss_fn)


def test_a_maximizing_optimizer_is_scored_as_the_loss_it_minimises():
    plain = train(_problem(False), lr=0.1, steps=20, seed=1)
    ascending = train(_problem(True), lr=0.1, steps=20, seed=1)
    assert torch.allclose(torch.tensor(ascending.losses), torch.tensor(plain.losses), atol=1e-5)
    assert abs(ascending.val_loss - plain.val_loss) < 1e-5 and plain.val_loss > 0


def test_evaluate_leaves_a_frozen_submodule_in_eval_mode():
    problem = _problem(False)
    problem.model.train()
    problem.model[1].eval()  # frozen BatchNorm statistics
    evaluate(problem)
    assert problem.model.training and not problem.model[1].training
