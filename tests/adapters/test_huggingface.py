"""The Hugging Face adapter on a real transformers.Trainer (a tiny BERT made from a config: nothing
is downloaded; transformers and accelerate are dev dependencies)."""
from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from lrkit.adapters.huggingface import MonitorCallback, find_lr, from_trainer
from lrkit.errors import LrkitError


class Tokens(torch.utils.data.Dataset):
    """Dict examples, as a tokenised dataset gives them; the label is whether token 0 > 32."""

    def __init__(self, n: int = 256, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 64, (n, 12), generator=generator)
        self.labels = (self.ids[:, 0] > 32).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long),
                "labels": self.labels[i]}


def make_trainer(tmp_path, *, callbacks=(), **arguments) -> Trainer:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=2)
    options = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=16,
                   learning_rate=5e-5, report_to=[], use_cpu=True, save_strategy="no",
                   disable_tqdm=True, logging_steps=4, num_train_epochs=2)
    options.update(arguments)
    return Trainer(model=BertForSequenceClassification(config), args=TrainingArguments(**options),
                   train_dataset=Tokens(), eval_dataset=Tokens(64, seed=1),
                   callbacks=list(callbacks))


def state(model: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_find_lr_restores_the_trainer_and_train_uses_the_suggestion(tmp_path):
    trainer = make_trainer(tmp_path)
    before = state(trainer.model)
    result = find_lr(trainer, update_args=True, progress=False)
    assert result.suggested_lr is not None and 1e-4 < result.suggested_lr < 1.0
    assert len(result.suggested_lrs) == 2  # the Trainer's weight-decay groups, ratios kept
    after = state(trainer.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert trainer.optimizer is None and trainer.lr_scheduler is None  # nothing stale left
    assert trainer.args.learning_rate == result.suggested_lr
    assert result.settings["budget_steps"] == 32  # 16 batches x 2 epochs
    trainer.train()
    assert trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(result.suggested_lr)
    assert trainer.evaluate()["eval_loss"] < 0.3  # the suggested rate learns the rule


def test_accumulation_clipping_and_max_steps_come_from_the_arguments(tmp_path):
    trainer = make_trainer(tmp_path, gradient_accumulation_steps=2, max_grad_norm=0.5,
                           max_steps=40)
    result = find_lr(trainer, num_steps=30, progress=False)
    assert result.settings["budget_steps"] == 40
    assert result.settings["accumulation_steps"] == 2 and result.settings["max_grad_norm"] == 0.5
    problem = from_trainer(trainer)
    assert problem.val_loader is not None and problem.budget_steps == 40


def test_an_optimizer_given_to_the_trainer_is_the_one_tuned_and_restored(tmp_path):
    trainer = make_trainer(tmp_path)
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.1, momentum=0.9)
    trainer.optimizer = optimizer  # as Trainer(optimizers=(optimizer, None)) stores it
    before = state(trainer.model)
    result = find_lr(trainer, progress=False)
    assert trainer.optimizer is optimizer and optimizer.param_groups[0]["lr"] == 0.1
    assert optimizer.state_dict()["state"] == {}  # no momentum left over from the test
    assert result.suggested_lr is not None and len(result.suggested_lrs) == 1
    assert all(torch.equal(v, state(trainer.model)[k]) for k, v in before.items())


def test_monitor_callback_under_trainer_train(tmp_path):
    callback = MonitorCallback(report_every=0)
    trainer = make_trainer(tmp_path, callbacks=[callback], learning_rate=3e-3,
                           eval_strategy="steps", eval_steps=8)
    trainer.train()
    monitor = callback.monitor
    assert monitor.step == 8  # 32 steps, a logged mean loss every 4
    assert monitor.lrs[0] == pytest.approx(trainer.state.log_history[0]["learning_rate"])
    assert [v for _, v in monitor._val] == pytest.approx(
        [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h])
    assert callback.diagnosis is not None and monitor.closed


def test_bad_inputs_get_clear_errors(tmp_path):
    with pytest.raises(LrkitError, match="needs a transformers.Trainer"):
        from_trainer(torch.nn.Linear(2, 2))
    trainer = make_trainer(tmp_path)
    trainer.train_dataset = None
    with pytest.raises(LrkitError, match="no train_dataset"):
        find_lr(trainer, progress=False)
