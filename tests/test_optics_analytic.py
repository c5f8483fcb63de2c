"""The propagation code against closed-form optics (not stored outputs)."""

import math

import numpy as np
import pytest
import torch
from scipy.special import fresnel

from onn.optics.geometry import next_smooth
from onn.optics.propagation import propagate, transfer_function

WAVELENGTH = 532e-9


def square_aperture(n, pitch, side):
    x = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * pitch
    inside = (x.abs() <= side / 2).double()
    return (inside[:, None] * inside[None, :]).to(torch.complex128)[None], x  # (1, N, N)


def test_square_aperture_matches_fresnel_closed_form():
    """Fresnel diffraction of a square aperture (product of Fresnel integrals) within 2 %."""
    n, pitch, side, z = 1024, 0.5e-6, 200e-6, 10e-3
    field, x = square_aperture(n, pitch, side)
    h = transfer_function(next_smooth(2 * n), pitch, z, (WAVELENGTH,), dtype=torch.complex128)
    numeric = propagate(field, h)[0].abs().square().numpy()

    scale = math.sqrt(2 / (WAVELENGTH * z))
    s2, c2 = fresnel(scale * (side / 2 - x.numpy()))
    s1, c1 = fresnel(scale * (-side / 2 - x.numpy()))
    one_axis = ((c2 - c1) + 1j * (s2 - s1)) / math.sqrt(2)  # |.|^2 -> 1 far inside the lit region
    analytic = np.abs(np.outer(one_axis, one_axis)) ** 2 / 1.0
    # The 1/(2i) prefactor of the closed form is split as 1/sqrt(2) per axis above (|.| only).
    error = np.linalg.norm(numeric - analytic) / np.linalg.norm(analytic)
    assert error < 0.02, error


def _lens_focus_profile(n, pitch, diameter, focal, circular):
    x = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * pitch
    yy, xx = torch.meshgrid(x, x, indexing="ij")
    r2 = xx**2 + yy**2
    pupil = (r2 <= (diameter / 2) ** 2) if circular else ((xx.abs() <= diameter / 2) & (yy.abs() <= diameter / 2))
    phase = -2 * math.pi / WAVELENGTH * (torch.sqrt(r2 + focal**2) - focal)  # exact thin-lens phase
    field = torch.polar(pupil.double(), phase)[None]
    h = transfer_function(next_smooth(2 * n), pitch, focal, (WAVELENGTH,), dtype=torch.complex128)
    intensity = propagate(field, h)[0].abs().square()
    centre = n // 2 if n % 2 else None
    assert centre is not None, "use an odd grid so a sample sits on the axis"
    return intensity[centre, centre:].numpy(), pitch


def _first_zero(profile, pitch):
    """Radius of the first minimum, refined by a parabola through the three samples around it."""
    i = next(i for i in range(1, len(profile) - 1) if profile[i] <= profile[i - 1] and profile[i] <= profile[i + 1])
    a, b, c = profile[i - 1], profile[i], profile[i + 1]
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (i + offset) * pitch


@pytest.mark.parametrize("circular, factor", [(True, 1.22), (False, 1.0)])
def test_thin_lens_focuses_to_the_diffraction_limit(circular, factor):
    """Airy first zero 1.22 λ z / D (circular) and λ z / D (square), within 3 %."""
    diameter, focal, pitch, n = 200e-6, 2e-3, 0.25e-6, 801
    profile, pitch = _lens_focus_profile(n, pitch, diameter, focal, circular)
    expected = factor * WAVELENGTH * focal / diameter
    assert abs(_first_zero(profile, pitch) / expected - 1) < 0.03


def _band_limited_field(n, generator):
    spectrum = torch.zeros(n, n, dtype=torch.complex128)
    k = n // 8  # only low frequencies: every component propagates and is inside the band limit
    spectrum[:k, :k] = torch.randn(k, k, dtype=torch.complex128, generator=generator)
    return torch.fft.ifft2(spectrum)[None]  # (1, N, N)


def test_power_is_conserved_for_propagating_fields(generator):
    n, pitch = 256, 1e-6
    field = _band_limited_field(n, generator)
    h = transfer_function(n, pitch, 1e-3, (WAVELENGTH,), dtype=torch.complex128)
    out = propagate(field, h)
    rel = abs(out.abs().square().sum() / field.abs().square().sum() - 1)
    assert rel < 1e-5


def test_forward_then_backward_recovers_the_field(generator):
    n, pitch, z = 256, 1e-6, 1e-3
    field = _band_limited_field(n, generator)
    there = propagate(field, transfer_function(n, pitch, z, (WAVELENGTH,), dtype=torch.complex128))
    back = propagate(there, transfer_function(n, pitch, -z, (WAVELENGTH,), dtype=torch.complex128))
    assert torch.allclose(back, field, atol=1e-10 * field.abs().max())


def test_zero_distance_is_identity(generator):
    field = torch.randn(2, 3, 64, 64, dtype=torch.complex64, generator=generator)
    h = transfer_function(128, 1e-6, 0.0, (635e-9, 532e-9, 450e-9))
    assert torch.allclose(propagate(field, h), field, atol=1e-5)


def test_transfer_function_is_cached_and_batched():
    h1 = transfer_function(128, 1e-6, 1e-3, (635e-9, 532e-9))
    h2 = transfer_function(128, 1e-6, 1e-3, (635e-9, 532e-9))
    assert h1 is h2 and h1.shape == (2, 128, 128)
    field = torch.ones(5, 2, 64, 64, dtype=torch.complex64)  # (batch, L, N, N)
    assert propagate(field, h1).shape == (5, 2, 64, 64)
