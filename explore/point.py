"""A sampled configuration becomes a design point: an `onn.design.Design` and a `TrainConfig`.

The one converter from the flat parameter names of a sweep file (`explore.parameters.PARAMETERS`,
which says where each value lands) to the objects `onn` works with. Values the sweep does not set
come from the task's preset (mono for grey data, poly for colour, seg for segmentation), so a small
sweep file stays small; the exception is the kernel count, which follows the layout (every signed
kernel the aperture holds) unless ``n_kernels`` is set (and then, without ``aperture_mm``, the
aperture is the smallest that holds them: different apertures of one kernel count are one design).
``oversampling`` sets ``mask_res`` relative to the smallest one that can be simulated faithfully. A preset with kernel groups (seg: 8 / 16 /
32) keeps their proportions: the kernel count is split into groups of the same shares
(`scaled_groups`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from explore.parameters import PARAMETERS
from onn.design import PRESETS, Design
from onn.optics.validity import InfeasibleDesign, min_mask_res
from onn.train import TrainConfig


@dataclass(frozen=True)
class DesignPoint:
    params: tuple[tuple[str, Any], ...]  # the sampled + fixed parameters, sorted by name
    design: Design
    train: TrainConfig

    @property
    def config_hash(self) -> str:
        return config_hash(dict(self.params))


def config_hash(params: dict[str, Any]) -> str:
    """Short, stable hash of a design point's parameters (sampled + fixed): the same design point
    always has the same hash; within a sweep (one training recipe, one seed) it names the design."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def base_design(channels: int, task: str) -> Design:
    """The preset a sweep starts from: seg for segmentation, poly for colour data, mono for grey."""
    if task == "segment":
        return PRESETS["seg"]
    return PRESETS["poly"] if channels == 3 else PRESETS["mono"]


def design_point(params: dict[str, Any], *, base: Design, training: dict[str, Any], seed: int) -> DesignPoint:
    """Build the design point for ``params`` (names of `PARAMETERS`); raises KeyError for others."""
    by_target: dict[str, dict[str, Any]] = {"design": {}, "sensor": {}, "backend": {}, "train": {}, "derived": {}}
    for name, value in params.items():
        parameter = PARAMETERS[name]
        by_target[parameter.target][parameter.field] = parameter.cast(value)
    changes = by_target["design"]
    # Presets pin their kernel count; in a sweep the aperture decides it (all the layout holds)
    # unless the sweep file sets n_kernels itself.
    changes.setdefault("n_kernels", None)
    if by_target["sensor"]:
        changes["sensor"] = dataclasses.replace(base.sensor, **by_target["sensor"])
    if by_target["backend"]:
        depth = by_target["backend"].get("depth", len(base.hidden))
        width = by_target["backend"].get("width", base.hidden[0] if base.hidden else 128)
        changes["hidden"] = tuple(max(1, width // 2**i) for i in range(depth))
    design = dataclasses.replace(base, **changes)
    if changes["n_kernels"] is not None and "aperture_mm" not in changes:  # the kernel count decides the aperture
        # rounded up to the nm: rounded down, the layout's floor would lose a row of sub-optics
        design = design.with_(aperture_mm=math.ceil(design.aperture_for(changes["n_kernels"]) * 1e6) / 1e6)
    if "oversampling" in by_target["derived"]:  # a mask resolution that cannot alias
        design = design.with_(mask_res=math.ceil(by_target["derived"]["oversampling"]
                                                 * min_mask_res(design.geometry())))
    if changes.get("haze") == "fitted":  # needs the final geometry
        design = design.with_(haze=design.fitted_haze())
    if base.groups is not None:
        design = _regrouped(design, base.groups)
    train = TrainConfig(**{"method": "ntkd", **training, **by_target["train"], "seed": seed})
    return DesignPoint(tuple(sorted(params.items())), design, train)


def scaled_groups(shares: tuple[int, ...], n_kernels: int) -> tuple[int, ...] | None:
    """``n_kernels`` split into groups in the proportions of ``shares`` (largest remainders, each
    group >= 1): (8, 16, 32) and 60 kernels give (9, 17, 34). None if there are fewer kernels
    than groups."""
    if n_kernels < len(shares):
        return None
    exact = [n_kernels * s / sum(shares) for s in shares]
    groups = [max(1, int(e)) for e in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: exact[i] - groups[i], reverse=True)
    for i in by_remainder[:max(0, n_kernels - sum(groups))]:
        groups[i] += 1
    while sum(groups) > n_kernels:  # the minimum of 1 overshot: take from the largest group
        groups[groups.index(max(groups))] -= 1
    return tuple(groups)


def _regrouped(design: Design, shares: tuple[int, ...]) -> Design:
    """The design with its kernel count (``n_kernels``, or all the layout holds) split like
    ``shares``; unchanged if the layout cannot be computed or holds too few kernels (the trial's
    validity stage then says why)."""
    try:
        n = design.n_kernels if design.n_kernels is not None else design.layout().n_kernels
    except InfeasibleDesign:
        return design
    groups = scaled_groups(shares, n)
    return design if groups is None else dataclasses.replace(design, groups=groups)


__all__ = ["DesignPoint", "base_design", "design_point", "scaled_groups"]
