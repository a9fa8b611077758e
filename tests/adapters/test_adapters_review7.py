"""Review of the framework adapters: a module that builds its layers in configure_model, a
datamodule given in the loaders' place, a Trainer under several processes (torchrun), eval_key
without a dict of eval datasets, and min_over_ranks above 2**24."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings

import lightning as L
import pytest
import torch

from lrkit.errors import LrkitError

X = torch.randn(128, 8, generator=torch.Generator().manual_seed(0))
Y = X @ torch.linspace(-1, 1, 8).unsqueeze(1)


def _loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=16,
                                       shuffle=True)


class Lazy(L.LightningModule):
    """Layers built in configure_model, as Trainer.fit calls it (Lightning >= 2.1)."""

    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        self.lr = lr
        self.net = None
        self.configured = 0

    def configure_model(self) -> None:
        self.configured += 1
        if self.net is None:  # idempotent, as Lightning asks
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                           torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        return _loader()


class Plain(Lazy):
    def __init__(self) -> None:
        super().__init__()
        self.configure_model()


class Data(L.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.was_set_up = False

    def setup(self, stage: str) -> None:
        self.was_set_up = True

    def train_dataloader(self):
        return _loader()


def test_a_module_that_builds_its_layers_in_configure_model():
    from lrkit.adapters.lightning import find_lr

    module = Lazy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = find_lr(module, update_attr=True, num_steps=30, progress=False)
    assert module.net is not None and module.configured >= 1
    assert result.suggested_lr is None or module.lr == pytest.approx(result.suggested_lr)
    assert len(result.lrs) >= 20


def test_a_datamodule_in_the_loaders_place_is_taken_as_trainer_fit_takes_it():
    from lrkit.adapters.lightning import find_lr, from_lightning

    data = Data()
    problem = from_lightning(Plain(), data)  # as trainer.fit(module, data)
    assert data.was_set_up
    batch = next(iter(problem.train_loader))
    assert batch[0].shape == (16, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = find_lr(Plain(), Data(), num_steps=20, progress=False)
    assert len(result.lrs) >= 15


def _tiny_trainer(output_dir: str, **arguments):
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    class Tokens(torch.utils.data.Dataset):
        def __init__(self, n: int = 128, seed: int = 0) -> None:
            generator = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(1, 64, (n, 8), generator=generator)
            self.labels = (self.ids[:, 0] > 32).long()

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]),
                    "labels": self.labels[i]}

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=8, num_labels=2)
    options = dict(output_dir=output_dir, per_device_train_batch_size=8, learning_rate=5e-5,
                   report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                   num_train_epochs=1)
    options.update(arguments)
    return Trainer(model=BertForSequenceClassification(config),
                   args=TrainingArguments(**options), train_dataset=Tokens(),
                   eval_dataset=Tokens(32, seed=1))


def test_eval_key_without_a_dict_of_eval_datasets_is_refused(tmp_path):
    from lrkit.adapters.huggingface import find_lr, from_trainer

    trainer = _tiny_trainer(str(tmp_path))
    with pytest.raises(LrkitError, match="eval_key='test'.*eval_dataset is Tokens"):
        from_trainer(trainer, eval_key="test")
    trainer.eval_dataset = None
    with pytest.raises(LrkitError, match="eval_key='test'.*eval_dataset is None"):
        find_lr(trainer, eval_key="test", progress=False)


def test_a_budget_of_zero_steps_is_refused_not_replaced_by_the_planned_length(tmp_path):
    """find_lr(trainer, budget_steps=0) took the Trainer's planned length, silently."""
    from lrkit.adapters.huggingface import find_lr

    with pytest.raises(LrkitError, match="budget_steps.*>= 1.*got 0"):
        find_lr(_tiny_trainer(str(tmp_path)), budget_steps=0, progress=False)


def _rank(rank: int, directory: str, port: int) -> None:
    """One rank of a 2-process Trainer job, set up as torchrun sets it."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    warnings.simplefilter("ignore")
    from lrkit.adapters.huggingface import find_lr

    trainer = _tiny_trainer(os.path.join(directory, f"out{rank}"), ddp_backend="gloo")
    assert trainer.args.world_size == 2 and torch.distributed.is_initialized()
    result = find_lr(trainer, update_args=True, num_steps=30, progress=False)
    with open(os.path.join(directory, f"rank{rank}.json"), "w") as handle:
        json.dump({"lr": trainer.args.learning_rate, "losses": result.losses}, handle)


def run_two_ranks(function, directory) -> None:
    """``function(rank, directory, port)`` in two spawned processes, on a free port."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    torch.multiprocessing.start_processes(function, args=(str(directory), port), nprocs=2,
                                          join=True, start_method="spawn")


def test_under_several_processes_every_rank_stops_alike_and_gets_the_same_rate(tmp_path):
    # each rank's DataLoaderShard holds its own shard: deciding on its own loss, one rank stopped
    # first and the other waited in _get_num_items_in_batch's gather (or each set its own rate)
    run_two_ranks(_rank, tmp_path)
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert first["losses"] == second["losses"]  # the mean over the ranks
    assert first["lr"] == second["lr"]


def test_min_over_ranks_is_exact_above_two_to_the_24():
    code = ("import os, torch.distributed as d\n"
            "os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=os.environ['PORT'])\n"
            "d.init_process_group('gloo', rank=0, world_size=1)\n"
            "from lrkit.adapters.distributed import min_over_ranks\n"
            "print(min_over_ranks(2**24 + 1), min_over_ranks(31_250_001))\n"
            "d.destroy_process_group()\n")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PORT": str(port)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(2**24 + 1), "31250001"]
