"""The Lightning callback: lazy import, clear error without Lightning, hooks with stand-ins."""
import subprocess
import sys
import types

import pytest
import torch

from lrkit.errors import LrkitError


def test_importing_the_module_does_not_import_lightning():
    code = ("import sys, lrkit.diagnose.lightning; "
            "print('lightning' in sys.modules or 'pytorch_lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_lightning_the_callback_names_the_extra(monkeypatch):
    import lrkit.diagnose.lightning as module

    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)
    monkeypatch.setattr(module, "_CLASS", None)
    with pytest.raises(LrkitError, match=r"pip install lrkit\[lightning\]"):
        module.MonitorCallback  # noqa: B018
    with pytest.raises(LrkitError, match=r"pip install lrkit\[lightning\]"):
        from lrkit.diagnose.lightning import MonitorCallback  # noqa: F401


class _Callback:  # what lightning.pytorch.Callback looks like to a subclass
    pass


class _Trainer:
    def __init__(self, lr):
        self.optimizers = [types.SimpleNamespace(param_groups=[{"lr": lr}])]
        self.callback_metrics = {}
        self.sanity_checking = False


def test_hooks_with_stand_in_trainer_and_module(monkeypatch, tmp_path):
    import lrkit.diagnose.lightning as module

    fake = types.ModuleType("lightning.pytorch")
    fake.Callback = _Callback
    monkeypatch.setitem(sys.modules, "lightning", types.ModuleType("lightning"))
    monkeypatch.setitem(sys.modules, "lightning.pytorch", fake)
    monkeypatch.setattr(module, "_CLASS", None)
    cls = module.MonitorCallback
    assert issubclass(cls, _Callback) and cls.__name__ == "MonitorCallback"
    callback = cls(report_every=50, log_file=tmp_path / "lit.jsonl")
    trainer, pl_module = _Trainer(0.001), object()
    for step in range(120):
        loss = torch.tensor(2.3 - 0.004 * step)
        outputs = {"loss": loss} if step % 2 else loss
        callback.on_train_batch_end(trainer, pl_module, outputs, None, step)
        if (step + 1) % 40 == 0:
            trainer.callback_metrics = {"val_loss": torch.tensor(2.3 - 0.0035 * step)}
            callback.on_validation_end(trainer, pl_module)
    trainer.sanity_checking = True
    callback.on_validation_end(trainer, pl_module)  # ignored
    callback.on_train_batch_end(trainer, pl_module, {"no_loss": 1}, None, 0)  # ignored
    callback.on_train_end(trainer, pl_module)
    monitor = callback.monitor
    assert monitor.step == 120 and monitor.lrs == [0.001] * 120
    assert [s for s, _ in monitor._val] == [40, 80, 120]
    assert callback.diagnosis.verdict == "too_slow"
    assert callback.diagnosis.suggested_lr == pytest.approx(0.001 * callback.diagnosis.lr_factor)
    assert (tmp_path / "lit.jsonl").read_text().count('"event": "report"') == 3
