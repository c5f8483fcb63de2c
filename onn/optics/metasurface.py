"""Meta-atoms: pillar width -> phase at each wavelength, and the limits of fabrication."""

from __future__ import annotations

import math

import torch

from onn.optics import constants as C


def phase_waves(width_um: torch.Tensor, wavelengths_nm: tuple[float, ...]) -> torch.Tensor:
    """Phase delay (waves) of square SiN pillars of the given widths, at each wavelength.

    SPEC §1 fit: ``phi(w) = -A (exp((w² - 2 w0 w) / (-s)) - 1)``; width 0 (no pillar) gives 0.

    Args:
        width_um: (..., N, N) pillar widths in µm.
        wavelengths_nm: L wavelengths, each one of `constants.PHASE_FIT`.
    Returns:
        (..., L, N, N) phase in waves.
    """
    phases = []
    for wavelength in wavelengths_nm:
        try:
            a, w0, s = C.PHASE_FIT[float(wavelength)]
        except KeyError:
            raise ValueError(f"no meta-atom phase fit for {wavelength} nm; available: "
                             f"{sorted(C.PHASE_FIT)} nm") from None
        phases.append(-a * (torch.exp((width_um**2 - 2 * w0 * width_um) / (-s)) - 1))
    return torch.stack(phases, dim=-3)  # (..., L, N, N)


def fabricable_widths(width_um: torch.Tensor) -> torch.Tensor:
    """Apply fabrication limits: widths below the minimum become no pillar (0), widths above the
    maximum are clipped. The forward pass is exact; the gradient passes straight through the
    no-pillar step (a straight-through estimator) so inverse design can move widths across it."""
    clipped = width_um.clamp(0.0, C.PILLAR_MAX_WIDTH_UM)
    made = torch.where(clipped < C.PILLAR_MIN_WIDTH_UM, torch.zeros_like(clipped), clipped)
    return clipped + (made - clipped).detach()


def quantise_phase(phase_waves_: torch.Tensor, levels: int | None) -> torch.Tensor:
    """Round phase (waves) to ``levels`` equal steps per wave (None: continuous), straight-through."""
    if levels is None:
        return phase_waves_
    quantised = torch.round(phase_waves_ * levels) / levels
    return phase_waves_ + (quantised - phase_waves_).detach()


def transmission(width_um: torch.Tensor, wavelengths_nm: tuple[float, ...], *,
                 phase_levels: int | None = None) -> torch.Tensor:
    """Complex transmission ``exp(i 2π phi)`` of fabricable pillars, shape (..., L, N, N)."""
    phase = quantise_phase(phase_waves(fabricable_widths(width_um), wavelengths_nm), phase_levels)
    return torch.polar(torch.ones_like(phase), 2 * math.pi * phase)
