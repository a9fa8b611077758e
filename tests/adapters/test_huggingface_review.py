"""What a second review of the Hugging Face adapter found (each failed before its fix), on a real
transformers.Trainer with a tiny BERT made from a config (nothing is downloaded)."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from lrkit.adapters.huggingface import MonitorCallback, find_lr, from_trainer
from tests.adapters.test_huggingface import Tokens, accumulated_gradients


def make_trainer(tmp_path, *, cls=Trainer, callbacks=(), trainer_options=None,
                 **arguments) -> Trainer:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)
    options = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=16,
                   learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no",
                   disable_tqdm=True, logging_steps=1, num_train_epochs=1, log_level="error")
    options.update(arguments)
    return cls(model=BertForSequenceClassification(config), args=TrainingArguments(**options),
               train_dataset=Tokens(128, vocab=50, length=8), callbacks=list(callbacks),
               **(trainer_options or {}))


def _logged_rates(trainer: Trainer) -> list[float]:
    return [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]


def test_a_compute_loss_override_taking_kwargs_gets_num_items_in_batch(tmp_path):
    """The usual override, ``compute_loss(self, model, inputs, return_outputs=False, **kwargs)``:
    training_step passes it num_items_in_batch, and the Trainer then does not divide the loss by
    the accumulation steps. The test's gradient was a quarter of the Trainer's under 4 steps."""
    class Override(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            return super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)

    trainer = make_trainer(tmp_path, cls=Override, gradient_accumulation_steps=4)
    ours, theirs = accumulated_gradients(trainer, 4)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-7)


def test_after_a_schedule_that_ended_above_zero_train_runs_at_the_suggestion(tmp_path):
    """A train() whose schedule ends at a floor (cosine_with_min_lr; or one stopped early) left
    the held optimizer's rates at a tenth of their base: the suggestion was measured against
    those, and args.learning_rate and the base rates came out ten times the suggestion."""
    trainer = make_trainer(tmp_path, max_steps=6, lr_scheduler_type="cosine_with_min_lr",
                           lr_scheduler_kwargs={"min_lr_rate": 0.1})
    trainer.train()
    floor = [g["lr"] for g in trainer.optimizer.param_groups]
    assert floor == pytest.approx([1e-4, 1e-4])
    # without update_args the scheduled rates come back as they were
    find_lr(trainer, num_steps=20, progress=False)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == floor
    result = find_lr(trainer, update_args=True, num_steps=30, progress=False)
    assert trainer.args.learning_rate == pytest.approx(result.suggested_lr)
    trainer.train()
    assert max(_logged_rates(trainer)) == pytest.approx(result.suggested_lr)
    assert [g["initial_lr"] for g in trainer.optimizer.param_groups] == pytest.approx(
        result.suggested_lrs)


def test_optimizer_cls_and_kwargs_without_an_lr_gets_the_suggestion(tmp_path):
    """Trainer(optimizer_cls_and_kwargs=(AdamW, {...no lr...})) builds at AdamW's default 1e-3,
    not at args.learning_rate: update_args changed only the latter, and train() ran at 1e-3."""
    kwargs = {"weight_decay": 0.01}
    trainer = make_trainer(tmp_path, max_steps=2, learning_rate=5e-5, trainer_options={
        "optimizer_cls_and_kwargs": (torch.optim.AdamW, kwargs)})
    result = find_lr(trainer, update_args=True, num_steps=30, progress=False)
    assert kwargs["lr"] == pytest.approx(result.suggested_lr)
    trainer.train()
    assert [g["initial_lr"] for g in trainer.optimizer.param_groups] == pytest.approx(
        result.suggested_lrs)


def test_mixed_precision_follows_what_the_trainer_does_on_the_cpu(tmp_path):
    """On the CPU accelerate turns fp16=True into nothing (no autocast, no scaler: the Trainer
    trains in float32), bf16=True into bfloat16 autocast; the test ran fp16 under bfloat16."""
    seen = []

    def record(module, inputs, output):
        seen.append(torch.is_autocast_enabled("cpu"))

    for flag, expected in (("fp16", False), ("bf16", True)):
        trainer = make_trainer(tmp_path, max_steps=1, **{flag: True})
        handle = trainer.model.bert.encoder.register_forward_hook(record)
        seen.clear()
        trainer.train()
        assert seen[0] is expected  # what the Trainer itself does
        seen.clear()
        result = find_lr(trainer, num_steps=10, progress=False)
        handle.remove()
        assert result.settings["amp"] == ("bf16" if expected else False) and seen[0] is expected


def _with_loss_scaler(trainer: Trainer, init_scale: float) -> Trainer:
    """What fp16 on a GPU gives the Trainer: accelerate's native amp with a GradScaler. Here on
    the CPU (float16 autocast), with a first scale that overflows for a few steps, as 65536
    does at the start of many fp16 runs."""
    trainer.accelerator.native_amp = True
    trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    return trainer


def test_steps_a_loss_scaler_skips_are_not_a_divergence(tmp_path):
    """A GradScaler skips the steps whose scaled gradients overflowed, and the Trainer logs their
    grad_norm as inf or nan beside a finite loss: the callback called such a run diverged."""
    callback = MonitorCallback(report_every=0)
    trainer = _with_loss_scaler(make_trainer(tmp_path, callbacks=[callback], num_train_epochs=4,
                                             learning_rate=3e-3, fp16=True), 2.0 ** 24)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert not all(math.isfinite(h["grad_norm"]) for h in logged[:4])  # skipped steps
    assert all(math.isfinite(h["loss"]) for h in logged)
    assert all(math.isfinite(v) for v in callback.monitor.losses)
    assert callback.diagnosis.verdict != "diverged"


def test_under_a_loss_scaler_a_nan_run_is_still_diverged(tmp_path):
    class Diverging(Trainer):
        def compute_loss(self, model, inputs, **kwargs):
            loss = super().compute_loss(model, inputs, **kwargs)
            return loss * math.nan if self.state.global_step >= 12 else loss

    callback = MonitorCallback(report_every=0)
    trainer = _with_loss_scaler(make_trainer(tmp_path, cls=Diverging, callbacks=[callback],
                                             num_train_epochs=3, fp16=True), 2.0 ** 10)
    trainer.train()  # the Trainer logs the NaN windows as 0.0 (logging_nan_inf_filter)
    assert callback.diagnosis.verdict == "diverged"


def test_update_args_when_the_first_group_is_held_still_at_a_zero_rate(tmp_path):
    """A first group at lr 0 (frozen embeddings): the suggestion is the next group's, and
    update_args did nothing at all, silently."""
    class Frozen(Trainer):
        def create_optimizer(self, model=None):
            if self.optimizer is None:
                named = list(self.model.named_parameters())
                self.optimizer = torch.optim.AdamW([
                    {"params": [p for n, p in named if "embeddings" in n], "lr": 0.0},
                    {"params": [p for n, p in named if "embeddings" not in n],
                     "lr": self.args.learning_rate}])
            return self.optimizer

    trainer = make_trainer(tmp_path, cls=Frozen, max_steps=2)
    # (no noise batches: 30 steps on this tiny task give a curve that falls only on the
    # batches the test has always seen; what is tested here is update_args)
    result = find_lr(trainer, update_args=True, num_steps=30, noise_batches=0, progress=False)
    assert result.suggested_lrs[0] == 0.0 and result.suggested_lr == result.suggested_lrs[1]
    assert trainer.args.learning_rate == pytest.approx(result.suggested_lr)
    trainer.train()
    assert [g["initial_lr"] for g in trainer.optimizer.param_groups] == pytest.approx(
        result.suggested_lrs)
    # and again on the optimizer train() left, its frozen group's base rate 0
    again = find_lr(trainer, update_args=True, num_steps=30, noise_batches=0, progress=False)
    assert [g["initial_lr"] for g in trainer.optimizer.param_groups] == pytest.approx(
        again.suggested_lrs)
    assert trainer.lr_scheduler.base_lrs == pytest.approx(again.suggested_lrs)


def test_recommend_on_a_trainer_steps_as_the_trainer_does(tmp_path):
    """from_trainer carries the Trainer's accumulation, clipping and precision in step_options,
    so recommend's range test and short runs take its steps, its epochs count optimizer steps
    (8 batches at 4 a step: 2 a pass) and its batch is the step's (16 x 4)."""
    import lrkit

    trainer = make_trainer(tmp_path, gradient_accumulation_steps=4, max_grad_norm=0.5,
                           per_device_train_batch_size=16)
    problem = from_trainer(trainer)
    assert problem.step_options == {"accumulation_steps": 4, "max_grad_norm": 0.5, "amp": False}
    assert problem.trainable().accumulation_steps == 4
    calls = []
    loss_fn = problem.loss_fn
    problem.loss_fn = lambda model, batch: calls.append(1) or loss_fn(model, batch)
    recipe = lrkit.recommend(problem, epochs=3, confirm=False, progress=False)
    assert recipe.total_steps == 6  # 3 epochs x ceil(8 batches / 4)
    assert recipe.batch_size == 64 and recipe.evidence["epochs"] == pytest.approx(3)
    assert len(calls) == 4 * len(recipe.evidence["finder"]["lrs"])  # 4 batches a test step


@pytest.mark.parametrize("option", ["loss_fn", "criterion", "val_loader"])
def test_options_the_trainer_provides_are_refused_with_where_to_give_them(tmp_path, option):
    """They reached lrkit.find_lr twice: "got multiple values for keyword argument"."""
    from lrkit.errors import LrkitError

    trainer = make_trainer(tmp_path)
    with pytest.raises(LrkitError, match=f"instead of {option}=..., pass "):
        find_lr(trainer, num_steps=20, progress=False, **{option: object()})


def test_a_schedule_free_optimizer_left_in_eval_mode_comes_back_bit_for_bit(tmp_path):
    """After train() and evaluate() the optimizer holds the eval-mode weights; the test switches
    it to train mode and back, and eval() after train() is not the identity in floating point:
    4 of 25 tensors came back changed by rounding."""
    trainer = make_trainer(tmp_path, max_steps=8, optim="schedule_free_adamw",
                           eval_strategy="no")
    trainer.eval_dataset = Tokens(32, vocab=50, length=8)
    trainer.train()
    trainer.evaluate()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    find_lr(trainer, num_steps=20, progress=False)
    after = trainer.model.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == []
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert optimizer.param_groups[0]["train_mode"] is False


def test_the_validation_loss_is_the_trainers_eval_loss_under_accumulation(tmp_path):
    """evaluate() on a Trainer's problem read accumulation times its eval_loss (the training
    step's rescaling applied to an evaluation): 1.39 for 0.69 at 2 steps."""
    from lrkit.training import evaluate

    trainer = make_trainer(tmp_path, gradient_accumulation_steps=2)
    trainer.eval_dataset = Tokens(32, vocab=50, length=8)
    expected = trainer.evaluate()["eval_loss"]
    assert evaluate(from_trainer(trainer)) == pytest.approx(expected, rel=1e-4)


def test_a_scheduler_warming_up_from_zero_keeps_the_groups_ratios_for_recommend(tmp_path):
    """The Problem's groups all read 0 after the warmup's first step: recommend and train ran
    every group at one rate (the body at 10x its own)."""
    import lrkit
    from transformers import get_linear_schedule_with_warmup

    from lrkit.training import train

    trainer = make_trainer(tmp_path)
    named = list(trainer.model.named_parameters())
    head = [p for n, p in named if n.startswith("classifier")]
    body = [p for n, p in named if not n.startswith("classifier")]
    optimizer = torch.optim.AdamW([{"params": body, "lr": 1e-4}, {"params": head, "lr": 1e-3}])
    trainer.optimizer = optimizer
    trainer.lr_scheduler = get_linear_schedule_with_warmup(optimizer, 10, 100)
    problem = from_trainer(trainer)
    assert [g["lr"] for g in problem.optimizer.param_groups] == [0.0, 0.0]
    recipe = lrkit.recommend(problem, steps=300, progress=False, confirm=False)
    assert [g["lr_ratio"] for g in recipe.evidence["param_groups"]] == pytest.approx([1.0, 10.0])
    rates = []
    train(problem, lr=1e-3, steps=2,
          on_step=lambda *_: rates.append([g["lr"] for g in problem.optimizer.param_groups]))
    assert rates[0] == pytest.approx([1e-3, 1e-2])
