"""Refuse designs the simulation cannot represent faithfully, before any heavy work.

Each check raises `InfeasibleDesign` naming the quantity and what to change it to. A sweep records
such a design as infeasible with that reason instead of crashing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from onn.optics import constants as C
from onn.optics.geometry import OpticalGeometry
from onn.optics.propagation import band_limit_frequency

BYTES_COMPLEX64 = 8
AUTOGRAD_COPIES = 10  # live (M, M) complex buffers per field in a forward+backward (measured ~9: benchmarks/README.md)


class InfeasibleDesign(ValueError):
    """A design that cannot be built or faithfully simulated. ``quantity`` names the culprit;
    ``violation`` says how far it is from feasible, relative (0.2: the quantity must change by 20 %),
    1 where no such distance is known. A search ranks infeasible designs by it."""

    def __init__(self, quantity: str, message: str, violation: float = 1.0):
        super().__init__(f"{quantity}: {message}")
        self.quantity = quantity
        self.reason = message
        self.violation = violation


@dataclass(frozen=True)
class GeometryReport:
    """Derived numbers of a geometry that passed every check (for logs and result rows)."""

    pitch_um: float
    padded_res: int
    steer_angle_needed_deg: float  # to bring light from the aperture edge into the kernel window
    steer_angle_max_deg: float  # what the mask pitch can represent at the shortest wavelength
    band_limit_per_mm: float
    spot_um: float  # diffraction-limited spot (first zero, square aperture), longest wavelength
    grid_bytes: int


def check_geometry(geometry: OpticalGeometry, *, image_size: int | None = None,
                   spacing_mm: float = C.SUBOPTIC_SPACING_MM, n_fields: int = 1,
                   max_grid_bytes: float = 4 * 2**30) -> GeometryReport:
    """Check a sub-optic geometry; ``n_fields`` sub-optics are simulated together (memory check).

    Raises `InfeasibleDesign` with the quantity to change; returns a `GeometryReport` otherwise.
    """
    g = geometry
    _positive("suboptic_mm", g.suboptic_m * 1e3)
    _positive("distance_mm", g.distance_m * 1e3)
    _positive("kernel_pixel_um", g.kernel_pixel_m * 1e6)
    if not g.wavelengths_m:
        raise InfeasibleDesign("wavelengths_nm", "the wavelength set is empty; use at least one wavelength")
    for wavelength_nm in g.wavelengths_nm:
        _positive("wavelengths_nm", wavelength_nm)
        if float(wavelength_nm) not in C.PHASE_FIT:
            raise InfeasibleDesign("wavelengths_nm", f"{wavelength_nm} nm has no meta-atom phase fit; "
                                                     f"use one of {sorted(C.PHASE_FIT)} nm")
    if g.mask_res < 2:
        raise InfeasibleDesign("mask_res", f"must be >= 2 samples per side, got {g.mask_res}")
    if g.kernel_size < 1:
        raise InfeasibleDesign("kernel_size", f"must be >= 1, got {g.kernel_size}")
    if g.pad_factor < 1:
        raise InfeasibleDesign("pad_factor", f"must be >= 1, got {g.pad_factor}")

    pitch_um = g.pitch_m * 1e6
    pixel_um = g.kernel_pixel_m * 1e6
    suboptic_um = g.suboptic_m * 1e6
    if suboptic_um < pixel_um:
        raise InfeasibleDesign("suboptic_mm", f"the sub-optic ({suboptic_um:.2f} µm) is smaller than one "
                                              f"kernel pixel ({pixel_um:.2f} µm); make it >= {pixel_um * 1e-3:.4f} mm")
    if pitch_um < C.DESIGN_PITCH_UM - 1e-9:
        max_res = math.floor(suboptic_um / C.DESIGN_PITCH_UM)
        raise InfeasibleDesign("mask_res", f"pitch {pitch_um:.4f} µm is finer than one design sample of 2x2 "
                                           f"pillars ({C.DESIGN_PITCH_UM} µm); use mask_res <= {max_res}",
                               (g.mask_res - max_res) / g.mask_res)
    if pitch_um > pixel_um / 2:
        min_res = math.ceil(2 * suboptic_um / pixel_um)
        raise InfeasibleDesign("mask_res", f"pitch {pitch_um:.2f} µm cannot resolve the {pixel_um:.2f} µm kernel "
                                           f"pixel (needs <= half of it); use mask_res >= {min_res}",
                               (min_res - g.mask_res) / min_res)
    window_um = g.kernel_size * pixel_um
    if window_um > suboptic_um:
        raise InfeasibleDesign("suboptic_mm", f"the {g.kernel_size}x{g.kernel_size} kernel window ({window_um:.0f} µm) "
                                              f"is wider than the sub-optic ({suboptic_um:.0f} µm); make suboptic_mm "
                                              f">= {window_um * 1e-3:.3f} or use a smaller kernel")

    # Light from the aperture edge must bend by theta to reach the far side of the kernel window;
    # a mask sampled at pitch p represents sin(theta) <= lambda / (2 p) (shortest wavelength is worst).
    reach_um = suboptic_um / 2 + window_um / 2
    sin_needed = reach_um / math.hypot(reach_um, g.distance_m * 1e6)
    sin_max = min(1.0, min(g.wavelengths_m) * 1e6 / (2 * pitch_um))
    if sin_needed > sin_max:
        min_res = math.ceil(g.suboptic_m * 2 * sin_needed / min(g.wavelengths_m))
        raise InfeasibleDesign(
            "mask_res", f"pitch {pitch_um:.2f} µm aliases at distance {g.distance_m * 1e3:g} mm: light from the "
                        f"aperture edge must bend {math.degrees(math.asin(sin_needed)):.1f}° but the mask represents "
                        f"at most {math.degrees(math.asin(sin_max)):.1f}° at {min(g.wavelengths_nm)} nm; use mask_res >= "
                        f"{min_res}, a smaller suboptic_mm or a longer distance", (min_res - g.mask_res) / min_res)
    # The band-limited transfer function must still carry those angles (an under-padded window cuts them).
    window_m = g.padded_res * g.pitch_m
    f_limit = min(band_limit_frequency(w, g.distance_m, window_m) for w in g.wavelengths_m)
    f_needed = max(sin_needed / w for w in g.wavelengths_m)
    if f_limit < f_needed:
        need = 2 * g.distance_m * f_needed * max(g.wavelengths_m) / g.suboptic_m
        raise InfeasibleDesign("pad_factor", f"the band limit ({f_limit * 1e-3:.0f}/mm) cuts the angles the PSF "
                                             f"needs ({f_needed * 1e-3:.0f}/mm) at this distance; use pad_factor >= {need:.1f}")
    spot_um = max(g.wavelengths_m) * g.distance_m / g.suboptic_m * 1e6
    if spot_um > pixel_um:
        min_mm = max(g.wavelengths_m) * g.distance_m / g.kernel_pixel_m * 1e3
        raise InfeasibleDesign("suboptic_mm", f"the diffraction-limited spot ({spot_um:.1f} µm) is larger than the "
                                              f"kernel pixel ({pixel_um:.2f} µm); make suboptic_mm >= {min_mm:.3f}")
    if image_size is not None:
        footprint_um = (image_size + g.kernel_size - 1) * pixel_um
        cell_um = suboptic_um + spacing_mm * 1e3
        if footprint_um > cell_um:
            raise InfeasibleDesign(
                "suboptic_mm", f"each sub-image ({image_size}+{g.kernel_size}-1 px = {footprint_um:.0f} µm) overlaps its "
                               f"neighbours (cell {cell_um:.0f} µm); make suboptic_mm >= "
                               f"{(footprint_um - spacing_mm * 1e3) * 1e-3:.3f}")
    grid_bytes = n_fields * len(g.wavelengths_m) * g.padded_res**2 * BYTES_COMPLEX64 * AUTOGRAD_COPIES
    if grid_bytes > max_grid_bytes:
        raise InfeasibleDesign("mask_res", f"simulating {n_fields} sub-optics x {len(g.wavelengths_m)} wavelengths on a "
                                           f"{g.padded_res}^2 grid needs ~{grid_bytes / 2**30:.1f} GiB "
                                           f"(limit {max_grid_bytes / 2**30:.1f} GiB); lower mask_res")
    return GeometryReport(pitch_um, g.padded_res, math.degrees(math.asin(sin_needed)),
                          math.degrees(math.asin(sin_max)), f_limit * 1e-3, spot_um, grid_bytes)


def min_mask_res(geometry: OpticalGeometry) -> int:
    """The smallest mask resolution at which this geometry neither aliases (the mask pitch must
    represent the steepest angle the PSF needs, at the shortest wavelength) nor fails to resolve
    the kernel pixel: `check_geometry`'s two lower bounds on ``mask_res``."""
    g = geometry
    suboptic_um, pixel_um = g.suboptic_m * 1e6, g.kernel_pixel_m * 1e6
    window_um = g.kernel_size * pixel_um
    reach_um = suboptic_um / 2 + window_um / 2
    sin_needed = reach_um / math.hypot(reach_um, g.distance_m * 1e6)
    aliasing = math.ceil(g.suboptic_m * 2 * sin_needed / min(g.wavelengths_m))
    resolving = math.ceil(2 * suboptic_um / pixel_um)
    return max(aliasing, resolving, 2)


def _positive(quantity: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InfeasibleDesign(quantity, f"must be a positive number, got {value}")
