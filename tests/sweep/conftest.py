import pytest


@pytest.fixture
def journal(tmp_path):
    """A fresh journal file for one test's sweeps."""
    return str(tmp_path / "sweeps.journal")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for one test module (two CPUs, no dashboard), shut down after it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
