"""The sub-optic array: how many sub-optics and signed kernels fit on a metasurface (SPEC §1).

``n_side = floor((H + d) / (k + d))``, ``n_suboptics = n_side²``, usable signed kernels
``floor(n_suboptics / 2)`` (each signed kernel needs a K⁺ and a K⁻ sub-optic). This is our reading
of Eq. 1 of the NTKD paper; the spacing d defaults to 0.1 mm (the paper gives none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from onn.optics import constants as C


@dataclass(frozen=True)
class SubopticLayout:
    aperture_mm: float  # metasurface side H
    suboptic_mm: float  # sub-optic side k
    spacing_mm: float  # gap d between sub-optics
    n_side: int
    n_suboptics: int
    n_kernels: int  # usable signed kernels

    @property
    def cell_mm(self) -> float:
        """Centre-to-centre distance of neighbouring sub-optics (= side of each sub-image region)."""
        return self.suboptic_mm + self.spacing_mm

    def centres_mm(self) -> list[tuple[float, float]]:
        """(y, x) centre of every sub-optic relative to the metasurface centre, row-major; sub-optic
        2j images K⁺ of kernel j and 2j+1 its K⁻. Each sub-image lands on the sensor directly below."""
        offset = (self.n_side - 1) / 2
        return [((r - offset) * self.cell_mm, (c - offset) * self.cell_mm)
                for r in range(self.n_side) for c in range(self.n_side)]


def suboptic_layout(aperture_mm: float, suboptic_mm: float,
                    spacing_mm: float = C.SUBOPTIC_SPACING_MM) -> SubopticLayout:
    """Layout of a square metasurface; raises ValueError for non-positive sizes."""
    for name, value in (("aperture_mm", aperture_mm), ("suboptic_mm", suboptic_mm)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if spacing_mm < 0:
        raise ValueError(f"spacing_mm must be >= 0, got {spacing_mm}")
    n_side = math.floor((aperture_mm + spacing_mm) / (suboptic_mm + spacing_mm) + 1e-9)
    n_suboptics = n_side * n_side
    return SubopticLayout(aperture_mm, suboptic_mm, spacing_mm, n_side, n_suboptics, n_suboptics // 2)
