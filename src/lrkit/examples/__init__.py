"""Built-in example problems, buildable by name from Python and from the CLI.

Each trains in seconds on one CPU core, on data made in code or shipped by scikit-learn::

    import lrkit, torch
    problem = lrkit.examples.build("digits-mlp", seed=0)
    torch.manual_seed(0)  # dropout's masks, as `lrkit find digits-mlp --seed 0` draws them
    result = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader, problem.criterion)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from torch import nn

from lrkit.errors import LrkitError, is_real, plain_int, require
from lrkit.examples import data, models
from lrkit.problem import Problem

DEFAULT = "digits-mlp"


@dataclasses.dataclass(frozen=True)
class Example:
    name: str
    description: str
    optimizer: str
    default_lr: float  #: the untuned default rate of its optimizer (what a newcomer would use)
    budget_steps: int  #: the planned training length used by the benchmarks
    builder: Callable[[int, float], Problem]


@torch.no_grad()
def accuracy(model: nn.Module, loader) -> float:
    """Share of correct argmax predictions (per position for sequence outputs), on the model's
    device. Each module's own train/eval flag comes back afterwards (``model.train(was)`` put
    a submodule kept in eval, a frozen BatchNorm, back in training mode)."""
    from lrkit.adapters.torch import model_device, move_to

    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    device = model_device(model)  # (a model moved to a GPU got the loader's CPU batches)
    correct = total = 0
    try:
        for batch in loader:
            inputs, targets = move_to(batch, device)
            predictions = model(inputs).argmax(-1)
            correct += int((predictions == targets).sum())
            total += targets.numel()
    finally:
        for module, training in modes:
            module.training = training
    return correct / max(total, 1)


_OPTIMIZERS = {
    "sgd": (torch.optim.SGD, {}),
    "sgd-momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "sgd-momentum-wd": (torch.optim.SGD, {"momentum": 0.9, "weight_decay": 5e-3}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.01}),
    "rmsprop": (torch.optim.RMSprop, {}),
}


def _make(name: str, seed: int, lr: float, *, model_fn: Callable[[], nn.Module], optimizer: str,
          tensors, batch_size: int, criterion: nn.Module,
          classify: bool = True) -> Problem:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_fn()
    cls, options = _OPTIMIZERS[optimizer]
    x_tr, y_tr, x_va, y_va = tensors
    return Problem(
        model=model,
        optimizer=cls(model.parameters(), lr=lr, **options),
        train_loader=data.ShuffledBatches(x_tr, y_tr, batch_size=batch_size, seed=seed),
        val_loader=data.ShuffledBatches(x_va, y_va, batch_size=256, shuffle=False, drop_last=False),
        criterion=criterion,
        name=name,
        metric_fn=accuracy if classify else None,
        metric_name="accuracy" if classify else None,
    )


def _digits_mlp(seed: int, lr: float) -> Problem:
    return _make("digits-mlp", seed, lr, model_fn=lambda: models.mlp([64, 128, 64, 10]),
                 optimizer="sgd-momentum-wd", tensors=data.classification("digits"), batch_size=32,
                 criterion=nn.CrossEntropyLoss())


def _digits_cnn(seed: int, lr: float) -> Problem:
    return _make("digits-cnn", seed, lr, model_fn=models.DigitsCNN, optimizer="sgd-momentum",
                 tensors=data.classification("digits"), batch_size=32,
                 criterion=nn.CrossEntropyLoss())


def _regression_mlp(seed: int, lr: float) -> Problem:
    return _make("regression-mlp", seed, lr,
                 model_fn=lambda: models.mlp([10, 64, 64, 1], activation=nn.Tanh),
                 optimizer="adam", tensors=data.friedman(), batch_size=32,
                 criterion=nn.MSELoss(), classify=False)


def _tiny_transformer(seed: int, lr: float) -> Problem:
    return _make("tiny-transformer", seed, lr, model_fn=models.TinyTransformer, optimizer="adamw",
                 tensors=data.reversal(), batch_size=64, criterion=models.SequenceCrossEntropy())


def _moons_mlp(seed: int, lr: float) -> Problem:
    return _make("moons-mlp", seed, lr,
                 model_fn=lambda: models.mlp([2, 64, 64, 64, 2], activation=nn.Tanh),
                 optimizer="sgd", tensors=data.classification("moons"), batch_size=32,
                 criterion=nn.CrossEntropyLoss())


def _wine_logreg(seed: int, lr: float) -> Problem:
    return _make("wine-logreg", seed, lr, model_fn=lambda: nn.Linear(13, 3), optimizer="sgd",
                 tensors=data.classification("wine"), batch_size=16,
                 criterion=nn.CrossEntropyLoss())


def _cancer_mlp(seed: int, lr: float) -> Problem:
    return _make("cancer-mlp", seed, lr,
                 model_fn=lambda: models.mlp([30, 32, 2], dropout=0.2),
                 optimizer="adam", tensors=data.classification("breast_cancer"), batch_size=16,
                 criterion=nn.CrossEntropyLoss())


def _logreg(seed: int, lr: float) -> Problem:
    return _make("logreg", seed, lr, model_fn=lambda: nn.Linear(20, 3), optimizer="sgd",
                 tensors=data.classification("linear"), batch_size=32,
                 criterion=nn.CrossEntropyLoss())


def _digits_gru(seed: int, lr: float) -> Problem:
    return _make("digits-gru", seed, lr, model_fn=models.RowGRU, optimizer="rmsprop",
                 tensors=data.classification("digits"), batch_size=32,
                 criterion=nn.CrossEntropyLoss())


def _friedman_deep_sgd(seed: int, lr: float) -> Problem:
    return _make("friedman-deep", seed, lr,
                 model_fn=lambda: models.mlp([10, 64, 64, 64, 64, 1], batch_norm=True),
                 optimizer="sgd-momentum", tensors=data.friedman(), batch_size=32,
                 criterion=nn.MSELoss(), classify=False)


def _hastie_mlp(seed: int, lr: float) -> Problem:
    return _make("hastie-mlp", seed, lr,
                 model_fn=lambda: models.mlp([10, 64, 64, 2], dropout=0.1),
                 optimizer="adam", tensors=data.classification("hastie"), batch_size=32,
                 criterion=nn.CrossEntropyLoss())


def _blobs_softmax(seed: int, lr: float) -> Problem:
    return _make("blobs-wide", seed, lr,
                 model_fn=lambda: models.mlp([40, 256, 6]),
                 optimizer="adamw", tensors=data.classification("blobs"), batch_size=64,
                 criterion=nn.CrossEntropyLoss())


EXAMPLES: dict[str, Example] = {e.name: e for e in [
    Example("digits-mlp", "MLP on scikit-learn's 8x8 digits, SGD with momentum and weight decay",
            "sgd-momentum",
            0.01, 400, _digits_mlp),
    Example("digits-cnn", "small CNN with BatchNorm and dropout on digits, SGD with momentum",
            "sgd-momentum", 0.01, 400, _digits_cnn),
    Example("regression-mlp", "tanh MLP on Friedman #1 regression (generated), Adam, MSE", "adam", 1e-3, 500,
            _regression_mlp),
    Example("tiny-transformer", "2-layer Transformer reversing noisy token sequences, AdamW", "adamw",
            1e-3, 400, _tiny_transformer),
    Example("moons-mlp", "deep tanh MLP on two moons, plain SGD", "sgd", 0.01, 400, _moons_mlp),
    Example("wine-logreg", "logistic regression on the wine data set, plain SGD (tiny, fast)",
            "sgd", 0.01, 400, _wine_logreg),
    Example("cancer-mlp", "MLP with dropout on breast-cancer data, Adam (tiny, fast)", "adam", 1e-3,
            400, _cancer_mlp),
    Example("logreg", "logistic regression on a noisy 3-class synthetic problem, plain SGD", "sgd",
            0.01, 400, _logreg),
    Example("digits-gru", "GRU reading digits row by row, RMSprop", "rmsprop", 0.01, 400,
            _digits_gru),
    Example("friedman-deep", "5-layer BatchNorm MLP on Friedman #1, SGD with momentum",
            "sgd-momentum", 0.01, 400, _friedman_deep_sgd),
    Example("hastie-mlp", "MLP with dropout on Hastie's 10-d binary problem, Adam", "adam", 1e-3,
            400, _hastie_mlp),
    Example("blobs-wide", "wide MLP on a 6-class synthetic problem, AdamW", "adamw", 1e-3, 400,
            _blobs_softmax),
]}


def names() -> list[str]:
    """Names of the built-in examples."""
    return list(EXAMPLES)


def get(name: str) -> Example:
    if not isinstance(name, str) or name not in EXAMPLES:  # a list or dict cannot even be looked up
        raise LrkitError(
            f"unknown example {name!r}; built-in examples: {', '.join(EXAMPLES)} "
            "(or give path/to/file.py:function)"
        )
    return EXAMPLES[name]


def build(name: str = DEFAULT, *, seed: int = 0, lr: float | None = None) -> Problem:
    """A fresh :class:`lrkit.Problem` for example ``name`` (model initialised from ``seed``, an
    integer from -2**63 to 2**64 - 1, as torch's generators take); ``lr`` (a finite number > 0)
    overrides the optimizer's untuned default rate. Torch's global generator is left alone, and
    dropout draws its masks from it: ``torch.manual_seed(seed)`` before the run repeats what
    ``lrkit find NAME --seed S`` does (the command line seeds torch's, numpy's and Python's
    generators before it builds)."""
    example = get(name)
    seed = plain_int(seed)  # numpy's integers and 0-dim integer tensors are seeds too
    require(isinstance(seed, int) and not isinstance(seed, bool) and -2 ** 63 <= seed < 2 ** 64,
            f"seed must be an integer from -2**63 to 2**64 - 1, got {seed!r}")
    if lr is not None:
        require(is_real(lr) and math.isfinite(lr) and lr > 0,
                f"lr must be a finite number > 0, got {lr!r}")
        lr = float(lr)
    problem = example.builder(seed, example.default_lr if lr is None else lr)
    problem.budget_steps = example.budget_steps
    return problem
