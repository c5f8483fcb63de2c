"""Named experimental systems: a hardware preset, the dataset it sees and its teacher (SPEC §2).

A plain registry, because command lines and sweep files name systems; a test builds every entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from explore.point import design_point
from onn.data import TaskData, load_dataset
from onn.design import PRESETS, Design
from onn.models import HybridONN, build_hybrid
from onn.teachers import Teacher, get_teacher


@dataclass(frozen=True)
class System:
    preset: str  # a key of onn.design.PRESETS
    dataset: str  # a key of onn.data.DATASETS
    teacher: str  # a key of onn.teachers.TEACHERS
    # KD's and NTKD's weights for this system (fields of onn.train.TrainConfig), chosen on validation by
    # explore.experiments.transfer_weights (benchmarks/tables/transfer_weights.csv); empty: TrainConfig's.
    transfer: dict[str, Any] = field(default_factory=dict)

    @property
    def design(self) -> Design:
        return PRESETS[self.preset]


# Validation scores of the chosen weights, short budgets: mono KD 95.86 %, NTKD 96.84 % (no transfer
# 95.78 %) and poly KD 71.40 %, NTKD 71.10 % (no transfer 71.10 %), one seed; seg KD 72.20 %, NTKD 71.93 %
# IoU (no transfer 69.62 %), means over three seeds, NTKD with the Gram on the batch's 8 tiles.
MONO_WEIGHTS = dict(kd_alpha=0.5, kd_temperature=1.0, ntk_beta=1.0, ntk_centre=True, ntk_normalise="frobenius")
POLY_WEIGHTS = dict(kd_alpha=0.1, kd_temperature=2.0, ntk_beta=0.01, ntk_centre=False, ntk_normalise="trace")

SYSTEMS: dict[str, System] = {
    # Compressed Meta ONN on real MNIST (paper Table 3: 91.4 / 95.9 / 97.3 %).
    "mono": System("mono", "mnist", "lenet5", MONO_WEIGHTS),
    # Polychromatic Meta ONN on the made-up colour task (the paper used CIFAR-10, not available offline).
    "poly": System("poly", "photo_patches", "alexnet", POLY_WEIGHTS),
    # The same on CIFAR-10, for users who have a local copy (pass --root); weights not tuned on CIFAR-10.
    "poly_cifar10": System("poly", "cifar10", "alexnet", POLY_WEIGHTS),
    # The custom polychromatic segmentation system on the real nuclei image (paper: Carvana, U-Net 95.4 % mIoU).
    "seg": System("seg", "nuclei", "unet", dict(kd_alpha=0.9, kd_temperature=1.0, ntk_beta=0.1, ntk_centre=False,
                                                ntk_normalise="trace")),
}


def system_design(system: System, changes: dict[str, Any] | None = None) -> Design:
    """The design the experiments (Table 3, Table 4, the weight grid) train for ``system``: its preset
    with ``changes`` (sweep-file parameter names, e.g. n_kernels, read_noise_fs) applied as a sweep
    point applies them. Unless ``changes`` sets n_kernels, the preset's aperture is filled with all the
    kernels its layout holds, as in a sweep: mono 8 (as the preset), poly 18 (the preset pins 16),
    seg 60 (56). One function, so that Table 4 loads the students Table 3 trained."""
    return design_point(changes or {}, base=system.design, training={}, seed=0).design


def build_student(design: Design, data: TaskData, seed: int) -> HybridONN:
    """A freshly initialised hybrid for ``data``'s shape; raises `InfeasibleDesign` if impossible."""
    return build_hybrid(design, in_channels=data.channels, image_size=data.image_size,
                        n_outputs=data.n_classes, seed=seed)


def load_system(name: str, *, root: str | None = None, device: torch.device | str = "cpu",
                teacher_seed: int = 0) -> tuple[System, TaskData, Teacher]:
    """The system, its data and its (cached) trained teacher."""
    if name not in SYSTEMS:
        raise KeyError(f"unknown system {name!r}; known: {', '.join(sorted(SYSTEMS))}")
    system = SYSTEMS[name]
    data = load_dataset(system.dataset, root)
    teacher, _ = get_teacher(system.dataset, system.teacher, seed=teacher_seed, root=root, device=device)
    return system, data, teacher
