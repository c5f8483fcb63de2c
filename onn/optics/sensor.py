"""The camera: per-image gain to full scale, Poisson-Gaussian noise, quantisation (SPEC §1).

Defaults are ours (the paper gives none): 8-bit ADC, 10⁴ e⁻ full well, read noise 0.5 % of full
scale. Randomness comes only from the ``generator`` argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SensorConfig:
    full_well_e: float = 1.0e4
    read_noise_fs: float = 0.005  # read noise, fraction of full scale
    bits: int = 8
    noise: bool = True  # False: gain and quantisation only

    def __post_init__(self):
        if not self.full_well_e > 0:
            raise ValueError(f"full_well_e must be > 0, got {self.full_well_e}")
        if self.read_noise_fs < 0:
            raise ValueError(f"read_noise_fs must be >= 0, got {self.read_noise_fs}")
        if not 1 <= self.bits <= 24:
            raise ValueError(f"bits must be in [1, 24], got {self.bits}")


def read_sensor(irradiance: torch.Tensor, config: SensorConfig, *, generator: torch.Generator | None = None,
                noise: bool = True) -> torch.Tensor:
    """Turn non-negative irradiance into digital numbers scaled to [0, 1] of full scale.

    Args:
        irradiance: (B, ...) one exposure per leading index (all sub-images of an image share it).
        noise: also ``config.noise``; False gives the deterministic gain + quantisation path.
    Returns:
        Same shape. Gradients pass straight through the rounding and through the auto-exposure
        gain (the gain is a function of the image and the PSFs; detaching it slowed training).
    """
    levels = 2**config.bits - 1
    peak = irradiance.flatten(1).amax(1).clamp(min=1e-12)  # (B,)
    signal = irradiance / peak.view(-1, *([1] * (irradiance.ndim - 1)))  # fraction of full scale
    if noise and config.noise:
        # Shot noise (Poisson(e) ~ e + sqrt(e) N(0,1) at these counts) and read noise are independent
        # Gaussians, so one draw with the summed variance has the same distribution as two; in
        # full-scale units the shot variance is signal / full_well.
        std = (signal.clamp(min=0) / config.full_well_e + config.read_noise_fs**2).sqrt()
        z = torch.randn(signal.shape, generator=generator, device=signal.device, dtype=signal.dtype)
        signal = torch.addcmul(signal, std, z)
    # Quantise in full-scale units: the straight-through gradient is then the clamp's mask alone,
    # with no scaling by `levels` and back in the backward pass (the forward value is the same:
    # clipped + (q - clipped) is exactly q, the two being within half a level of each other).
    clipped = signal.clamp(0, 1)
    quantised = torch.round(clipped * levels) / levels
    return clipped + (quantised - clipped).detach()
