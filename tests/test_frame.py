"""The full-frame model (`onn.optics.frame`): where all the light goes, checked against a brute-force
propagation of the whole metasurface on a small grid."""

import pytest
import torch
import torch.nn.functional as F

from onn.layers import correlate_same
from onn.optics.frame import Frame, coherent_frame_intensity, frame_halves, light_budget, _region
from onn.optics.geometry import OpticalGeometry
from onn.optics.layout import suboptic_layout
from onn.optics.psf import integrate_to_kernel, kernel_to_psf, sensor_intensity

# A small camera: 64 µm sub-optics sampled at 2 µm, 16 µm apart (an 80 µm cell, 40 samples), 0.3 mm
# from the sensor; 3 µm kernel pixels, 3x3 kernels, 9x9 sub-images (27 µm). Light reaches ~40 µm
# past a sub-optic's edge, so neighbours see each other.
GEOMETRY = OpticalGeometry(suboptic_m=64e-6, mask_res=32, wavelengths_m=(532e-9,), distance_m=0.3e-3,
                           kernel_pixel_m=3e-6, kernel_size=3)
LAYOUT = suboptic_layout(aperture_mm=0.144, suboptic_mm=0.064, spacing_mm=0.016)  # 2 x 2 sub-optics
IMAGE = 9


def widths(count: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 32, 32, generator=torch.Generator().manual_seed(seed)) * 0.24


def test_the_light_budget_closes_for_every_sub_optic_and_colour():
    geometry = OpticalGeometry(**{**GEOMETRY.__dict__, "wavelengths_m": (635e-9, 532e-9, 450e-9)})
    budget = light_budget(widths(4), geometry, Frame.of(LAYOUT, 4, IMAGE))
    assert budget.total.shape == (4, 3)
    assert torch.allclose(budget.total, torch.ones(4, 3, dtype=torch.float64), atol=1e-3), budget.total
    for term in budget.TERMS:
        assert (getattr(budget, term) >= -1e-6).all(), term
    assert (budget.in_window < 1).all() and (budget.other_subimages > 0).all()


def test_one_sub_optic_lit_alone_puts_light_into_its_neighbours_sub_images():
    frame = Frame.of(LAYOUT, 4, IMAGE)
    budget = light_budget(widths(1), GEOMETRY, frame)  # only sub-optic 0 emits; all four are read
    assert float(budget.other_subimages[0, 0]) > 1e-3, budget.means()
    # ... and it is there on the sensor: the neighbour's effective kernel gets light from sub-optic 0
    lit = frame_halves(torch.cat([widths(1), torch.zeros(1, 32, 32)])[None], torch.ones(1, 2, 1), GEOMETRY,
                       Frame.of(LAYOUT, 2, IMAGE))
    assert float(lit[0, 1].sum()) > 1e-3


def test_the_full_frame_model_equals_a_brute_force_propagation_of_the_whole_metasurface():
    """Each sub-image's effective kernel equals the whole metasurface propagated on one large grid
    (each sub-optic's intensity summed: the model's incoherent idealisation), integrated over that
    sub-image's pixels. The coherent whole-aperture field differs by the interference term, which
    this camera's pixels do not average away completely: reported, not asserted equal."""
    maps = widths(4, seed=1)
    frame = Frame.of(LAYOUT, 4, IMAGE)
    # Both padded x4: on this camera the light scattered past the window wraps around at x2 (0.3 %).
    model = kernel_to_psf(frame_halves(maps.view(2, 2, 32, 32), torch.ones(2, 2, 1), GEOMETRY, frame, pad=4.0))
    coherent, incoherent = coherent_frame_intensity(maps, GEOMETRY, frame, pad=4.0)
    size = 2 * IMAGE - 1
    for i, centre in enumerate(frame.centres_m):
        brute = _region(incoherent.double(), GEOMETRY.pitch_m, size, GEOMETRY.kernel_pixel_m, centre)
        ours = model.reshape(4, 1, size, size)[i]
        assert torch.allclose(ours.double(), brute, atol=1e-3 * float(brute.max())), (i, (ours - brute).abs().max())
    assert float(coherent.sum()) == pytest.approx(float(incoherent.sum()), rel=0.05)  # interference moves light, adds none


def test_an_ideal_baffle_stops_all_crosstalk():
    budget = light_budget(widths(4), GEOMETRY, Frame.of(LAYOUT, 4, IMAGE, baffle=True))
    assert float(budget.other_subimages.abs().max()) < 1e-9
    assert torch.allclose(budget.total, torch.ones_like(budget.total), atol=1e-3)
    unbaffled = light_budget(widths(4), GEOMETRY, Frame.of(LAYOUT, 4, IMAGE))
    assert torch.allclose(budget.in_window, unbaffled.in_window)  # the baffle takes nothing from the own window


def test_the_own_window_of_the_frame_kernel_is_the_window_models_kernel():
    """With a baffle the effective kernel's central k x k is what the window model keeps, once the
    window model is padded enough (at its x2 default on this camera, light wraps around by ~5 %)."""
    maps = widths(2, seed=2).view(1, 2, 32, 32)
    halves = frame_halves(maps, torch.ones(1, 2, 1), GEOMETRY, Frame.of(LAYOUT, 2, IMAGE, baffle=True), pad=4.0)
    centre, k = IMAGE - 1, GEOMETRY.kernel_size
    padded = OpticalGeometry(**{**GEOMETRY.__dict__, "pad_factor": 16.0})
    window = integrate_to_kernel(sensor_intensity(maps, padded), padded)  # (1, 2, 1, k, k), PSF convention
    core = kernel_to_psf(halves)[..., centre - k // 2:centre + k // 2 + 1, centre - k // 2:centre + k // 2 + 1]
    torch.testing.assert_close(core, window, rtol=2e-3, atol=2e-6)


def test_penalising_stray_light_in_inverse_design_keeps_more_light_in_the_window():
    from onn.optics.inverse_design import inverse_design

    kernels = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(3))
    frame = Frame.of(LAYOUT, 4, IMAGE)
    kept = {}
    for weight in (0.0, 3.0):
        result = inverse_design(kernels, GEOMETRY, steps=40, generator=torch.Generator().manual_seed(0),
                                stray_weight=weight)
        kept[weight] = float(light_budget(result.widths_um.reshape(4, 32, 32), GEOMETRY, frame).in_window.mean())
    assert kept[3.0] > kept[0.0] + 0.02, kept


def test_overlapping_sub_images_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        light_budget(widths(1), GEOMETRY, Frame.of(LAYOUT, 4, image_size=40))


def test_wide_kernels_are_applied_by_fft_with_the_same_numbers():
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    weight = torch.rand(5, 1, 55, 55, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(correlate_same(x, weight), F.conv2d(x, weight, padding=27), rtol=1e-4, atol=1e-3)
