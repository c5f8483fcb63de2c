"""Metasurface, PSF, layout, sensor, inverse design and validity checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from onn.design import PRESETS
from onn.energy import hybrid_energy
from onn.layers import OpticalConv, match_colours
from onn.models import HybridONN
from onn.optics import constants as C
from onn.optics.geometry import OpticalGeometry
from onn.optics.inverse_design import inverse_design
from onn.optics.layout import suboptic_layout
from onn.optics.metasurface import fabricable_widths, phase_waves, quantise_phase
from onn.optics.psf import integrate_to_kernel, pixel_integration_matrix, sensor_intensity
import onn.optics.sensor
from onn.optics.sensor import SensorConfig, read_difference, read_sensor
from onn.optics.validity import InfeasibleDesign, check_geometry


@pytest.mark.parametrize("colours", [1, 3])
def test_ideal_optical_conv_equals_conv2d(colours, generator):
    layer = OpticalConv(n_kernels=5, kernel_size=7, colours=colours, sensor=None, generator=generator)
    images = torch.rand(4, colours, 20, 20, generator=generator)
    expected = F.conv2d(images, layer.weight, padding=3)  # signed kernels, colours summed
    assert torch.allclose(layer(images), expected, atol=1e-5)


def test_grey_scene_on_colour_camera_and_colour_scene_on_mono_camera(generator):
    grey = torch.rand(2, 1, 12, 12, generator=generator)
    layer = OpticalConv(3, 3, colours=3, generator=generator)
    assert torch.allclose(layer(grey), F.conv2d(grey.expand(-1, 3, -1, -1), layer.weight, padding=1), atol=1e-5)
    mono = OpticalConv(3, 3, colours=1, generator=generator)
    colour = torch.rand(2, 3, 12, 12, generator=generator)
    assert torch.allclose(mono(colour), F.conv2d(colour.mean(1, keepdim=True), mono.weight, padding=1), atol=1e-5)


def test_frozen_halves_replace_the_kernels(generator):
    layer = OpticalConv(2, 3, colours=1, generator=generator)
    halves = torch.rand(2, 2, 1, 5, 5, generator=generator)
    layer.freeze_to(halves)
    images = torch.rand(1, 1, 9, 9, generator=generator)
    assert torch.allclose(layer(images), F.conv2d(images, halves[:, 0] - halves[:, 1], padding=2), atol=1e-5)
    with pytest.raises(ValueError, match="non-negative"):
        layer.freeze_to(-halves)


@pytest.mark.parametrize("colours", [1, 3])
def test_haze_is_a_uniform_kernel_over_the_sub_image(colours, generator):
    """A layer with ``haze`` h reads what a full-frame layer reads whose effective kernels are its
    own plus h times their light spread evenly over every (2I - 1)² scene offset."""
    halves = torch.rand(3, 2, colours, 5, 5, generator=generator, dtype=torch.float64)
    size, haze = 2 * 12 - 1, 2.5
    pad = (size - 5) // 2
    effective = F.pad(halves, (pad, pad, pad, pad)) + haze * halves.sum((-1, -2), keepdim=True) / size**2
    hazy, frame = OpticalConv(3, 5, colours), OpticalConv(3, 5, colours)
    hazy.freeze_to(halves, haze=haze)
    frame.freeze_to(effective, haze=0.0)
    scenes = torch.rand(4, colours, 12, 12, generator=generator, dtype=torch.float64)
    assert torch.allclose(hazy.readings(scenes), frame.readings(scenes), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="haze"):
        OpticalConv(3, 5, colours, haze=-0.1)


def test_stray_ratio_counts_the_light_outside_the_kernel_window():
    from onn.optics.frame import stray_ratio

    effective = torch.zeros(2, 1, 9, 9, dtype=torch.float64)
    effective[..., 3:6, 3:6] = 1.0  # 9 units in the 3 x 3 window
    effective[0, 0, 0, 0], effective[1, 0, 8, 4] = 4.5, 18.0
    assert torch.allclose(stray_ratio(effective, 3), torch.tensor([[0.5], [2.0]], dtype=torch.float64))


def test_sensor_is_seeded_quantised_and_scale_free():
    irradiance = torch.rand(3, 4, 8, 8) * 5
    config = SensorConfig()
    a = read_sensor(irradiance, config, generator=torch.Generator().manual_seed(1))
    b = read_sensor(irradiance, config, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.allclose(a * 255, torch.round(a * 255), atol=1e-4)  # 8-bit levels
    clean = read_sensor(irradiance, config, noise=False)
    assert torch.equal(clean, read_sensor(irradiance * 7, config, noise=False))  # auto-exposure
    noise = (a - clean).std()
    assert 0.003 < noise < 0.03  # shot noise ~1 % of full scale at 10^4 e-, read noise 0.5 %


def reference_readout(irradiance, config, generator=None, noise=True):
    """The sensor as plain autograd ops (the implementation the fused `_Readout` replaced): the
    specification its output and gradients are checked against."""
    levels = 2**config.bits - 1
    peak = irradiance.flatten(1).amax(1).clamp(min=1e-12)
    signal = irradiance / peak.view(-1, *([1] * (irradiance.ndim - 1)))
    if noise and config.noise:
        std = (signal.clamp(min=0) / config.full_well_e + config.read_noise_fs**2).sqrt()
        z = torch.randn(signal.shape, generator=generator, device=signal.device, dtype=signal.dtype)
        signal = torch.addcmul(signal, std, z)
    clipped = signal.clamp(0, 1)
    return clipped + (torch.round(clipped * levels) / levels - clipped).detach()


@pytest.mark.parametrize("noise", [True, False])
def test_fused_readout_matches_the_autograd_reference(noise):
    config = SensorConfig()
    readings = torch.rand(4, 3, 2, 5, 9, 9, generator=torch.Generator().manual_seed(0))  # (B, C, 2, n, H, W)
    readings[0, 1, 0, 2, 2:4, 2:4] = readings[0].max() + 0.5  # tied maxima share the gain's gradient
    readings[1] *= 0.01  # a dim image: the gain differs per image
    fused_in, reference_in = readings.clone().requires_grad_(), readings.clone().requires_grad_()
    fused = read_difference(fused_in, config, generator=torch.Generator().manual_seed(3), noise=noise)
    read = reference_readout(reference_in.view(4, -1, 9, 9), config, torch.Generator().manual_seed(3), noise)
    read = read.view(readings.shape)
    reference = read[:, :, 0].sum(1) - read[:, :, 1].sum(1)
    assert torch.allclose(fused, reference, atol=1e-6)  # the same noise draws, the same digital numbers
    grad = torch.randn(fused.shape, generator=torch.Generator().manual_seed(4))
    fused.backward(grad)
    reference.backward(grad)
    assert torch.allclose(fused_in.grad, reference_in.grad, rtol=1e-4, atol=1e-4 * reference_in.grad.abs().max())
    # read_sensor is the same operation without the subtraction
    plain = read_sensor(readings.view(4, -1, 9, 9), config, generator=torch.Generator().manual_seed(3), noise=noise)
    assert torch.allclose(plain.view(readings.shape), read.detach(), atol=1e-6)


def test_fused_readout_works_under_the_probe_ntk():
    """The probe NTK differentiates per sample (vmap + vjp) and the NTKD loss through that: the fused
    readout's Gram and its gradient equal those of the reference readout."""
    import onn.layers
    from onn.ntk import empirical_ntk

    layer = OpticalConv(3, 3, colours=1, sensor=SensorConfig(), generator=torch.Generator().manual_seed(0))
    images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.optics, self.head = layer, torch.nn.Linear(3 * 64, 4)

        def forward(self, x, *, generator=None, noise=True):
            return self.head(self.optics(x, generator=generator, noise=noise).flatten(1))

    model = Tiny()
    grams = {}
    for name, readout in (("fused", onn.layers.read_difference), ("reference", None)):
        if readout is None:  # the same model with the reference readout
            def reference_difference(readings, config, *, generator=None, noise=True):
                b, c, two, n, h, w = readings.shape
                read = reference_readout(readings.reshape(b, -1, h, w), config, generator, noise).view(readings.shape)
                return read[:, :, 0].sum(1) - read[:, :, 1].sum(1)
            onn.layers.read_difference = reference_difference
        try:
            model.zero_grad()
            gram = empirical_ntk(model, images, mode="probe", probes=2, generator=torch.Generator().manual_seed(2))
            gram.sum().backward()
            grams[name] = (gram.detach(), layer.weight.grad.clone(), model.head.weight.grad.clone())
        finally:
            onn.layers.read_difference = onn.optics.sensor.read_difference
    for fused, reference in zip(grams["fused"], grams["reference"]):
        assert torch.allclose(fused, reference, rtol=1e-4, atol=1e-5 * reference.abs().max())


def test_phase_fit_values_and_fabrication_limits():
    widths = torch.tensor([0.0, 0.03, 0.1, 0.3])
    made = fabricable_widths(widths)
    assert made.tolist() == pytest.approx([0.0, 0.0, 0.1, C.PILLAR_MAX_WIDTH_UM])
    phase = phase_waves(torch.tensor([[0.0, 0.233]]), (532.0,))
    assert phase[0, 0, 0] == 0.0
    a, w0, s = C.PHASE_FIT[532.0]
    assert float(phase[0, 0, 1]) == pytest.approx(-a * (math.exp((0.233**2 - 2 * w0 * 0.233) / -s) - 1), rel=1e-5)
    assert quantise_phase(torch.tensor([0.26]), 4).item() == pytest.approx(0.25)


def test_layout_counts_suboptics_and_kernels():
    reference = suboptic_layout(aperture_mm=4.0, suboptic_mm=0.938, spacing_mm=0.1)
    assert (reference.n_side, reference.n_suboptics, reference.n_kernels) == (3, 9, 4)
    exact = suboptic_layout(aperture_mm=2 * 0.5 + 0.1, suboptic_mm=0.5, spacing_mm=0.1)
    assert exact.n_side == 2  # (H + d) / (k + d) exactly 2 despite floating point
    assert len(reference.centres_mm()) == 9 and reference.centres_mm()[4] == (0.0, 0.0)
    with pytest.raises(ValueError, match="aperture_mm"):
        suboptic_layout(aperture_mm=-1, suboptic_mm=0.5)


def test_pixel_integration_conserves_energy():
    r = pixel_integration_matrix(n_samples=60, pitch_m=1e-6, n_pixels=3, pixel_m=20e-6)
    assert torch.allclose(r.sum(0), torch.ones(60))  # every sample fully inside the 60 µm window
    shifted = pixel_integration_matrix(60, 1e-6, 3, 20e-6, shift_m=10e-6)
    assert shifted.sum() == pytest.approx(50.0)  # a 10 µm shift moves 10 µm of samples out


def test_psf_of_a_flat_mask_keeps_the_light_and_centres_it():
    geometry = OpticalGeometry.from_design(suboptic_mm=0.3, mask_res=128, wavelengths_nm=(532.0,), kernel_size=7)
    widths = torch.zeros(1, 128, 128)
    intensity = sensor_intensity(widths, geometry)  # (1, 1, N, N)
    assert 0.9 < float(intensity.sum()) <= 1.0 + 1e-4  # a plane wave mostly stays under its aperture
    kernel = integrate_to_kernel(intensity, geometry)[0, 0]
    assert torch.allclose(kernel, kernel.flip(0, 1), rtol=1e-3)  # symmetric about the axis


def test_inverse_design_error_falls_with_optimisation(generator):
    geometry = OpticalGeometry.from_design(suboptic_mm=0.3, mask_res=96, wavelengths_nm=(635.0, 532.0, 450.0),
                                           kernel_size=5)
    kernels = torch.randn(2, 3, 5, 5, generator=generator)
    short = inverse_design(kernels, geometry, steps=2, generator=torch.Generator().manual_seed(0))
    long = inverse_design(kernels, geometry, steps=60, generator=torch.Generator().manual_seed(0))
    assert all(b < 0.8 * a for a, b in zip(short.kernel_error, long.kernel_error))
    assert long.realised_kernels.shape == (2, 3, 5, 5) and long.widths_um.shape == (2, 2, 96, 96)


REFERENCE = dict(suboptic_mm=0.4, mask_res=256, wavelengths_nm=(532.0,), kernel_size=7)


@pytest.mark.parametrize("change, quantity", [
    (dict(suboptic_mm=-0.4), "suboptic_mm"),
    (dict(suboptic_mm=0.005, mask_res=4), "suboptic_mm"),  # aperture smaller than one pixel
    (dict(wavelengths_nm=(0.0,)), "wavelengths_nm"),
    (dict(wavelengths_nm=()), "wavelengths_nm"),
    (dict(wavelengths_nm=(600.0,)), "wavelengths_nm"),  # no meta-atom data
    (dict(mask_res=96), "mask_res"),  # pitch 4.2 µm aliases at 2.4 mm
    (dict(mask_res=1024), "mask_res"),  # finer than a 2x2-pillar sample
    (dict(pad_factor=1.0), "pad_factor"),
    (dict(distance_mm=0.0), "distance_mm"),
])
def test_impossible_geometry_is_refused_naming_the_quantity(change, quantity):
    geometry = OpticalGeometry.from_design(**{**REFERENCE, **change})
    with pytest.raises(InfeasibleDesign) as info:
        check_geometry(geometry)
    assert info.value.quantity == quantity
    assert "use" in str(info.value) or "must" in str(info.value) or "make" in str(info.value)


def test_overlapping_sub_images_and_memory_are_refused():
    geometry = OpticalGeometry.from_design(**REFERENCE)
    with pytest.raises(InfeasibleDesign, match="overlaps its neighbours"):
        check_geometry(geometry, image_size=40, spacing_mm=0.0)
    with pytest.raises(InfeasibleDesign, match="GiB"):
        check_geometry(geometry, n_fields=10_000)
    report = check_geometry(geometry, image_size=28)
    assert report.pitch_um == pytest.approx(400 / 256)


@pytest.mark.parametrize("wavelengths, channels", [("rg", (0, 1)), ("gb", (1, 2)), ("rgb", (0, 1, 2))])
def test_a_colour_camera_sees_the_scene_channels_of_its_wavelengths(wavelengths, channels):
    design = PRESETS["poly"].with_(wavelengths=wavelengths)
    assert design.image_channels == channels
    scene = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    model = HybridONN(design, in_channels=3, image_size=16, n_outputs=4, generator=torch.Generator().manual_seed(1))
    layer = model.optics[0]
    assert torch.equal(match_colours(scene, layer.colours, layer.channels), scene[:, list(channels)])
    assert model(scene).shape == (2, 4)
    assert hybrid_energy(model).total_pj > 0  # MACs counted on an example scene of the model's input channels
    assert PRESETS["mono"].image_channels is None  # a mono camera sees the mean of a colour scene
