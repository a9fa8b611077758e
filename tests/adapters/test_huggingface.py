"""The Hugging Face adapter on a real transformers.Trainer (a tiny BERT made from a config: nothing
is downloaded; transformers and accelerate are dev dependencies)."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import lrkit
from lrkit.adapters.huggingface import MonitorCallback, find_lr, from_trainer
from lrkit.errors import LrkitError


class Tokens(torch.utils.data.Dataset):
    """Dict examples, as a tokenised dataset gives them; the label is whether token 0 is above
    half the vocabulary."""

    def __init__(self, n: int = 256, seed: int = 0, *, vocab: int = 64, length: int = 12) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, vocab, (n, length), generator=generator)
        self.labels = (self.ids[:, 0] > vocab // 2).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]),
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


# -- what a review of the adapter found (each failed before its fix) ------------------------------
def _grads(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def accumulated_gradients(trainer: Trainer, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of one optimizer step over ``steps`` batches (dropout off), as lrkit's
    trainable takes it and as ``Trainer.training_step`` makes it: (ours, theirs)."""
    from lrkit.adapters.torch import TorchTrainable

    for module in trainer.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    loader = torch.utils.data.DataLoader(trainer.train_dataset, batch_size=16,
                                         collate_fn=trainer.data_collator)
    batches = [batch for _, batch in zip(range(steps), loader)]
    trainer.model.train()
    trainer.model.zero_grad()
    items = trainer._get_num_items_in_batch(batches, trainer.args.device)
    trainer.current_gradient_accumulation_steps = steps
    for batch in batches:  # what Trainer.train() backpropagates for one optimizer step
        trainer.training_step(trainer.model, dict(batch), items)
    theirs = _grads(trainer.model).clone()
    trainer.model.zero_grad()
    problem = from_trainer(trainer)
    trainable = TorchTrainable(trainer.model, problem.optimizer, batches,
                               loss_fn=problem.loss_fn, accumulation_steps=steps)
    trainable._batches = iter(batches)
    for _ in range(steps):
        trainable._micro_step()
    return _grads(trainer.model), theirs


class Words(torch.utils.data.Dataset):
    """Language-model examples with padding (-100 labels), so items per batch vary."""

    def __init__(self, n: int = 64) -> None:
        self.ids = torch.randint(0, 64, (n, 12), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        labels = self.ids[i].clone()
        labels[8 + i % 4:] = -100
        return {"input_ids": self.ids[i], "labels": labels}


@pytest.mark.parametrize("kind", ["classifier", "language-model"])
def test_under_accumulation_the_gradient_is_the_one_trainer_training_step_makes(tmp_path, kind):
    from transformers import GPT2Config, GPT2LMHeadModel

    trainer = make_trainer(tmp_path, gradient_accumulation_steps=4)
    if kind == "language-model":
        torch.manual_seed(0)
        trainer = Trainer(model=GPT2LMHeadModel(GPT2Config(
            vocab_size=64, n_embd=32, n_layer=1, n_head=2, n_positions=16)),
            args=trainer.args, train_dataset=Words())
    ours, theirs = accumulated_gradients(trainer, 4)
    # equal for same-size batches; the language model's batches differ by a few padded tokens
    assert torch.allclose(ours, theirs, rtol=0.1 if kind == "language-model" else 1e-4,
                          atol=1e-6)
    assert ours.norm() / theirs.norm() == pytest.approx(1.0, rel=0.02)


def test_update_args_reaches_every_place_train_reads_its_rate_from(tmp_path):
    class Discriminative(Trainer):  # the backbone at a tenth of the head's rate
        def create_optimizer(self, model=None):
            if self.optimizer is None:
                head = [p for n, p in self.model.named_parameters() if n.startswith("classifier")]
                body = [p for n, p in self.model.named_parameters()
                        if not n.startswith("classifier")]
                lr = self.args.learning_rate
                self.optimizer = torch.optim.AdamW([{"params": body, "lr": lr / 10},
                                                    {"params": head, "lr": lr}])
            return self.optimizer

    base = make_trainer(tmp_path, max_steps=4)
    trainer = Discriminative(model=base.model, args=base.args, train_dataset=Tokens())
    result = find_lr(trainer, update_args=True, num_steps=40, progress=False)
    trainer.train()
    rates = [g["initial_lr"] for g in trainer.optimizer.param_groups]
    assert rates == pytest.approx(result.suggested_lrs)  # each group its own suggestion
    # a search without update_args puts the spent rates (0 at the schedule's end) back as they were
    spent = [g["lr"] for g in trainer.optimizer.param_groups]
    assert spent == [0.0, 0.0]
    find_lr(trainer, num_steps=20, progress=False)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == spent
    # a second search on the Trainer that train() left its optimizer and spent schedule on
    again = find_lr(trainer, update_args=True, num_steps=40, progress=False)
    recipe = lrkit.recommend(from_trainer(trainer), steps=40)  # names the optimizer inside
    assert recipe.optimizer.endswith("AdamW") and recipe.build(trainer.model.parameters())
    trainer.train()
    assert trainer.optimizer.param_groups[1]["initial_lr"] == pytest.approx(again.suggested_lrs[1])
    # optimizer_cls_and_kwargs: its lr wins over args.learning_rate, so it moves too
    kwargs = {"lr": 1e-4}
    fresh = make_trainer(tmp_path, max_steps=4)
    chosen = Trainer(model=fresh.model, args=fresh.args, train_dataset=Tokens(),
                     optimizer_cls_and_kwargs=(torch.optim.AdamW, kwargs))
    found = find_lr(chosen, update_args=True, num_steps=40, progress=False)
    assert kwargs["lr"] == pytest.approx(found.suggested_lr)


def test_compute_loss_func_gets_the_items_of_the_batch(tmp_path):
    def summed_over_items(outputs, labels, num_items_in_batch):
        losses = torch.nn.functional.cross_entropy(outputs.logits, labels, reduction="none")
        return losses.sum() / num_items_in_batch

    base = make_trainer(tmp_path)
    trainer = Trainer(model=base.model, args=base.args, train_dataset=Tokens(),
                      compute_loss_func=summed_over_items)
    assert find_lr(trainer, num_steps=30, progress=False).suggested_lr is not None


def test_a_dict_of_eval_datasets_and_the_callbacks_val_key(tmp_path):
    callback = MonitorCallback(report_every=0, val_key="eval_held_loss")
    base = make_trainer(tmp_path, eval_strategy="steps", eval_steps=8)
    trainer = Trainer(model=base.model, args=base.args, train_dataset=Tokens(),
                      eval_dataset={"other": Tokens(32, seed=2), "held": Tokens(64, seed=1)},
                      callbacks=[callback])
    assert len(from_trainer(trainer).val_loader.dataset) == 32  # the first, by default
    assert len(from_trainer(trainer, eval_key="held").val_loader.dataset) == 64
    with pytest.raises(LrkitError, match="eval_key='nope' is not one of"):
        from_trainer(trainer, eval_key="nope")
    trainer.train()
    assert len(callback.monitor._val) == 4


def test_schedule_free_optimizers_are_switched_to_train_mode(tmp_path):
    trainer = make_trainer(tmp_path, optim="schedule_free_adamw", max_steps=8)
    result = find_lr(trainer, update_args=True, num_steps=30, progress=False)
    assert result.suggested_lr is not None
    trainer.train()


def test_planned_length_rounds_a_short_last_window_up_like_the_trainer(tmp_path):
    trainer = make_trainer(tmp_path, gradient_accumulation_steps=3, num_train_epochs=1)
    planned = from_trainer(trainer).budget_steps  # 16 batches, 3 per step: 6 steps
    trainer.train()
    assert planned == trainer.state.global_step == 6


def test_max_grad_norm_zero_or_negative_means_no_clipping(tmp_path):
    trainer = make_trainer(tmp_path, max_grad_norm=-1.0)
    result = find_lr(trainer, num_steps=30, progress=False)
    assert result.settings["max_grad_norm"] is None


def test_the_callback_sees_a_nan_run_through_the_logging_filter_and_one_monitor_per_train(
        tmp_path):
    class Diverging(Trainer):
        def compute_loss(self, model, inputs, **kwargs):
            loss = super().compute_loss(model, inputs, **kwargs)
            return loss * math.nan if self.state.global_step >= 12 else loss

    callback = MonitorCallback(report_every=0)
    base = make_trainer(tmp_path, num_train_epochs=3, learning_rate=1e-3)
    trainer = Diverging(model=base.model, args=base.args, train_dataset=Tokens(),
                        callbacks=[callback])
    trainer.train()  # the Trainer logs the NaN windows as 0.0 (logging_nan_inf_filter)
    assert callback.diagnosis.verdict == "diverged"
    first = callback.monitor
    healthy = make_trainer(tmp_path, callbacks=[callback], learning_rate=3e-3)
    healthy.train()
    assert callback.monitor is not first and callback.monitor.step == 8
    assert callback.diagnosis.verdict != "diverged"


def test_update_args_without_a_suggestion_leaves_the_rate_as_it_was(tmp_path):
    # suggested_lrs is None without a suggestion: update_args raised a TypeError on len(None)
    trainer = make_trainer(tmp_path)
    before = trainer.args.learning_rate
    result = find_lr(trainer, update_args=True, num_steps=10, progress=False)  # too coarse
    assert result.suggested_lr is None
    assert trainer.args.learning_rate == before
