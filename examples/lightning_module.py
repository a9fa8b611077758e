"""A PyTorch Lightning module tuned by lrkit without rewriting it.

    python examples/lightning_module.py --steps 300      # find the rate, then train with it
    lrkit find examples/lightning_module.py:setup        # the same module from the command line

``find_lr(module, update_attr=True)`` runs lrkit's range test on the module's own
``training_step`` and ``configure_optimizers`` and writes the suggestion to ``hparams.lr``, so
that ``trainer.fit`` trains with it. Needs ``pip install lrkit[lightning]``.
"""
from __future__ import annotations

import argparse

import lightning as L
import torch
from sklearn.datasets import load_digits

from lrkit.adapters.lightning import find_lr, from_lightning


class DigitsData(L.LightningDataModule):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def setup(self, stage: str) -> None:
        x, y = load_digits(return_X_y=True)
        data = torch.utils.data.TensorDataset(torch.tensor(x / 16.0, dtype=torch.float32),
                                              torch.tensor(y))
        generator = torch.Generator().manual_seed(0)
        self.train, self.val = torch.utils.data.random_split(data, [1437, 360], generator)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.train, batch_size=32, shuffle=True,
                                           generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.val, batch_size=360)


class DigitsClassifier(L.LightningModule):
    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                       torch.nn.Linear(128, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def setup(seed: int = 0):
    """For the command line: the module as an lrkit.Problem."""
    torch.manual_seed(seed)
    return from_lightning(DigitsClassifier(), datamodule=DigitsData(seed), budget_steps=450)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=450)
    args = parser.parse_args()
    torch.manual_seed(0)
    module, data = DigitsClassifier(), DigitsData()
    result = find_lr(module, datamodule=data, update_attr=True, budget_steps=args.steps,
                     progress=False)
    print(result)
    trainer = L.Trainer(max_steps=args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    metrics = trainer.validate(module, datamodule=data, verbose=False)[0]
    print(f"trained {args.steps} steps at lr {module.hparams.lr:.3g}: "
          f"val_loss {metrics['val_loss']:.4f}, val_acc {metrics['val_acc']:.3f}")


if __name__ == "__main__":
    main()
