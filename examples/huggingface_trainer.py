"""A Hugging Face Trainer tuned by lrkit: find the rate through the Trainer's own pieces, train.

    python examples/huggingface_trainer.py --epochs 2

A tiny BERT built from a config (nothing is downloaded) learns a rule on random token
sequences: label 1 when the first token is above 32. ``find_lr(trainer, update_args=True)``
writes the suggestion to ``trainer.args.learning_rate``; ``MonitorCallback`` watches the run.
Needs ``pip install lrkit[huggingface]``.
"""
from __future__ import annotations

import argparse

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from lrkit.adapters.huggingface import MonitorCallback, find_lr


class RuleTokens(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 64, (n, 12), generator=generator)
        self.labels = (self.ids[:, 0] > 32).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long),
                "labels": self.labels[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--out", default="hf-out")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=2)
    monitor = MonitorCallback(report_every=0)
    trainer = Trainer(
        model=BertForSequenceClassification(config),
        args=TrainingArguments(output_dir=args.out, per_device_train_batch_size=16,
                               num_train_epochs=args.epochs, logging_steps=4, report_to=[],
                               use_cpu=True, save_strategy="no", disable_tqdm=True,
                               log_level="error"),
        train_dataset=RuleTokens(512, seed=0), eval_dataset=RuleTokens(128, seed=1),
        callbacks=[monitor])
    result = find_lr(trainer, update_args=True, progress=False)
    print(result)
    trainer.train()
    print(f"\ntrained at lr {trainer.args.learning_rate:.3g}: "
          f"eval_loss {trainer.evaluate()['eval_loss']:.4f}")
    print(monitor.diagnosis)


if __name__ == "__main__":
    main()
