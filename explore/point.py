"""A sampled configuration becomes a design point: an `onn.design.Design` and a `TrainConfig`.

The one converter from the flat parameter names of a sweep file (`explore.spec.PARAMETERS`) to the
objects `onn` works with. Values the sweep does not set come from the task's preset (mono for grey
data, poly for colour), so a small sweep file stays small; the exception is the kernel count, which
follows the layout (every signed kernel the aperture holds) unless ``n_kernels`` is set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from onn.design import PRESETS, Design
from onn.optics.sensor import SensorConfig
from onn.train import TrainConfig

SENSOR_KEYS = {"read_noise_fs", "full_well_e", "bits"}
BACKEND_KEYS = {"backend_depth", "backend_width"}


@dataclass(frozen=True)
class DesignPoint:
    params: tuple[tuple[str, Any], ...]  # the sampled + fixed parameters, sorted by name
    design: Design
    train: TrainConfig

    @property
    def config_hash(self) -> str:
        """Short, stable hash of the parameters: the same design point always has the same hash."""
        text = json.dumps(dict(self.params), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def base_design(channels: int, task: str) -> Design:
    """The preset a sweep starts from: seg for segmentation, poly for colour data, mono for grey."""
    if task == "segment":
        return PRESETS["seg"]
    return PRESETS["poly"] if channels == 3 else PRESETS["mono"]


def design_point(params: dict[str, Any], *, base: Design, training: dict[str, Any], seed: int) -> DesignPoint:
    """Build the design point for ``params`` (hardware names and ``train.*`` knobs)."""
    hardware = {k: v for k, v in params.items() if not k.startswith("train.")}
    train_knobs = {k.removeprefix("train."): v for k, v in params.items() if k.startswith("train.")}
    changes = {k: v for k, v in hardware.items() if k not in SENSOR_KEYS | BACKEND_KEYS}
    # Presets pin their kernel count; in a sweep the aperture decides it (all the layout holds)
    # unless the sweep file sets n_kernels itself.
    changes.setdefault("n_kernels", None)
    if "mask_res" in changes:
        changes["mask_res"] = int(changes["mask_res"])
    if SENSOR_KEYS & hardware.keys():
        changes["sensor"] = dataclasses.replace(base.sensor, **{k: hardware[k] for k in SENSOR_KEYS & hardware.keys()})
    if BACKEND_KEYS & hardware.keys():
        depth = int(hardware.get("backend_depth", len(base.hidden)))
        width = int(hardware.get("backend_width", base.hidden[0] if base.hidden else 128))
        changes["hidden"] = tuple(max(1, width // 2**i) for i in range(depth))
    design = dataclasses.replace(base, **changes)
    train = TrainConfig(**{"method": "ntkd", **training, **train_knobs, "seed": seed})
    return DesignPoint(tuple(sorted(params.items())), design, train)


__all__ = ["DesignPoint", "SensorConfig", "base_design", "design_point"]
