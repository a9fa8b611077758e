"""The Monitor as a PyTorch Lightning callback (Lightning is an optional extra).

Importing this module does not import Lightning; asking for ``MonitorCallback`` does::

    from lrkit.diagnose.lightning import MonitorCallback
    trainer = lightning.Trainer(callbacks=[MonitorCallback(report_every=200, log_file="lr.jsonl")])

Without Lightning installed that raises :class:`lrkit.LrkitError` naming ``pip install
lrkit[lightning]``. The callback records the training loss of each batch (kept on its device until
a report is due), the first optimizer's rate as the batch started (what it trained at: a
per-step scheduler has stepped by its end), and ``val_loss`` from the trainer's callback metrics
after each validation, and reports at the end of training. Under gradient accumulation it records
each batch's own loss (Lightning's ``outputs`` hold it divided by ``accumulate_grad_batches``).
"""
from __future__ import annotations

import importlib
import warnings
from typing import Any

from lrkit.diagnose.monitor import MonitorRuns
from lrkit.errors import LrkitError


def _lightning_callback_base() -> type:
    for module_name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(module_name).Callback
        except ImportError:
            continue
    raise LrkitError(
        "the Lightning callback needs PyTorch Lightning, which is not installed: "
        "pip install lrkit[lightning] (or pip install lightning); the plain lrkit.Monitor works "
        "in any training loop without it"
    )


class MonitorHooks(MonitorRuns):
    """The callback's behaviour, independent of the Lightning base class."""

    def __init__(self, *, val_key: str = "val_loss", **monitor_options: Any) -> None:
        super().__init__(val_key=val_key, **monitor_options)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # each fit() gets a Monitor of its own; under DDP only rank zero writes and logs
        self._start_run(_main(trainer))
        self._batch_lr: float | None = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        # the rate this batch trains at: at its end a per-step scheduler has moved on already
        self._batch_lr = self._lr(trainer)

    @staticmethod
    def _loss(outputs: Any) -> Any:
        if isinstance(outputs, dict):
            return outputs.get("loss")
        return outputs

    @staticmethod
    def _lr(trainer: Any) -> float | None:
        optimizers = getattr(trainer, "optimizers", None) or []
        if not optimizers:
            return None
        groups = getattr(optimizers[0], "param_groups", None) or []
        if not groups:
            return None
        lr = groups[0].get("lr")
        return None if lr is None else float(lr)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = self._loss(outputs)
        if loss is None:
            # (under automatic optimization a None skips the batch on purpose: no warning)
            if not getattr(pl_module, "automatic_optimization", True) and not getattr(
                    self, "_warned_no_loss", False):
                # manual optimization whose training_step returns nothing: no step recorded,
                # and the final "not enough data, call monitor.update(loss)" left the user lost
                self._warned_no_loss = True
                warnings.warn("MonitorCallback: training_step returned no loss, so nothing is "
                              "recorded; return the loss from training_step (with manual "
                              "optimization too: return loss.detach())", UserWarning,
                              stacklevel=2)
            return
        # with automatic optimization Lightning hands over the loss divided by the number of
        # accumulated batches (the share it backpropagates): the batch's own loss is recorded
        scale = getattr(trainer, "accumulate_grad_batches", 1) or 1
        if scale != 1 and getattr(pl_module, "automatic_optimization", True):
            loss = loss * scale
        lr = getattr(self, "_batch_lr", None)
        self._current(_main(trainer)).update(loss, lr=lr if lr is not None else self._lr(trainer))

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        # (not on_validation_epoch_end: Lightning runs the callbacks' before the module's own,
        # where Lightning 2 modules log val_loss, and each value was recorded one validation
        # late, the last one lost)
        if getattr(trainer, "sanity_checking", False):
            return
        metrics = getattr(trainer, "callback_metrics", {}) or {}
        value = metrics.get(self.val_key)
        if value is None:
            # several validation loaders: Lightning names the first one's value
            # "val_loss/dataloader_idx_0" (nothing was recorded)
            value = metrics.get(f"{self.val_key}/dataloader_idx_0")
        if value is not None:
            monitor = self._current(_main(trainer))
            monitor.update_val(value, step=monitor.step)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._end_run()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        # a fit stopped by Ctrl-C or an error: the final report, and the steps since the last
        # one written to the log (the moment a user most wants the diagnosis)
        self._end_run()


def _main(trainer: Any) -> bool:
    """Whether this is the main process (rank zero), which alone writes the log and logs."""
    return bool(getattr(trainer, "is_global_zero", True))


_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    global _CLASS
    if name == "MonitorCallback":
        if _CLASS is None:
            base = _lightning_callback_base()
            _CLASS = type("MonitorCallback", (MonitorHooks, base), {
                "__doc__": "lrkit's Monitor as a Lightning callback "
                           "(see lrkit.diagnose.lightning).",
                "__module__": __name__,
            })
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
