import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests run on 2 shared cores: one intra-op thread keeps runs fast and deterministic."""
    import torch

    torch.set_num_threads(1)
