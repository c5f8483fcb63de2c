"""Inverse design: pillar-width maps whose PSFs reproduce signed kernels (SPEC §1).

Each signed kernel K (one k x k map per colour) is split into K⁺ = max(K, 0) and K⁻ = max(-K, 0);
one sub-optic realises each half, its single width map giving a different PSF at every wavelength.
Loss: the normalised L2 distance between the sensor-plane PSF and the target (the kernel half,
rotated into PSF convention and spread over the sensor grid), summed over colours; Adam with
lr 0.005 µm, widths initialised uniformly in [0, 0.24] µm (the authors' settings). Optionally
(``stray_weight`` > 0) plus that weight times the fraction of the incident light that misses the
kernel window: the shape loss is blind to light leaving the simulated window, which lands in the
neighbours' sub-images (`onn.optics.frame`).

The digital side scales each sub-image (per colour) by a calibration constant fitted at design
time (least squares of the realised PSF on its target), so realised kernels keep the trained
kernel's scale; a fabricated system keeps those constants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from onn.optics.geometry import OpticalGeometry
from onn.optics.psf import (integrate_to_kernel, kernel_to_psf, normalised_l2_error, psf_to_kernel,
                            sensor_intensity, split_signed, target_on_grid)


@dataclass(frozen=True)
class InverseDesignResult:
    widths_um: torch.Tensor  # (n, 2, N, N) width map of the K⁺ and K⁻ sub-optic of every kernel
    scales: torch.Tensor  # (n, 2, L) digital calibration per sub-image and colour
    realised_kernels: torch.Tensor  # (n, L, k, k) signed kernels the optics actually apply
    design_error: tuple[float, ...]  # per colour: mean normalised L2 error on the sensor grid (SPEC)
    kernel_error: tuple[float, ...]  # per colour: normalised L2 error of the signed kernel, kernel pixels
    efficiency: float  # mean fraction of incident light landing in the kernel window
    steps: int
    seconds: float


def realised_kernels(widths_um: torch.Tensor, geometry: OpticalGeometry, scales: torch.Tensor, *,
                     phase_levels: int | None = None, distance_m: float | None = None,
                     shift_px: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """Signed kernels (n, L, k, k) produced by width maps (n, 2, N, N) with calibration scales
    (n, 2, L): simulate both sub-optics, integrate onto kernel pixels, scale and subtract."""
    psf = integrate_to_kernel(sensor_intensity(widths_um, geometry, phase_levels=phase_levels, distance_m=distance_m),
                              geometry, shift_px)  # (n, 2, L, k, k)
    halves = psf_to_kernel(psf) * scales[..., None, None]
    return halves[:, 0] - halves[:, 1]


def inverse_design(kernels: torch.Tensor, geometry: OpticalGeometry, *, steps: int = 300, lr: float = 0.005,
                   generator: torch.Generator | None = None, phase_levels: int | None = None,
                   progress: Callable[[int, float], None] | None = None,
                   stray_weight: float = 0.0) -> InverseDesignResult:
    """Design all kernels of a layer at once.

    Args:
        kernels: (n, L, k, k) signed kernels, L = ``len(geometry.wavelengths_m)``, k = ``geometry.kernel_size``.
        stray_weight: weight of the light outside the kernel window in the loss (0: shape only).
        progress: called as ``progress(step, loss)`` every 25 steps.
    """
    n, n_colours, k, _ = kernels.shape
    if n_colours != len(geometry.wavelengths_m) or k != geometry.kernel_size:
        raise ValueError(f"kernels {tuple(kernels.shape)} do not match the geometry "
                         f"({len(geometry.wavelengths_m)} wavelengths, kernel_size {geometry.kernel_size})")
    start = time.perf_counter()
    kernels = kernels.detach().float()
    halves = split_signed(kernels)  # (n, 2, L, k, k)
    targets = target_on_grid(kernel_to_psf(halves), geometry)  # (n, 2, L, N, N)
    active = halves.flatten(-2).amax(-1) > 0  # (n, 2, L): an all-zero half needs no light
    n_grid = geometry.mask_res
    widths = torch.empty(n, 2, n_grid, n_grid, device=kernels.device)
    widths.uniform_(0.0, 0.24, generator=generator)
    widths.requires_grad_(True)
    optimiser = torch.optim.Adam([widths], lr=lr)
    for step in range(steps):
        optimiser.zero_grad(set_to_none=True)
        intensity = sensor_intensity(widths, geometry, phase_levels=phase_levels)  # (n, 2, L, N, N)
        loss = (normalised_l2_error(intensity, targets) * active).sum()
        if stray_weight:
            in_window = integrate_to_kernel(intensity, geometry).sum((-1, -2))  # (n, 2, L) of incident 1
            loss = loss + stray_weight * ((1 - in_window) * active).sum()
        loss.backward()
        optimiser.step()
        if progress is not None and (step % 25 == 0 or step == steps - 1):
            progress(step, float(loss.detach()))

    with torch.no_grad():
        widths = widths.detach()
        intensity = sensor_intensity(widths, geometry, phase_levels=phase_levels)
        design_error = _masked_mean(normalised_l2_error(intensity, targets), active)  # (L,)
        psf = integrate_to_kernel(intensity, geometry)  # (n, 2, L, k, k)
        halves_psf = kernel_to_psf(halves)
        scales = ((psf * halves_psf).sum((-1, -2)) / psf.square().sum((-1, -2)).clamp(min=1e-30)) * active
        realised_halves = psf_to_kernel(psf) * scales[..., None, None]  # (n, 2, L, k, k), as `realised_kernels`
        realised = realised_halves[:, 0] - realised_halves[:, 1]
        kernel_error = normalised_l2_error(realised, kernels).mean(0)  # (L,)
        efficiency = float(psf.sum((-1, -2))[active].mean()) if active.any() else 0.0
    return InverseDesignResult(widths, scales, realised, tuple(design_error.tolist()), tuple(kernel_error.tolist()),
                               efficiency, steps, time.perf_counter() - start)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over all but the last dim of (n, 2, L) values where mask holds."""
    weights = mask.float()
    return (values * weights).sum((0, 1)) / weights.sum((0, 1)).clamp(min=1)
