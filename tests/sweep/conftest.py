import pytest


@pytest.fixture
def journal(tmp_path):
    """A fresh journal file for one test's sweeps."""
    return str(tmp_path / "sweeps.journal")
