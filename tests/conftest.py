import os

import pytest
import torch

# Keep test processes light on the 2-core CI machines and reproducible.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def one_thread():
    """For modules of many small ops: on a loaded 2-core machine torch's second OpenMP thread only
    spins against the first (measured: the estimator tests 25x slower with 2 threads than with 1).
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never touch the user's cache unless they ask: each session gets its own cache dir."""
    if "ONN_TEST_SHARED_CACHE" not in os.environ:
        monkeypatch.setenv("ONN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "onn-cache"))
