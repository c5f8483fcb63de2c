"""Teachers: trained once, cached atomically, reloaded, clear errors for a corrupt cache."""

import pytest

from onn.cache import CacheError
from onn.teachers import TEACHERS, build_teacher, get_teacher
from onn.data import load_dataset


@pytest.mark.parametrize("name, dataset", [("lenet5", "digits"), ("alexnet", "photo_tiny"), ("unet", "nuclei")])
def test_every_registered_teacher_builds_and_runs(name, dataset):
    assert name in TEACHERS
    data = load_dataset(dataset)
    model = build_teacher(name, data)
    out = model(data.train.tensors[0][:2])
    assert out.shape[0] == 2


def test_teacher_is_trained_once_then_loaded_from_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONN_CACHE_DIR", str(tmp_path))
    first, info1 = get_teacher("digits", seed=3, log=None, epochs=2)
    second, info2 = get_teacher("digits", seed=3, log=None, epochs=2)
    assert not info1.from_cache and info2.from_cache
    assert info2.seconds < info1.seconds / 5
    assert info1.test_metric == info2.test_metric > 0.3
    assert all((a == b).all() for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written left behind


def test_corrupt_cache_file_says_how_to_recover(tmp_path, monkeypatch):
    monkeypatch.setenv("ONN_CACHE_DIR", str(tmp_path))
    _, info = get_teacher("digits", seed=4, log=None, epochs=1)
    with open(info.path, "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(CacheError, match="Delete it"):
        get_teacher("digits", seed=4, log=None, epochs=1)


def test_unknown_teacher_is_refused():
    with pytest.raises(KeyError, match="known: alexnet, lenet5, unet"):
        get_teacher("digits", "resnet", log=None)


@pytest.mark.slow
def test_lenet5_on_full_mnist_reaches_98_8_percent(monkeypatch):
    monkeypatch.delenv("ONN_CACHE_DIR", raising=False)
    _, info = get_teacher("mnist", log=None)
    assert info.test_metric >= 0.988
