"""Small data sets made in code or shipped with scikit-learn: nothing is downloaded."""
from __future__ import annotations

import functools
from typing import Iterator

import numpy as np
import torch


class ShuffledBatches:
    """A re-iterable, deterministic mini-batch loader over in-memory tensors.

    Each pass draws a fresh permutation from ``seed`` and the pass number, so two loaders with
    the same seed yield the same batches; it is much cheaper per batch than a ``DataLoader`` over
    a ``TensorDataset`` on tiny models, which keeps the examples fast.
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self._pass = 0

    def state_dict(self) -> dict:
        """Its place (the passes begun), which a range test saves and puts back."""
        return {"pass": self._pass}

    def load_state_dict(self, state: dict) -> None:
        self._pass = int(state["pass"])

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        if self.shuffle:
            # modulo 2**64, as torch reads a negative seed: any integer seed works
            gen = torch.Generator().manual_seed((self.seed * 100_003 + self._pass) % 2 ** 64)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        self._pass += 1
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield tuple(t[idx] for t in self.tensors)


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float = 0.2, seed: int = 0):
    order = np.random.RandomState(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def _standardise(train: np.ndarray, *others: np.ndarray):
    mean, std = train.mean(0), train.std(0) + 1e-8
    return [(a - mean) / std for a in (train, *others)]


def _as_tensors(x_train, y_train, x_val, y_val, y_dtype):
    f = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    g = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=y_dtype)  # noqa: E731
    return f(x_train), g(y_train), f(x_val), g(y_val)


@functools.lru_cache(maxsize=None)
def classification(name: str):
    """(x_train, y_train, x_val, y_val) of a bundled scikit-learn classification set, standardised."""
    from sklearn import datasets

    # generated sets are large enough that a training budget stays within a few epochs: the best
    # rate is then decided by optimisation, not by how fast a tiny data set is memorised
    if name == "digits":
        x, y = datasets.load_digits(return_X_y=True)
    elif name == "wine":
        x, y = datasets.load_wine(return_X_y=True)
    elif name == "breast_cancer":
        x, y = datasets.load_breast_cancer(return_X_y=True)
    elif name == "moons":
        x, y = datasets.make_moons(n_samples=20000, noise=0.3, random_state=0)
    elif name == "linear":
        x, y = datasets.make_classification(
            n_samples=20000, n_features=20, n_informative=10, n_classes=3, flip_y=0.1,
            random_state=0)
    elif name == "hastie":
        x, y = datasets.make_hastie_10_2(n_samples=20000, random_state=0)
        y = (y > 0).astype(np.int64)
    elif name == "blobs":
        x, y = datasets.make_classification(
            n_samples=40000, n_features=40, n_informative=20, n_classes=6,
            n_clusters_per_class=2, class_sep=1.0, flip_y=0.05, random_state=0)
    else:  # pragma: no cover - guarded by the registry
        raise KeyError(name)
    x_tr, y_tr, x_va, y_va = _split(x.astype(np.float64), y)
    x_tr, x_va = _standardise(x_tr, x_va)
    return _as_tensors(x_tr, y_tr, x_va, y_va, torch.long)


@functools.lru_cache(maxsize=None)
def friedman(n_samples: int = 20000, noise: float = 1.0):
    """Friedman #1 non-linear regression (generated), inputs and target standardised."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=n_samples, n_features=10, noise=noise, random_state=0)
    x_tr, y_tr, x_va, y_va = _split(x, y[:, None])
    x_tr, x_va = _standardise(x_tr, x_va)
    y_tr, y_va = _standardise(y_tr, y_va)
    return _as_tensors(x_tr, y_tr, x_va, y_va, torch.float32)


@functools.lru_cache(maxsize=None)
def reversal(n_train: int = 20000, n_val: int = 2000, length: int = 12, vocab: int = 10,
             noise: float = 0.1):
    """Sequence-to-sequence toy task: output the input sequence reversed (needs attention), with
    a share ``noise`` of target tokens replaced at random, so the loss has a floor above zero."""
    rng = np.random.RandomState(0)
    x = rng.randint(0, vocab, size=(n_train + n_val, length))
    y = x[:, ::-1].copy()
    flip = rng.rand(*y.shape) < noise
    y[flip] = rng.randint(0, vocab, size=int(flip.sum()))
    as_long = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    return as_long(x[:n_train]), as_long(y[:n_train]), as_long(x[n_train:]), as_long(y[n_train:])
