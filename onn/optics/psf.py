"""Sub-optic point-spread functions: from a pillar-width map to intensity on the sensor, and
between the fine sensor-plane grid and the coarse grid of kernel pixels.

Convention: the optical layer computes ``conv2d(image, K)`` (a cross-correlation, as torch does).
Incoherent imaging convolves the scene with the PSF, so the PSF that realises kernel ``K`` is
``K`` rotated by 180° (`kernel_to_psf` / `psf_to_kernel`).
"""

from __future__ import annotations

import torch

from onn.optics.geometry import OpticalGeometry
from onn.optics.metasurface import transmission
from onn.optics.propagation import propagate, transfer_function


def kernel_to_psf(kernel: torch.Tensor) -> torch.Tensor:
    """(..., k, k) kernel -> the PSF (same shape) that realises it under incoherent imaging."""
    return kernel.flip(-1, -2)


psf_to_kernel = kernel_to_psf  # a 180° rotation is its own inverse


def split_signed(kernels: torch.Tensor) -> torch.Tensor:
    """(n, C, k, k) signed kernels -> (n, 2, C, k, k) non-negative halves [K⁺, K⁻]."""
    return torch.stack([kernels.clamp(min=0), (-kernels).clamp(min=0)], dim=1)


def pixel_integration_matrix(n_samples: int, pitch_m: float, n_pixels: int, pixel_m: float,
                             shift_m: float = 0.0, *, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """(n_pixels, n_samples) matrix R with R[a, n] = the fraction of sample cell n that falls in
    pixel a, both grids centred on the optical axis (pixels offset by ``shift_m``).

    ``R @ I @ R.T`` integrates a sampled intensity over square pixels (energy per pixel);
    ``R.T @ K @ R`` spreads pixel values back onto the samples (the upsampled target).
    """
    samples = (torch.arange(n_samples, dtype=torch.float64) - (n_samples - 1) / 2) * pitch_m
    pixels = (torch.arange(n_pixels, dtype=torch.float64) - (n_pixels - 1) / 2) * pixel_m + shift_m
    lo = torch.maximum(samples[None, :] - pitch_m / 2, pixels[:, None] - pixel_m / 2)
    hi = torch.minimum(samples[None, :] + pitch_m / 2, pixels[:, None] + pixel_m / 2)
    return ((hi - lo).clamp(min=0) / pitch_m).to(dtype=dtype, device=device)


def sensor_intensity(width_um: torch.Tensor, geometry: OpticalGeometry, *, phase_levels: int | None = None,
                     distance_m: float | None = None) -> torch.Tensor:
    """Intensity on the sensor plane under unit plane-wave illumination of one sub-optic.

    Args:
        width_um: (..., N, N) pillar widths, N = ``geometry.mask_res``.
        distance_m: override of ``geometry.distance_m`` (e.g. a fabrication error).
    Returns:
        (..., L, N, N) intensity per sample, normalised so that the incident power is 1: the sum
        over the window is the fraction of light that lands under the sub-optic.
    """
    n = geometry.mask_res
    field = transmission(width_um, geometry.wavelengths_nm, phase_levels=phase_levels)  # (..., L, N, N) complex
    transfer = transfer_function(geometry.padded_res, geometry.pitch_m,
                                 geometry.distance_m if distance_m is None else distance_m,
                                 geometry.wavelengths_m, device=width_um.device)
    out = propagate(field, transfer)
    return out.abs().square() / (n * n)


def integrate_to_kernel(intensity: torch.Tensor, geometry: OpticalGeometry,
                        shift_px: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """(..., N, N) sensor-plane intensity -> (..., k, k) energy per kernel pixel, the kernel
    window centred on the axis and displaced by ``shift_px`` = (dy, dx) kernel pixels."""
    n, k = geometry.mask_res, geometry.kernel_size
    make = lambda shift: pixel_integration_matrix(n, geometry.pitch_m, k, geometry.kernel_pixel_m,
                                                  shift * geometry.kernel_pixel_m, device=intensity.device)
    rows, cols = make(shift_px[0]), make(shift_px[1])  # (k, N) each
    return rows @ intensity @ cols.T


def target_on_grid(psf_half: torch.Tensor, geometry: OpticalGeometry) -> torch.Tensor:
    """(..., k, k) non-negative kernel-pixel PSF -> (..., N, N) target on the sensor-plane grid
    (each kernel pixel's value spread over the samples under it; zero outside the window)."""
    r = pixel_integration_matrix(geometry.mask_res, geometry.pitch_m, geometry.kernel_size,
                                 geometry.kernel_pixel_m, device=psf_half.device)  # (k, N)
    return r.T @ psf_half @ r


def normalised_l2_error(actual: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``|| a/||a|| - t/||t|| ||`` over the last two dims (SPEC §1 design error): 0 for identical
    shapes, sqrt(2) for disjoint supports."""
    a = actual / (actual.square().sum((-1, -2), keepdim=True).sqrt() + eps)
    t = target / (target.square().sum((-1, -2), keepdim=True).sqrt() + eps)
    return (a - t).square().sum((-1, -2)).sqrt()
