"""The Lightning adapter on real LightningModules (Lightning is a dev dependency)."""
from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch

import lrkit
from lrkit.adapters.lightning import find_lr, from_lightning
from lrkit.errors import LrkitError

torch.manual_seed(0)
X = torch.randn(256, 8)
Y = X @ torch.randn(8, 1) + 0.1 * torch.randn(256, 1)


def loader(shuffle: bool = True) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=32,
                                       shuffle=shuffle)


class Regressor(L.LightningModule):
    """Every common Lightning habit: hparams, self.log, a dict output, BatchNorm."""

    def __init__(self, lr: float = 1e-3, returns: str = "dict") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16),
                                       torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return {"loss": loss} if self.hparams.returns == "dict" else loss

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 10)]

    def train_dataloader(self):
        return loader()


def state(module: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_find_lr_on_a_module_restores_it_and_applies_the_suggestion():
    module = Regressor()
    before = state(module)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # self.log without a Trainer must not warn 100 times
        result = find_lr(module, update_attr=True, progress=False)
    assert result.suggested_lr is not None and 1e-4 < result.suggested_lr < 1.0
    assert module.hparams.lr == result.suggested_lr  # configure_optimizers will use it
    after = state(module)
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too
    assert module.training  # mode restored


def test_the_suggestion_trains_the_module_under_a_real_trainer():
    module = Regressor()
    result = find_lr(module, update_attr=True, progress=False)
    trainer = L.Trainer(max_steps=60, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module)
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(result.suggested_lr)
    module.eval()
    with torch.no_grad():
        loss = torch.nn.functional.mse_loss(module.net(X), Y).item()
    assert loss < 0.5 * Y.var().item()  # the suggested rate learns


def test_datamodule_is_prepared_and_set_up_and_a_plain_loss_is_accepted():
    calls = []

    class Data(L.LightningDataModule):
        def prepare_data(self):
            calls.append("prepare")

        def setup(self, stage):
            calls.append(stage)

        def train_dataloader(self):
            return loader()

    class NoData(Regressor):
        train_dataloader = L.LightningModule.train_dataloader

    problem = from_lightning(NoData(returns="tensor"), datamodule=Data(), budget_steps=200)
    assert calls == ["prepare", "fit"] and problem.budget_steps == 200
    assert problem.val_loader is None
    result = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                           loss_fn=problem.loss_fn, progress=False)
    assert result.suggested_lr is not None


def test_recommend_takes_a_lightning_problem():
    recipe = lrkit.recommend(from_lightning(Regressor()), steps=300)
    assert recipe.optimizer == "Adam" and recipe.peak_lr > 0
    optimizer, scheduler = recipe.build(Regressor().parameters())
    assert isinstance(optimizer, torch.optim.Adam)


def test_training_step_without_batch_idx_and_a_single_optimizer_in_a_list():
    class Short(Regressor):
        def training_step(self, batch):  # Lightning 2 allows dropping batch_idx
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return [torch.optim.SGD(self.parameters(), lr=0.01)]

    problem = from_lightning(Short(), loader())
    assert isinstance(problem.optimizer, torch.optim.SGD)
    assert problem.loss_fn(problem.model, next(iter(loader()))).ndim == 0


def test_update_attr_by_name_and_plain_attribute():
    class Attr(Regressor):
        def __init__(self):
            super().__init__()
            self.learning_rate = 0.5

    module = Attr()
    result = find_lr(module, update_attr="learning_rate", progress=False)
    assert module.learning_rate == result.suggested_lr
    # configure_optimizers reads hparams.lr, not learning_rate: the result says so
    assert any("does not read it" in w and "learning_rate" in w for w in result.warnings)
    plain = find_lr(Regressor(), update_attr=True, progress=False)
    assert not any("does not read it" in w for w in plain.warnings)


@pytest.mark.parametrize("case, message", [
    ("two_optimizers", "2 optimizers"),
    ("manual", "manual optimization"),
    ("no_data", "no training data"),
    ("needs_trainer", "pass optimizer="),
    ("plain_module", "not a LightningModule"),
    ("bad_attr", "no attribute or hyperparameter 'momentum_lr'"),
    ("no_lr_attr", "no 'lr' or 'learning_rate'"),
])
def test_bad_modules_get_clear_errors(case, message):
    class TwoOptimizers(Regressor):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.1), torch.optim.Adam(self.parameters())

    class Manual(Regressor):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

    class NoData(Regressor):
        train_dataloader = L.LightningModule.train_dataloader

    class NeedsTrainer(Regressor):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1.0 / self.trainer.max_steps)

    class Plain(torch.nn.Module):
        def training_step(self, batch, idx):
            return batch

    class NoLr(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(8, 1)

        def training_step(self, batch, idx):
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    make = {"two_optimizers": lambda: from_lightning(TwoOptimizers(), loader()),
            "manual": lambda: from_lightning(Manual(), loader()),
            "no_data": lambda: from_lightning(NoData()),
            "needs_trainer": lambda: from_lightning(NeedsTrainer()),
            "plain_module": lambda: from_lightning(Plain()),
            "bad_attr": lambda: find_lr(Regressor(), update_attr="momentum_lr", progress=False),
            "no_lr_attr": lambda: find_lr(NoLr(), loader(), update_attr=True, progress=False)}
    with pytest.raises(LrkitError, match=message):
        make[case]()


def test_training_step_that_reads_the_trainer_gets_a_clear_error():
    class ReadsTrainer(Regressor):
        def training_step(self, batch, batch_idx):
            scale = 1.0 / (1 + self.trainer.global_step)
            return scale * torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

    module = ReadsTrainer()
    before = state(module)
    with pytest.raises(LrkitError, match="reads self.trainer.*pass loss_fn="):
        find_lr(module, progress=False)
    after = state(module)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_monitor_callback_under_a_real_trainer(tmp_path):
    from lrkit.diagnose.lightning import MonitorCallback

    class WithVal(Regressor):
        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def val_dataloader(self):
            return loader(shuffle=False)

    class Recorded(WithVal):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            losses.append(out["loss"].item())
            return out

    losses = []
    callback = MonitorCallback(report_every=20, log_file=tmp_path / "lit.jsonl")
    trainer = L.Trainer(max_steps=48, val_check_interval=32, check_val_every_n_epoch=None,
                        accumulate_grad_batches=2,
                        callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Recorded(lr=0.01))
    monitor = callback.monitor
    assert monitor.step == 96  # one update per batch: 48 optimizer steps of 2 batches
    # each batch's own loss, not Lightning's share of it (loss / accumulate_grad_batches)
    assert [float(v) for v in monitor.losses] == pytest.approx(losses, rel=1e-6)
    assert monitor.lrs[0] == pytest.approx(0.01)
    assert len(monitor._val) == 3  # three validations after the sanity check, which is ignored
    assert callback.diagnosis is not None and callback.diagnosis.verdict in lrkit.diagnose.VERDICTS
    assert (tmp_path / "lit.jsonl").read_text().count('"event": "report"') >= 4
    # a second fit gets a monitor of its own: its own history, reports and lines in the file
    first = callback.monitor
    losses.clear()
    L.Trainer(max_steps=10, callbacks=[callback], logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False,
              limit_val_batches=0).fit(Recorded(lr=0.01))
    assert callback.monitor is not first and callback.monitor.step == 10
    assert callback.monitor.reports and callback.monitor.reports[-1][0] == 10
    from lrkit.diagnose.logs import read_log

    assert len(read_log(tmp_path / "lit.jsonl").losses) == 10  # the latest run


def test_monitor_callback_records_the_rate_each_batch_trained_at():
    from lrkit.diagnose.lightning import MonitorCallback

    class Warmup(Regressor):  # a per-step warmup: the rate moves after every optimizer step
        def training_step(self, batch, batch_idx):
            used.append(self.optimizers().param_groups[0]["lr"])
            return super().training_step(batch, batch_idx)

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
            warmup = torch.optim.lr_scheduler.LinearLR(optimizer, 0.1, total_iters=5)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": warmup, "interval": "step"}}

    used = []
    callback = MonitorCallback(report_every=100)
    L.Trainer(max_steps=8, callbacks=[callback], logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(Warmup())
    # (read at the batch's end it was the next step's: 0.028 where 0.01 trained)
    assert callback.monitor.lrs == pytest.approx(used) and used[0] == pytest.approx(0.01)


# -- what a review of the adapter found (each failed before its fix) ------------------------------
def test_update_attr_keeps_per_group_ratios_set_in_configure_optimizers():
    class FineTune(Regressor):
        def configure_optimizers(self):  # the backbone at a tenth of the head's rate
            return torch.optim.SGD([
                {"params": self.net[:3].parameters(), "lr": self.hparams.lr * 0.1},
                {"params": self.net[3:].parameters()}], lr=self.hparams.lr, momentum=0.9)

    module = FineTune(lr=0.01)
    result = find_lr(module, update_attr=True, progress=False)
    rates = [g["lr"] for g in module.configure_optimizers().param_groups]
    assert rates == pytest.approx(result.suggested_lrs)  # each group its own suggestion
    assert module.hparams.lr == pytest.approx(result.suggested_lrs[1])


@pytest.mark.parametrize("schedule", ["warmup", "onecycle"])
def test_update_attr_sets_the_suggestion_under_a_warmup_or_one_cycle_scheduler(schedule):
    # the scheduler scales the groups' rates as configure_optimizers builds it (a LinearLR
    # warmup to 0.1x, OneCycleLR to max_lr / 25): the attribute was set to 10x and 25x the
    # suggestion; it is the rate the schedule is scaled from (its base, or OneCycle's peak)
    class Scheduled(Regressor):
        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
            if schedule == "warmup":
                scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1,
                                                              total_iters=20)
            else:
                scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.hparams.lr,
                                                                total_steps=100)
            return [optimizer], [{"scheduler": scheduler, "interval": "step"}]

    module = Scheduled(lr=0.01)
    result = find_lr(module, update_attr=True, progress=False, num_steps=60)
    assert result.suggested_lr is not None
    assert module.hparams.lr == pytest.approx(result.suggested_lr)
    group = module.configure_optimizers()[0][0].param_groups[0]
    reached = group["max_lr"] if schedule == "onecycle" else group["initial_lr"]
    assert reached == pytest.approx(result.suggested_lr)


def test_several_train_loaders_are_combined_as_lightning_does():
    seen = []

    class TwoSources(Regressor):
        def training_step(self, batch, batch_idx):
            seen.append(type(batch).__name__)
            (xa, ya), (xb, yb) = batch["a"], batch["b"]
            return torch.nn.functional.mse_loss(self.net(torch.cat([xa, xb])), torch.cat([ya, yb]))

    result = find_lr(TwoSources(), {"a": loader(), "b": loader()}, progress=False, num_steps=30)
    assert result.suggested_lr is not None and set(seen) == {"dict"}
    as_list = from_lightning(Regressor(), [loader(), loader()])
    assert isinstance(next(iter(as_list.train_loader)), list)


def test_the_modules_own_setup_and_batch_hooks_run():
    class Lazy(Regressor):
        def setup(self, stage):
            self.train_set = torch.utils.data.TensorDataset(X, Y)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(self.train_set, batch_size=32)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            x, y = batch
            return x, y, torch.ones(len(x))  # a weight column, as a user's hook might add

        def training_step(self, batch, batch_idx):
            x, y, w = batch
            return (w * (self.net(x) - y).squeeze(1) ** 2).mean()

    assert find_lr(Lazy(), progress=False).suggested_lr is not None


def test_torchmetrics_states_updated_by_training_step_are_restored():
    import torchmetrics

    class WithMetric(Regressor):
        def __init__(self):
            super().__init__()
            self.train_mse = torchmetrics.MeanSquaredError()

        def training_step(self, batch, batch_idx):
            x, y = batch
            prediction = self.net(x)
            self.train_mse(prediction, y)
            return torch.nn.functional.mse_loss(prediction, y)

    module = WithMetric()
    find_lr(module, progress=False)
    assert int(module.train_mse.total) == 0 and module.train_mse._update_count == 0


def test_training_step_returning_none_gets_a_clear_error():
    class Skips(Regressor):
        def training_step(self, batch, batch_idx):
            return None if batch_idx == 3 else super().training_step(batch, batch_idx)

    with pytest.raises(LrkitError, match="returned None for batch 3.*pass loss_fn="):
        find_lr(Skips(), progress=False)


def test_validation_data_is_fetched_only_when_asked_for_and_named_right():
    class ValNeedsTrainer(Regressor):
        def val_dataloader(self):
            return loader() if self.trainer.max_steps else None

    assert find_lr(ValNeedsTrainer(), progress=False).suggested_lr is not None
    with pytest.raises(LrkitError, match="val_every needs validation data.*val_dataloaders="):
        find_lr(Regressor(), val_every=5, progress=False)
    with pytest.raises(LrkitError, match="val_dataloaders="):
        find_lr(Regressor(), val_loader=loader(), val_every=5, progress=False)
    result = find_lr(Regressor(), val_dataloaders=loader(False), val_every=10, progress=False)
    assert len(result.val_losses) >= 5


def test_find_lr_again_after_trainer_fit_skips_self_log():
    """After fit the module keeps its spent Trainer, whose self.log raises ("result collection
    is not registered"); the range test runs without it, as before fit, and gives it back."""
    module = Regressor()
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module)
    result = find_lr(module, progress=False)
    assert result.suggested_lr is not None
    assert module.trainer is trainer


@pytest.mark.parametrize("error", [RuntimeError("out of memory"), KeyboardInterrupt()])
def test_monitor_callback_reports_when_the_fit_is_stopped(tmp_path, error):
    # without on_exception the monitor stayed open: no final report, and the log lacked every
    # step since the last report (all of them with report_every=0)
    from lrkit.diagnose.lightning import MonitorCallback

    class Failing(Regressor):
        def training_step(self, batch, batch_idx):
            if self.global_step == 30:
                raise error
            return super().training_step(batch, batch_idx)

    callback = MonitorCallback(report_every=0, log_file=tmp_path / "lit.jsonl")
    trainer = L.Trainer(max_steps=100, callbacks=[callback], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    with pytest.raises(BaseException):
        trainer.fit(Failing(lr=0.01))
    assert callback.monitor.closed and callback.diagnosis is not None
    from lrkit.diagnose.logs import read_log

    assert len(read_log(tmp_path / "lit.jsonl").losses) == 30


class _TwoGroups(L.LightningModule):
    """A backbone at lr / 10 and a head at lr, optionally behind a warmup from 0."""

    def __init__(self, warmup: bool) -> None:
        super().__init__()
        self.lr, self.warmup = 1e-3, warmup
        self.backbone, self.head = torch.nn.Linear(8, 16), torch.nn.Linear(16, 1)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.head(torch.relu(self.backbone(batch[0]))),
                                            batch[1])

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW([{"params": self.backbone.parameters(), "lr": self.lr / 10},
                                       {"params": self.head.parameters(), "lr": self.lr}])
        if not self.warmup:
            return optimizer
        warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, step / 10))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}


def test_a_warmup_from_zero_keeps_the_groups_ratio_and_update_attr_their_rates():
    # the warmup's constructor set every rate to 0: the test ran both groups at one rate
    # (suggested_lrs [0.035, 0.035]) and update_attr gave the head 3x its suggestion
    results = {}
    for warmup in (False, True):
        torch.manual_seed(0)
        module = _TwoGroups(warmup)
        result = find_lr(module, loader(), num_steps=50, progress=False, update_attr=True)
        results[warmup] = (result.suggested_lrs, module.lr)
    (plain, plain_attr), (warmed, warmed_attr) = results[False], results[True]
    assert warmed == pytest.approx(plain) and warmed[1] == pytest.approx(10 * warmed[0])
    assert warmed_attr == pytest.approx(plain_attr)


def test_combined_train_loaders_have_a_length_before_they_are_iterated():
    # len() raised Lightning's "Please call iter(combined_loader) first" inside recommend(epochs=)
    from lrkit.adapters.lightning import from_lightning

    problem = from_lightning(Regressor(), [loader(), loader()])
    assert len(problem.train_loader) == 8
