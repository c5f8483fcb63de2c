"""What a trial needs besides its design point, built by one plain function (no Ray).

The driver's Ray worker, the tests and the benchmarks all build a trial's context with
`build_context`, so a trial runs the same way inside and outside a sweep.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from explore.faults import Faults
from explore.point import DesignPoint, base_design, design_point
from explore.spec import SweepSpec
from onn.data import TaskData, load_dataset
from onn.energy import EnergyConstants
from onn.teachers import build_teacher, get_teacher


@dataclass(frozen=True)
class TrialContext:
    spec: SweepSpec
    data: TaskData
    teacher: torch.nn.Module | None
    energy: EnergyConstants
    front: np.ndarray | None = None  # (n, 2) `explore.trial.gate_front` points: (estimated accuracy, energy_pj)
    device: str = "cpu"
    log: Callable[[str], None] | None = None
    faults: Faults | None = None  # test hook (`explore.faults`); None in normal use

    def point(self, params: dict) -> DesignPoint:
        """The design point of ``params`` (sampled + fixed parameters) for this sweep's task."""
        return design_point(params, base=base_design(self.data.channels, self.data.task),
                            training=self.spec.training, seed=self.spec.seed)

    def with_front(self, front: np.ndarray | None) -> "TrialContext":
        return dataclasses.replace(self, front=front)


def build_context(spec: SweepSpec, *, teacher_state: dict | None = None, teacher_name: str | None = None,
                  device: str = "cpu", faults: Faults | None = None,
                  log: Callable[[str], None] | None = None) -> TrialContext:
    """Load the sweep's data and teacher and resolve its energy constants.

    The teacher comes from ``teacher_state`` (weights sent by the driver: no shared filesystem on a
    cluster) when given, else from the teacher cache (`onn.teachers.get_teacher`, which trains and
    caches it on first use).
    """
    data = load_dataset(spec.task.dataset, spec.task.root)
    if faults is not None:
        data = faults.data(data)
    if teacher_state is not None:
        teacher = build_teacher(teacher_name or spec.task.teacher, data)
        teacher.load_state_dict(teacher_state)
        teacher.to(device).eval()
    else:
        teacher, _ = get_teacher(spec.task.dataset, spec.task.teacher, seed=0, root=spec.task.root, device=device,
                                 log=log)
    energy = EnergyConstants.from_overrides(spec.energy.overrides, base=spec.energy.constants)
    return TrialContext(spec=spec, data=data, teacher=teacher, energy=energy, device=device, log=log, faults=faults)
