import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The machine is shared; these models are tiny and only slow down with more threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
