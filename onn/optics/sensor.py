"""The camera: per-image gain to full scale, Poisson-Gaussian noise, quantisation (SPEC §1).

Defaults are ours (the paper gives none): 8-bit ADC, 10⁴ e⁻ full well, read noise 0.5 % of full
scale. Randomness comes only from the ``generator`` argument.

The readout is one fused operation (`_Readout`) with a hand-written backward: the training step
reads every (colour, half, kernel) sub-image of every image through it, and autograd's version of
the same arithmetic spent most of an optical layer's time on intermediate tensors and their
backward passes (benchmarks/README.md, "The sensor as one operation"). `read_difference` fuses the
digital K⁺ − K⁻ subtraction and the sum over colours into it. Both work under `torch.func.vmap`
(the probe NTK differentiates through them per sample).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch

PEAK_FLOOR = 1e-12  # an image with no light at all is read at this gain instead of dividing by zero


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


class _Readout(torch.autograd.Function):
    """Digital numbers of one exposure per image, as fractions of full scale.

    Forward, per reading ``x`` of image b (``p_b = max x`` over the image: the auto-exposure gain):
    ``s = x / p_b``; ``y = s + σ(s) z`` with ``σ(s) = sqrt(max(s, 0) / full_well + read_noise²)``
    (shot and read noise are independent Gaussians, so one draw with the summed variance has
    their joint distribution; in full-scale units the shot variance is s / full_well);
    ``q = round(clamp(y, 0, 1) · L) / L`` with ``L = 2^bits − 1``. With ``difference`` the readings
    are (B, C, 2, n, H, W) and the output is ``Σ_c q[:, c, 0] − q[:, c, 1]`` (B, n, H, W).

    Backward: the rounding passes the gradient straight through and the clamp only strictly inside
    (0, 1), as `torch.clamp` does;
    the noise's dependence on the signal and the gain's on the image (through the max, shared
    evenly by tied maxima) are differentiated exactly, as autograd would.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(readings, z, full_well, read_var, levels, difference):
        return _kernels()[0](readings, z, full_well, read_var, levels, difference)

    @staticmethod
    def setup_context(ctx, inputs, output):
        readings, z, full_well, read_var, _, difference = inputs
        _, noisy, std, peak = output
        ctx.save_for_backward(readings, z, noisy, std, peak)
        ctx.full_well, ctx.read_var, ctx.difference = full_well, read_var, difference
        ctx.mark_non_differentiable(*(t for t in output[1:] if t is not None))

    @staticmethod
    def backward(ctx, grad_out, *_):
        readings, z, noisy, std, peak = ctx.saved_tensors
        if torch.is_grad_enabled():
            # A double backward (the NTKD loss trains through the probe NTK's per-sample gradients)
            # differentiates this backward with respect to the readings: recompute the gain, signal
            # and noise from them, differentiably, instead of using the saved detached ones.
            _, noisy, std, peak = _readout_forward(readings, z, ctx.full_well, ctx.read_var, 1, False)
        grad = _kernels()[1](grad_out, readings, z, noisy, std, peak, ctx.full_well, ctx.difference)
        return grad, None, None, None, None, None


def _readout_forward(readings, z, full_well: float, read_var: float, levels: int, difference: bool):
    """`_Readout`'s forward arithmetic: (output, noisy signal, noise std or None, gain (B,))."""
    batch = readings.shape[0]
    peak = readings.reshape(batch, -1).amax(1).clamp(min=PEAK_FLOOR)  # (B,)
    signal = readings / peak.view(batch, *[1] * (readings.ndim - 1))  # fraction of full scale
    if z is None:
        noisy, std = signal, None
    else:
        std = (signal.clamp(min=0) / full_well + read_var).sqrt()
        noisy = torch.addcmul(signal, std, z)
    q = torch.round(noisy.clamp(0, 1) * levels) / levels
    out = q[:, :, 0].sum(1) - q[:, :, 1].sum(1) if difference else q  # (B, n, H, W) or readings' shape
    return out, noisy, std, peak


def _readout_backward(grad_out, readings, z, noisy, std, peak, full_well: float, difference: bool):
    """`_Readout`'s backward arithmetic: the gradient with respect to the readings."""
    batch = readings.shape[0]
    view = (batch, *[1] * (readings.ndim - 1))
    if difference:  # d out / d q[:, c, h] = +1 for K⁺ (h = 0), -1 for K⁻, every colour c
        grad = torch.stack((grad_out, -grad_out), 1).unsqueeze(1)  # (B, 1, 2, n, H, W), broadcast over C
    else:
        grad = grad_out
    if z is not None:  # d y / d s = 1 + z dσ/ds, dσ/ds = 1 / (2 full_well σ) (readings are light: s >= 0)
        grad = grad * (z / std * (0.5 / full_well) + 1.0)
    grad = torch.where((noisy > 0) & (noisy < 1), grad, 0.0)  # clamp(0, 1) passes strictly inside
    # s = x / p: d s / d x = 1 / p, d s / d p = -x / p²; p = max x (clamped) passes its gradient to the
    # maxima, shared evenly between ties, as torch.amax does.
    grad_peak = -(grad * readings).reshape(batch, -1).sum(1) / peak.square()  # (B,)
    grad_peak = torch.where(peak > PEAK_FLOOR, grad_peak, 0.0)
    ties = readings == peak.view(view)
    count = ties.reshape(batch, -1).sum(1).clamp(min=1)  # (B,)
    return grad / peak.view(view) + ties * (grad_peak / count).view(view)


_COMPILED: dict[str, object] = {}  # the torch.compile'd kernels, built on first use; "failed" once they cannot be


def _kernels():
    """The (forward, backward) arithmetic: compiled by torch.compile when ONN_COMPILE=1 (one fused
    C++ loop each on CPU: 2-2.5x faster for a training step, benchmarks/README.md), else eager. A
    machine that cannot compile (no C++ toolchain) falls back to eager once, with a warning."""
    if os.environ.get("ONN_COMPILE") != "1" or "failed" in _COMPILED:
        return _readout_forward, _readout_backward
    if not _COMPILED:
        _COMPILED.update(forward=_guarded(_readout_forward), backward=_guarded(_readout_backward))
    return _COMPILED["forward"], _COMPILED["backward"]


def _guarded(fn):
    compiled = torch.compile(fn, dynamic=True)

    def call(*args):
        if "failed" in _COMPILED:
            return fn(*args)
        try:
            return compiled(*args)
        except Exception as exc:  # inductor's errors have many types; any of them means: run eager
            warnings.warn(f"torch.compile of the sensor readout failed ({type(exc).__name__}: {str(exc)[:200]}); "
                          f"running it eagerly from now on", RuntimeWarning, stacklevel=2)
            _COMPILED["failed"] = True
            return fn(*args)

    return call


def _noise(shape: torch.Size, config: SensorConfig, generator: torch.Generator | None, like: torch.Tensor,
           noise: bool) -> torch.Tensor | None:
    if not (noise and config.noise):
        return None
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def read_sensor(irradiance: torch.Tensor, config: SensorConfig, *, generator: torch.Generator | None = None,
                noise: bool = True) -> torch.Tensor:
    """Turn non-negative irradiance into digital numbers scaled to [0, 1] of full scale (`_Readout`).

    Args:
        irradiance: (B, ...) one exposure per leading index (all sub-images of an image share it).
        noise: also ``config.noise``; False gives the deterministic gain + quantisation path.
    Returns:
        Same shape. Gradients pass straight through the rounding and through the auto-exposure
        gain (the gain is a function of the image and the PSFs; detaching it slowed training).
    """
    z = _noise(irradiance.shape, config, generator, irradiance, noise)
    out, *_ = _Readout.apply(irradiance, z, config.full_well_e, config.read_noise_fs**2, 2**config.bits - 1, False)
    return out


def read_difference(readings: torch.Tensor, config: SensorConfig, *, generator: torch.Generator | None = None,
                    noise: bool = True) -> torch.Tensor:
    """Read (B, C, 2, n, H, W) sub-images [colour, K⁺/K⁻, kernel] of one exposure per image and
    return the digital ``Σ_c K⁺ − K⁻`` images (B, n, H, W). Equal to reading with `read_sensor`,
    then summing over colours and subtracting, with the same noise draws; one fused operation."""
    z = _noise(readings.shape, config, generator, readings, noise)
    out, *_ = _Readout.apply(readings, z, config.full_well_e, config.read_noise_fs**2, 2**config.bits - 1, True)
    return out
