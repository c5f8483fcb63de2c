"""Electronic teachers (SPEC §2): trained once per dataset, cached on disk, frozen.

Cache: ``<cache_dir>/teachers/<dataset>-<teacher>-s<seed>-<code>.pt`` where ``<code>`` hashes this
module's source (changing a teacher or its recipe retrains it). Loaded with
``torch.load(weights_only=True)``. A sweep's driver loads the teacher once and ships its weights
to Ray workers through the object store, so no worker retrains it and no shared disk is assumed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from onn.cache import atomic_torch_save, cache_dir, safe_torch_load
from onn.data import TaskData, load_dataset
from onn.train import TrainConfig, evaluate, fit, headline, stderr_log


class Standardise(nn.Module):
    """Teachers see raw intensities and standardise them with the training split's statistics."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Teacher(nn.Module):
    """``standardise -> features -> head``; ``forward(x, generator=None, noise=True)`` like a student."""

    def __init__(self, mean, std, features: nn.Module, head: nn.Module):
        super().__init__()
        self.standardise, self.features, self.head = Standardise(mean, std), features, head

    def forward(self, x, *, generator=None, noise=True):
        del generator, noise  # electronic: no optics, no sensor noise
        return self.head(self.features(self.standardise(x)))


def _flat_size(features: nn.Module, channels: int, size: int) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, channels, size, size)).numel()


def lenet5(channels: int, size: int, n_classes: int, mean, std) -> Teacher:
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling."""
    features = nn.Sequential(
        nn.Conv2d(channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2) if size >= 20 else nn.Identity(), nn.Flatten())
    flat = _flat_size(features, channels, size)
    head = nn.Sequential(nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, n_classes))
    return Teacher(mean, std, features, head)


def alexnet_small(channels: int, size: int, n_classes: int, mean, std) -> Teacher:
    """An AlexNet-style CNN for 32x32 colour images: 5 conv layers, 2 hidden FC layers."""
    features = nn.Sequential(
        nn.Conv2d(channels, 48, 5, padding=2), nn.BatchNorm2d(48), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(48, 96, 5, padding=2), nn.BatchNorm2d(96), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(96, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.Conv2d(128, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.Conv2d(128, 96, 3, padding=1), nn.BatchNorm2d(96), nn.ReLU(),
        nn.AdaptiveMaxPool2d(4), nn.Flatten())
    head = nn.Sequential(nn.Dropout(0.3), nn.Linear(96 * 16, 256), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, n_classes))
    return Teacher(mean, std, features, head)


def unet(channels: int, size: int, n_classes: int, mean, std) -> Teacher:
    """A small U-Net (Ronneberger et al. 2015) with three scales, for segmentation."""
    from onn.segmentation import UNetBody

    return Teacher(mean, std, UNetBody(channels, n_classes), nn.Identity())


@dataclass(frozen=True)
class Recipe:
    build: Callable[..., Teacher]
    train: TrainConfig
    min_steps: int = 1000  # small datasets get more epochs so that every teacher converges


# name -> how to build and train it. A plain registry so sweep files can name a teacher.
TEACHERS: dict[str, Recipe] = {
    "lenet5": Recipe(lenet5, TrainConfig(method="task", epochs=8, batch_size=128, lr=3e-3, weight_decay=1e-4)),
    "alexnet": Recipe(alexnet_small, TrainConfig(method="task", epochs=20, batch_size=128, lr=2e-3,
                                                 weight_decay=5e-4)),
    "unet": Recipe(unet, TrainConfig(method="task", epochs=40, batch_size=16, lr=2e-3, weight_decay=1e-4)),
}
DEFAULT_TEACHER = {"mnist": "lenet5", "fashion_mnist": "lenet5", "digits": "lenet5", "cifar10": "alexnet",
                   "photo_patches": "alexnet", "photo_tiny": "alexnet", "nuclei": "unet", "fashion_masks": "unet",
                   "carvana": "unet"}


@dataclass(frozen=True)
class TeacherInfo:
    dataset: str
    name: str
    seed: int
    path: str
    from_cache: bool
    seconds: float  # training or loading time
    test_metric: float  # accuracy, or IoU for segmentation


def build_teacher(name: str, data: TaskData, seed: int = 0) -> Teacher:
    if name not in TEACHERS:
        raise KeyError(f"unknown teacher {name!r}; known: {', '.join(sorted(TEACHERS))}")
    images = data.train.tensors[0]
    mean, std = images.mean((0, 2, 3)), images.std((0, 2, 3)).clamp(min=1e-3)
    torch.manual_seed(seed)  # module initialisers draw from the global generator
    return TEACHERS[name].build(data.channels, data.image_size, data.n_classes, mean, std)


def teacher_path(dataset: str, name: str, seed: int) -> Path:
    from onn.cache import source_hash

    code = source_hash(sys.modules[__name__])
    return cache_dir() / "teachers" / f"{dataset}-{name}-s{seed}-{code}.pt"


def get_teacher(dataset: str, name: str | None = None, *, seed: int = 0, root: str | None = None,
                device: torch.device | str = "cpu", log: Callable[[str], None] | None = stderr_log,
                epochs: float | None = None) -> tuple[Teacher, TeacherInfo]:
    """The trained, frozen teacher for a dataset: from the cache, or trained now and cached.

    ``epochs`` overrides the recipe (and is part of the cache key when given)."""
    name = name or DEFAULT_TEACHER.get(dataset)
    if name not in TEACHERS:
        raise KeyError(f"unknown teacher {name!r}; known: {', '.join(sorted(TEACHERS))}")
    data = load_dataset(dataset, root)
    path = teacher_path(dataset, name, seed)
    if epochs is not None:
        path = path.with_name(path.stem + f"-e{epochs:g}.pt")
    model = build_teacher(name, data, seed)
    start = time.perf_counter()
    if path.exists():
        payload = safe_torch_load(path)
        model.load_state_dict(payload["state_dict"])
        info = TeacherInfo(dataset, name, seed, str(path), True, time.perf_counter() - start, payload["test_metric"])
    else:
        recipe = TEACHERS[name].train
        steps_per_epoch = -(-len(data.train) // recipe.batch_size)
        if epochs is None:
            epochs = max(recipe.epochs, TEACHERS[name].min_steps / steps_per_epoch)
        recipe = TrainConfig(**{**recipe.__dict__, "epochs": epochs, "seed": seed})
        if log:
            log(f"training teacher {name} on {dataset} (cached afterwards at {path})")
        fit(model, data.train, task=data.task, config=recipe, device=device, log=log, label=f"teacher {name}")
        test_metric = headline(evaluate(model, data.test, data.task, device=device))
        atomic_torch_save({"state_dict": model.state_dict(), "test_metric": test_metric}, path)
        info = TeacherInfo(dataset, name, seed, str(path), False, time.perf_counter() - start, test_metric)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device), info
