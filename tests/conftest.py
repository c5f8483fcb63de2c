import os

import pytest
import torch

# Keep test processes light on the 2-core CI machines and reproducible.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never touch the user's cache unless they ask: each session gets its own cache dir."""
    if "ONN_TEST_SHARED_CACHE" not in os.environ:
        monkeypatch.setenv("ONN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "onn-cache"))
