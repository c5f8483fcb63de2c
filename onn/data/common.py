"""Helpers shared by the dataset loaders."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset


class DatasetError(RuntimeError):
    """A dataset is unknown or its source is missing; the message says how to get it."""


def package_file(package: str, relative: str, install_hint: str) -> Path:
    """Path of a data file shipped inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise DatasetError(f"package {package!r} is not installed; {install_hint}")
    path = Path(spec.origin).parent / relative
    if not path.exists():
        raise DatasetError(f"{path} is missing from package {package!r}; {install_hint}")
    return path


def as_images(array: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W) intensities in [0, 1]."""
    tensor = torch.from_numpy(np.array(array, copy=True)).float().div_(255.0)
    if tensor.ndim == 3:
        return tensor.unsqueeze(1)  # (N, 1, H, W)
    return tensor.permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)


def split_train_val(images: torch.Tensor, labels: torch.Tensor, n_val: int):
    """The last ``n_val`` samples of the official training split become validation (fixed)."""
    return (TensorDataset(images[:-n_val], labels[:-n_val]),
            TensorDataset(images[-n_val:], labels[-n_val:]))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
