"""What a review of the Lightning adapter found (each failed before its fix): batch hooks as
Trainer.fit runs them, CombinedLoaders, several validation loaders, a frozen first group."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn

from lrkit.adapters.lightning import find_lr, from_lightning

torch.manual_seed(0)
X = torch.randn(256, 8)
Y = X @ torch.randn(8, 1)
QUICK = dict(num_steps=20, progress=False, noise_batches=0)


def loader(start: int = 0) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X[start:], Y[start:]),
                                       batch_size=32)


class Linear(L.LightningModule):
    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(8, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    def train_dataloader(self):
        return loader()


def test_update_attr_with_a_frozen_first_group_gives_every_trained_group_its_suggestion():
    """Groups [stem at 0, backbone at lr/10, head at lr]: the attribute was scaled from the
    backbone's suggestion, and fit ran the head ten times below its own."""
    class Frozen(Linear):
        def __init__(self, lr: float = 1e-3) -> None:
            super().__init__(lr)
            self.stem, self.backbone, self.head = nn.Linear(8, 8), nn.Linear(8, 16), nn.Linear(16, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.mse_loss(self.head(torch.relu(self.backbone(self.stem(x)))), y)

        def train_dataloader(self):  # (batches of 128: a clear curve, whatever the seed)
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y),
                                               batch_size=128, shuffle=True)

        def configure_optimizers(self):
            lr = self.hparams.lr
            return torch.optim.SGD([{"params": self.stem.parameters(), "lr": 0.0},
                                    {"params": self.backbone.parameters(), "lr": lr / 10},
                                    {"params": self.head.parameters(), "lr": lr}])

    torch.manual_seed(0)  # (the curve, whatever ran before)
    module = Frozen()
    result = find_lr(module, update_attr=True, progress=False)
    assert result.suggested_lrs[2] > 0
    rates = [group["lr"] for group in module.configure_optimizers().param_groups]
    assert rates == pytest.approx(result.suggested_lrs, rel=1e-9)
    assert rates[0] == 0.0


def test_the_batch_hooks_run_around_the_device_transfer_and_a_datamodules_own_win():
    """Trainer.fit calls before -> transfer_batch_to_device -> after, each the datamodule's where
    it overrides it. The datamodule's were never called (training_step got the raw dict batch),
    the module's ran after lrkit's own move, and transfer_batch_to_device not at all."""
    events: list[str] = []

    class Dicts(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            return {"x": X[i], "y": Y[i]}

    class Data(L.LightningDataModule):
        def train_dataloader(self):
            return torch.utils.data.DataLoader(Dicts(), batch_size=16)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            events.append("datamodule after")
            return batch["x"], batch["y"]

    class Hooked(Linear):
        def on_before_batch_transfer(self, batch, dataloader_idx):
            events.append("module before")
            return batch

        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            events.append("module transfer")
            return super().transfer_batch_to_device(batch, device, dataloader_idx)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            events.append("module after")  # the datamodule's wins: never called
            return batch

    result = find_lr(Hooked(), datamodule=Data(), **QUICK)
    assert result.steps == 20
    assert events[:3] == ["module before", "module transfer", "datamodule after"]
    assert "module after" not in events


def test_a_combined_loader_of_the_users_own_gives_training_step_the_batch():
    """Iterating a CombinedLoader yields (batch, batch_idx, dataloader_idx); the triple reached
    training_step, which fit gives the dict of batches."""
    seen: list[type] = []

    class Two(Linear):
        def training_step(self, batch, batch_idx):
            seen.append(type(batch))
            return sum(nn.functional.mse_loss(self.net(x), y) for x, y in batch.values())

        def train_dataloader(self):
            return CombinedLoader({"a": loader(), "b": loader(128)}, "max_size_cycle")

    problem = from_lightning(Two())
    assert len(problem.train_loader) == 8  # the longer loader's, as max_size_cycle runs
    assert find_lr(Two(), **QUICK).steps == 20
    assert set(seen) == {dict}


def test_several_validation_loaders_run_one_after_another():
    """Validation loaders were combined like training ones, each "batch" a list of two."""
    class TwoSets(Linear):
        def val_dataloader(self):
            return [loader(0), loader(192)]

    problem = from_lightning(TwoSets())
    batches = list(problem.val_loader)
    assert len(batches) == 8 + 2 == len(problem.val_loader)
    assert all(isinstance(b, (list, tuple)) and b[0].shape[1] == 8 for b in batches)
    result = find_lr(TwoSets(), val_every=2, num_steps=30, progress=False, noise_batches=0)
    assert result.settings["curve"] == "validation"


def test_a_loader_inside_lightnings_combination_is_put_back_too():
    """A loader that keeps its place, given as [loader], was left where the test took it."""
    import lrkit

    loader = lrkit.examples.build("digits-mlp", seed=0).train_loader

    class Digits(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Linear(64, 10)

        def training_step(self, batch, batch_idx):
            (x, y), = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    module = Digits()
    first = find_lr(module, [loader], **QUICK)
    second = find_lr(module, [loader], **QUICK)
    assert first.losses == second.losses and loader.state_dict() == {"pass": 0}


def test_recommend_puts_back_a_modules_torchmetrics_states():
    """The adapter's find_lr put them back, recommend on from_lightning's problem did not: the
    short runs' predictions stayed in a list state (94 of them) and leaked into the next
    epoch."""
    import torchmetrics

    import lrkit

    class Scored(Linear):
        def __init__(self):
            super().__init__()
            self.auroc = torchmetrics.classification.BinaryAUROC()

        def training_step(self, batch, batch_idx):
            x, y = batch
            out = self.net(x)
            self.auroc.update(torch.sigmoid(out.squeeze(1)), (y.squeeze(1) > 0).long())
            return nn.functional.mse_loss(out, y)

    torch.manual_seed(0)
    module = Scored()
    lrkit.recommend(from_lightning(module), steps=200, progress=False)
    assert len(module.auroc.preds) == 0 and module.auroc._update_count == 0
