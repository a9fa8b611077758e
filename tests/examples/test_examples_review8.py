"""What a review of the built-in examples found (each test failed before its fix)."""
import torch

import lrkit
from lrkit.examples import accuracy
from lrkit.training import train


def test_accuracy_puts_back_each_modules_own_mode():
    # it ended with model.train(was_training), which unfroze a BatchNorm kept in eval (frozen
    # statistics) at the end of every training run of an example with a metric
    problem = lrkit.examples.build("digits-cnn", seed=0)
    problem.model.features[1].eval()
    train(problem, lr=0.01, steps=3, seed=0)
    assert problem.model.training and not problem.model.features[1].training


def test_accuracy_puts_back_the_modes_when_the_model_raises():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())
    model[1].eval()

    def loader():
        yield torch.zeros(1, 3), torch.zeros(1, dtype=torch.long)  # the wrong width: raises

    try:
        accuracy(model, loader())
    except RuntimeError:
        pass
    assert model.training and model[0].training and not model[1].training
