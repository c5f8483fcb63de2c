"""`OpticalGeometry`: a sub-optic's simulation grid and imaging geometry, in SI metres.

This is the one place where design units (mm, µm, nm) become metres. Everything in `onn.optics`
downstream of it works in metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from onn.optics import constants as C


@dataclass(frozen=True)
class OpticalGeometry:
    """One sub-optic: an ``mask_res x mask_res`` grid of design samples over a square aperture of
    side ``suboptic_m``, at ``distance_m`` from the sensor, imaged at ``wavelengths_m``; its PSF is
    read as a ``kernel_size x kernel_size`` patch of kernel pixels of side ``kernel_pixel_m``."""

    suboptic_m: float
    mask_res: int
    wavelengths_m: tuple[float, ...]
    distance_m: float = C.DISTANCE_MM * 1e-3
    kernel_pixel_m: float = C.KERNEL_PIXEL_UM * 1e-6
    kernel_size: int = 7
    pad_factor: float = 2.0  # zero-padding of the field before the FFT (SPEC: x2)

    @classmethod
    def from_design(cls, *, suboptic_mm: float, mask_res: int, wavelengths_nm, kernel_size: int = 7,
                    distance_mm: float = C.DISTANCE_MM, kernel_pixel_um: float = C.KERNEL_PIXEL_UM,
                    pad_factor: float = 2.0) -> "OpticalGeometry":
        """Build from design units. Validation is separate (`onn.optics.validity.check_geometry`)."""
        return cls(suboptic_m=suboptic_mm * 1e-3, mask_res=int(mask_res),
                   wavelengths_m=tuple(float(w) * 1e-9 for w in wavelengths_nm),
                   distance_m=distance_mm * 1e-3, kernel_pixel_m=kernel_pixel_um * 1e-6,
                   kernel_size=int(kernel_size), pad_factor=pad_factor)

    @property
    def pitch_m(self) -> float:
        """Side of one design sample (a block of identical pillars)."""
        return self.suboptic_m / self.mask_res

    @property
    def padded_res(self) -> int:
        """FFT grid side: ``pad_factor * mask_res`` rounded up to a 5-smooth size (fast FFTs)."""
        return next_smooth(math.ceil(self.pad_factor * self.mask_res))

    @property
    def wavelengths_nm(self) -> tuple[float, ...]:
        return tuple(round(w * 1e9, 6) for w in self.wavelengths_m)


def next_smooth(n: int) -> int:
    """Smallest integer >= n whose prime factors are all 2, 3 or 5."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1
