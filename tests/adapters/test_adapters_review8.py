"""recommend(from_trainer(trainer)) under several processes (torchrun): every rank reaches the
same recipe, where the ranks' range tests and short runs stopped apart (one rank crashed its peer
in the gather of _get_num_items_in_batch)."""
from __future__ import annotations

import json
import os
import warnings

from tests.adapters.test_adapters_review7 import _tiny_trainer, run_two_ranks


def _rank(rank: int, directory: str, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    warnings.simplefilter("ignore")
    import lrkit
    from lrkit.adapters.huggingface import from_trainer

    trainer = _tiny_trainer(os.path.join(directory, f"out{rank}"), ddp_backend="gloo")
    problem = from_trainer(trainer)
    assert problem.step_options["sync_ranks"] is True
    recipe = lrkit.recommend(problem, steps=150, progress=False)
    data = recipe.to_dict()
    data["evidence"]["cost"].pop("seconds", None)  # wall time: each rank its own
    with open(os.path.join(directory, f"rank{rank}.json"), "w") as handle:
        json.dump(data, handle)


def test_recommend_on_a_trainer_under_several_processes_gives_every_rank_the_same_recipe(
        tmp_path):
    run_two_ranks(_rank, tmp_path)
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert first == second
    assert first["peak_lr"] > 0


def test_a_trainer_in_one_process_adds_no_sync_ranks(tmp_path):
    from lrkit.adapters.huggingface import from_trainer

    assert "sync_ranks" not in from_trainer(_tiny_trainer(str(tmp_path))).step_options
