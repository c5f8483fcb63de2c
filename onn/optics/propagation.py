"""Band-limited angular-spectrum propagation of scalar fields.

Method: K. Matsushima and T. Shimobaba, "Band-limited angular spectrum method for numerical
simulation of free-space propagation in far and near fields", Opt. Express 17, 19662 (2009).
The field is zero-padded to an ``M x M`` window (M >= 2N avoids circular wrap-around), its
angular spectrum is multiplied by the transfer function ``H = exp(i 2π z sqrt(1/λ² - fx² - fy²))``,
evanescent waves are dropped, and frequencies above the band limit of their Eq. (13),
``f_limit = 1 / (λ sqrt((2 Δf z)² + 1))`` with ``Δf = 1 / (M pitch)``, are cut because the
sampled transfer function would alias there.

Two steps, as in chromatix: build ``H`` once (`transfer_function`, cached per grid, pitch,
distance and wavelength set), apply it many times (`propagate`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def band_limit_frequency(wavelength_m: float, distance_m: float, window_m: float) -> float:
    """Matsushima & Shimobaba (2009) Eq. (13): highest frequency (1/m) the sampled transfer
    function represents without aliasing, for a padded window of side ``window_m``."""
    delta_f = 1.0 / window_m
    return 1.0 / (wavelength_m * math.sqrt((2.0 * delta_f * abs(distance_m)) ** 2 + 1.0))


def transfer_function(padded_res: int, pitch_m: float, distance_m: float, wavelengths_m: tuple[float, ...], *,
                      band_limit: bool = True, dtype: torch.dtype = torch.complex64,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """Angular-spectrum transfer function, shape (L, M, M), in ``torch.fft.fft2`` frequency order.

    Cached: the same arguments return the same (read-only by convention) tensor.
    """
    return _transfer_function(int(padded_res), float(pitch_m), float(distance_m),
                              tuple(float(w) for w in wavelengths_m), bool(band_limit), dtype, str(device))


@lru_cache(maxsize=64)
def _transfer_function(m: int, pitch_m: float, distance_m: float, wavelengths_m: tuple[float, ...],
                       band_limit: bool, dtype: torch.dtype, device: str) -> torch.Tensor:
    freqs = torch.fft.fftfreq(m, d=pitch_m, dtype=torch.float64)  # (M,) 1/m
    fx2 = freqs[None, :] ** 2
    fy2 = freqs[:, None] ** 2
    layers = []
    for wavelength in wavelengths_m:
        arg = 1.0 / wavelength**2 - fx2 - fy2  # (M, M)
        propagating = arg > 0
        kz_z = 2 * math.pi * distance_m * torch.sqrt(arg.clamp(min=0))
        h = torch.polar(propagating.double(), kz_z)
        if band_limit and distance_m != 0:
            f_limit = band_limit_frequency(wavelength, distance_m, m * pitch_m)
            keep = (fx2 <= f_limit**2) & (fy2 <= f_limit**2)
            h = h * keep
        layers.append(h)
    return torch.stack(layers).to(dtype=dtype, device=device)  # (L, M, M)


def propagate(field: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
    """Propagate fields with a precomputed transfer function.

    Args:
        field: (..., L, N, N) complex, sampled at the pitch ``transfer`` was built for.
        transfer: (L, M, M) complex from `transfer_function`, M >= N (M >= 2N avoids wrap-around).
    Returns:
        (..., L, N, N) complex field in the same window at the output plane.

    The field is zero-padded at the far edges by ``fft2(s=...)`` (no copy); since the convolution
    kernel is centred at the origin, the linear-convolution result for the original window lands
    back in ``[:N, :N]`` and wrap-around falls in the padding.
    """
    n = field.shape[-1]
    m = transfer.shape[-1]
    spectrum = torch.fft.fft2(field, s=(m, m))  # (..., L, M, M)
    out = torch.fft.ifft2(spectrum * transfer)
    return out[..., :n, :n]
