"""Fabrication errors (SPEC §4): seeded draws of what a made metasurface does differently.

The measured sub-image is ``ỹ = g·(a ⊛ (k + δ))`` shifted by ``s``, plus sensor noise ``ε``. Two
levels, both producing non-negative PSF halves (n, 2, C, k', k') that are frozen into a COPY of a
trained model with `OpticalConv.freeze_to` (the original stays untouched):

- `KernelErrors` (fast): perturb the kernel halves directly: brightness gain, sub-pixel shift,
  additive kernel error, chromatic blur.
- `PhysicalErrors`: perturb the pillar widths of an inverse design and re-simulate the
  metasurface (`onn.optics`): random and systematic width errors, phase quantisation,
  sub-optic misalignment against the sensor grid, metasurface-to-sensor distance error.

The two compose: `fabricate_physical` takes optional `KernelErrors` applied after the physics.
Sensor noise ``ε`` is not drawn here; it stays in the sensor model (`onn.optics.sensor`).

Randomness comes only from the ``generator`` argument, and every draw takes its random numbers
in a fixed order from unit distributions and scales them afterwards: the same seed gives the same
draw on every process, and the same draw at a larger magnitude is the same error, scaled (common
random numbers make accuracy-vs-magnitude curves smooth).
"""

from __future__ import annotations

import copy
import math
import statistics
from dataclasses import dataclass, replace
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from onn.models import HybridONN
from onn.optics.frame import Frame, frame_halves
from onn.optics.geometry import OpticalGeometry
from onn.optics.inverse_design import InverseDesignResult, inverse_design
from onn.optics.metasurface import fabricable_widths
from onn.optics.psf import integrate_to_kernel, normalised_l2_error, psf_to_kernel, sensor_intensity

GREEN_NM = 532.0  # chromatic blur is relative to the design's reference (green) wavelength


@dataclass(frozen=True)
class KernelErrors:
    """Kernel-level fabrication errors of the PSF halves (the paper gives no magnitudes).

    Terms, drawn per kernel half (sub-optic) unless said otherwise:
    - gain: ``g ~ U[gain_range]``, one per signed kernel when ``gain_shared`` (brightness error
      common to both halves: a scale of the signed kernel, which the digital affine can absorb),
      else one per half (a mismatch leaks the common-mode image through the subtraction);
      ``gain_residual``: a per-half relative gain ``U[-r, r]`` on top of a shared gain.
    - shift: one (dy, dx) per sub-optic, shared by its colours, each ``~ U[-shift_px, shift_px]``
      kernel pixels (bilinear: exact for a PSF constant over each kernel pixel); K⁺ and K⁻ move
      independently.
    - distortion: a smooth, spatially correlated relative error of each half's PSF shape,
      ``K ← K (1 + ε)`` with ε Gaussian noise blurred over ``distortion_corr_px`` kernel pixels,
      scaled so that the signed kernel's normalised L2 error (the ``kernel_error`` inverse design
      reports, `onn.optics.psf.normalised_l2_error`) is ``distortion_rel`` for every kernel and
      colour. It lives where the half has light: stray light off the designed support is the
      full-frame model's concern.
    - kernel noise: ``δ ~ N(0, (kernel_sigma_rel · max|k|)²)`` iid per kernel pixel of each half,
      then clamped at 0 (the uncalibrated guess; 0 in the calibrated model).
    - chromatic blur: a Gaussian of ``chromatic_blur_px`` kernel pixels on every colour but green.
    """

    gain_range: tuple[float, float] = (0.8, 1.2)
    shift_px: float = 0.25
    kernel_sigma_rel: float = 0.0
    chromatic_blur_px: float = 0.0
    gain_shared: bool = True
    gain_residual: float = 0.02
    distortion_rel: float = 0.05
    distortion_corr_px: float = 1.0

    def __post_init__(self):
        lo, hi = self.gain_range
        if not 0 <= lo <= hi:
            raise ValueError(f"gain_range must satisfy 0 <= low <= high, got {self.gain_range}")
        for name in ("shift_px", "kernel_sigma_rel", "chromatic_blur_px", "gain_residual", "distortion_rel",
                     "distortion_corr_px"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.gain_residual >= 1 or self.distortion_rel >= 1:
            raise ValueError(f"gain_residual and distortion_rel are relative errors below 1, got "
                             f"{self.gain_residual}, {self.distortion_rel}")

    def scaled(self, factor: float) -> "KernelErrors":
        """The same kind of error, ``factor`` times as large (0: the ideal system)."""
        lo, hi = self.gain_range
        return replace(self, gain_range=(1 + factor * (lo - 1), 1 + factor * (hi - 1)), shift_px=self.shift_px * factor,
                       kernel_sigma_rel=self.kernel_sigma_rel * factor,
                       chromatic_blur_px=self.chromatic_blur_px * factor,
                       gain_residual=min(self.gain_residual * factor, 0.99),
                       distortion_rel=min(self.distortion_rel * factor, 0.99))

    def border_px(self) -> int:
        """Kernel pixels added on each side so shifted / blurred light stays in the window."""
        return math.ceil(self.shift_px) + _blur_radius(self.chromatic_blur_px)


NO_KERNEL_ERRORS = KernelErrors(gain_range=(1.0, 1.0), shift_px=0.0, gain_residual=0.0, distortion_rel=0.0)
KernelPreset = Literal["calibrated", "uncalibrated"]
# The realised signed-kernel error inverse design reaches (benchmarks/README.md, "Design error vs mask
# resolution": 200 steps, 0.4 mm sub-optic): mono 0.04-0.05 from mask_res 160 to 512; RGB, mean over
# colours, 0.17 at 192, 0.14 at 256, 0.12 at 384, 0.10 at 682. The calibrated distortion takes the
# upper end at the presets' mask resolutions (mono 256, poly 288).
REALISED_KERNEL_ERROR = {1: 0.05, 2: 0.15, 3: 0.15}


def default_kernel_errors(colours: int, preset: KernelPreset = "calibrated") -> KernelErrors:
    """The kernel-level error model of a ``colours``-colour system.

    ``calibrated`` (default): brightness and alignment calibrated as the paper says they can be: a
    gain U[0.8, 1.2] per signed kernel with a ±2 % residual per half, a residual shift of ±0.25
    kernel pixel (±0.5 sensor pixel at the authors' 2x2 binning) per sub-optic, and a smooth
    distortion of the size inverse design actually reaches (`REALISED_KERNEL_ERROR`).
    ``uncalibrated``: the SPEC §4 first guess: an independent gain per half, ±1 kernel pixel shift,
    iid kernel noise of 10 % (mono) / 20 % (colour) of max|k|, no distortion term.
    """
    match preset:
        case "calibrated":
            return KernelErrors(distortion_rel=REALISED_KERNEL_ERROR.get(colours, 0.15))
        case "uncalibrated":
            return KernelErrors(gain_shared=False, gain_residual=0.0, shift_px=1.0, distortion_rel=0.0,
                                kernel_sigma_rel=0.10 if colours == 1 else 0.20)
    raise ValueError(f"unknown kernel-error preset {preset!r}; use 'calibrated' or 'uncalibrated'")


@dataclass(frozen=True)
class PhysicalErrors:
    """Metasurface-level fabrication errors, simulated through the optics.

    - ``width_sigma_nm``: random error of every design sample's pillar width (a design sample is a
      block of 2x2 pillars written together), Gaussian, independent per sample.
    - ``width_bias_nm``: systematic over/under-etch added to every pillar.
    - ``phase_levels``: phase quantised to this many levels per wave (None: continuous).
    - ``misalignment_px``: each sub-optic's offset against the sensor's kernel-pixel grid,
      ``~ U[-m, m]`` kernel pixels per axis, independent per sub-optic.
    - ``distance_error_um``: systematic metasurface-to-sensor distance error (one spacer per part;
      deterministic, so that every draw reuses one cached transfer function).
    Pillars the design leaves out (below the minimum width) stay out; pillars pushed below it vanish.
    """

    width_sigma_nm: float = 5.0
    width_bias_nm: float = 0.0
    phase_levels: int | None = None
    misalignment_px: float = 1.0
    distance_error_um: float = 0.0

    def __post_init__(self):
        if self.width_sigma_nm < 0 or self.misalignment_px < 0:
            raise ValueError(f"width_sigma_nm and misalignment_px must be >= 0, got {self.width_sigma_nm}, "
                             f"{self.misalignment_px}")
        if self.phase_levels is not None and self.phase_levels < 2:
            raise ValueError(f"phase_levels must be >= 2 or None (continuous), got {self.phase_levels}")

    def scaled(self, factor: float) -> "PhysicalErrors":
        """Width, misalignment and distance errors ``factor`` times as large (quantisation kept)."""
        return replace(self, width_sigma_nm=self.width_sigma_nm * factor, width_bias_nm=self.width_bias_nm * factor,
                       misalignment_px=self.misalignment_px * factor,
                       distance_error_um=self.distance_error_um * factor)


NO_PHYSICAL_ERRORS = PhysicalErrors(width_sigma_nm=0.0, misalignment_px=0.0)


# --- kernel level ------------------------------------------------------------------------------

def perturb_halves(halves: torch.Tensor, errors: KernelErrors, generator: torch.Generator,
                   wavelengths_nm: Sequence[float] | None = None) -> torch.Tensor:
    """One fabrication draw of a layer's PSF halves.

    Args:
        halves: (n, 2, C, k, k) non-negative [K⁺, K⁻] in kernel convention.
        wavelengths_nm: C wavelengths (colour order of the halves); needed for chromatic blur.
        generator: the only source of randomness (CPU); the draw does not depend on the device.
    Returns:
        (n, 2, C, k', k') non-negative, ``k' = k + 2 * errors.border_px()``.
    """
    n, two, colours, k, _ = halves.shape
    # Draw everything first, in a fixed order, from unit distributions (see the module docstring).
    gain_u = torch.rand(n, two, generator=generator)
    if errors.gain_shared:
        gain_u = gain_u[:, :1].expand(n, two)  # the same draws, K⁻ takes K⁺'s gain
    residual_u = torch.rand(n, two, generator=generator) * 2 - 1  # (n, 2) in [-1, 1]
    shift_u = torch.rand(n, two, 2, generator=generator) * 2 - 1  # (n, 2, [dy, dx]) in [-1, 1]
    noise_z = torch.randn(n, two, colours, k, k, generator=generator)
    distortion_z = torch.randn(n, two, colours, k, k, generator=generator)
    gain_u, residual_u, shift_u, noise_z, distortion_z = (t.to(halves) for t in (gain_u, residual_u, shift_u,
                                                                                 noise_z, distortion_z))
    out = halves
    if errors.distortion_rel > 0:
        out = distort(out, distortion_z, errors.distortion_rel, errors.distortion_corr_px)
    if errors.kernel_sigma_rel > 0:
        peak = (halves[:, 0] - halves[:, 1]).abs().flatten(1).amax(1)  # (n,) max|k| of each signed kernel
        out = (out + errors.kernel_sigma_rel * peak.view(n, 1, 1, 1, 1) * noise_z).clamp(min=0)
    border = errors.border_px()
    if border:
        out = F.pad(out, (border,) * 4)  # (n, 2, C, k', k')
    if errors.chromatic_blur_px > 0:
        if wavelengths_nm is None or len(wavelengths_nm) != colours:
            raise ValueError(f"chromatic blur needs the {colours} wavelengths of the halves' colours; pass "
                             f"wavelengths_nm (e.g. design.wavelengths_nm)")
        out = _blur_colours(out, errors.chromatic_blur_px, [w != GREEN_NM for w in wavelengths_nm])
    lo, hi = errors.gain_range
    gain = (lo + (hi - lo) * gain_u) * (1 + errors.gain_residual * residual_u)  # (n, 2)
    out = out * gain.view(n, two, 1, 1, 1)
    if errors.shift_px > 0:
        out = shift_bilinear(out, errors.shift_px * shift_u)
    return out.clamp(min=0)  # bilinear weights are >= 0; the clamp only removes rounding below 0


def distort(halves: torch.Tensor, z: torch.Tensor, size: float, corr_px: float) -> torch.Tensor:
    """``halves (1 + ε)`` with ε the unit noise ``z`` (n, 2, C, k, k) blurred over ``corr_px`` kernel
    pixels and scaled, per kernel and colour, until the signed kernel's normalised L2 error is
    ``size`` (two rescalings of a near-linear map: within a few % of it; ε is kept above −0.9 so
    that no half turns negative)."""
    eps = _blur_all(z, corr_px) if corr_px > 0 else z
    signed = halves[:, 0] - halves[:, 1]  # (n, C, k, k)
    scale = torch.full(signed.shape[:2], size, dtype=halves.dtype, device=halves.device)  # (n, C)
    for _ in range(3):
        made = halves * (1 + (eps * scale[:, None, :, None, None]).clamp(min=-0.9))
        error = normalised_l2_error(made[:, 0] - made[:, 1], signed)  # (n, C)
        scale = torch.where(error > 0, scale * size / error.clamp(min=1e-12), scale)
    return halves * (1 + (eps * scale[:, None, :, None, None]).clamp(min=-0.9))


def _blur_all(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Every (n, 2, C, K, K) image blurred by a normalised Gaussian of ``sigma_px`` (zero outside)."""
    return _blur_colours(images, sigma_px, [True] * images.shape[2])


def shift_bilinear(images: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """Move (n, 2, C, K, K) images by ``shift_px`` (n, 2, [dy, dx]) pixels, bilinearly, zeros
    coming in at the edges: ``out[y, x] = in[y - dy, x - dx]``. Energy is kept while the content
    stays inside the window."""
    n, two, colours, size, _ = images.shape
    flat = images.reshape(n * two, colours, size, size)  # (n*2, C, K, K)
    step = 2 / (size - 1)  # one pixel in grid_sample's [-1, 1] coordinates (align_corners=True)
    theta = torch.zeros(n * two, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -shift_px[..., 1].reshape(-1) * step  # x samples from x - dx
    theta[:, 1, 2] = -shift_px[..., 0].reshape(-1) * step
    grid = F.affine_grid(theta, list(flat.shape), align_corners=True)
    moved = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return moved.view(n, two, colours, size, size)


def _blur_radius(sigma_px: float) -> int:
    return math.ceil(3 * sigma_px) if sigma_px > 0 else 0


def _blur_colours(halves: torch.Tensor, sigma_px: float, blurred: list[bool]) -> torch.Tensor:
    """Gaussian blur (sigma in pixels, truncated at 3 sigma, normalised) of the chosen colours of
    (n, 2, C, K, K) halves; separable, zero outside the window."""
    radius = _blur_radius(sigma_px)
    x = torch.arange(-radius, radius + 1, dtype=halves.dtype, device=halves.device)
    g = torch.exp(-0.5 * (x / sigma_px) ** 2)
    g = g / g.sum()
    n, two, colours, size, _ = halves.shape
    out = halves.clone()
    for c, blur in enumerate(blurred):
        if blur:
            img = halves[:, :, c].reshape(n * two, 1, size, size)  # (n*2, 1, K, K)
            img = F.conv2d(img, g.view(1, 1, 1, -1), padding=(0, radius))
            img = F.conv2d(img, g.view(1, 1, -1, 1), padding=(radius, 0))
            out[:, :, c] = img.view(n, two, size, size)
    return out


def fabricate(model: HybridONN, errors: KernelErrors, generator: torch.Generator) -> HybridONN:
    """A copy of ``model`` whose optics are one fabrication draw of its current PSF halves
    (trained kernels, or realised ones if the model is already frozen), frozen; ``model`` is untouched.
    Kernel groups are drawn in order from the one generator."""
    made = copy.deepcopy(model)
    wavelengths = model.design.wavelengths_nm
    with torch.no_grad():
        for optics in made.optics:
            optics.freeze_to(perturb_halves(optics.halves().detach(), errors, generator, wavelengths))
    return made


# --- physical level ----------------------------------------------------------------------------

def perturb_widths(widths_um: torch.Tensor, errors: PhysicalErrors, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, N, N) designed widths (µm) -> fabricated widths (µm): the design's fabricable
    pillars plus bias and random error; pillars the design leaves out stay out."""
    z = torch.randn(widths_um.shape, generator=generator).to(widths_um)
    made = fabricable_widths(widths_um.detach())
    error_um = (errors.width_bias_nm + errors.width_sigma_nm * z) * 1e-3
    return torch.where(made > 0, made + error_um, made)  # `sensor_intensity` applies the limits again


def physical_halves(design: InverseDesignResult, geometry: OpticalGeometry, errors: PhysicalErrors,
                    generator: torch.Generator, *, chunk: int = 4, frame: Frame | None = None) -> torch.Tensor:
    """One physical fabrication draw of an inverse design: the PSF halves the made metasurface
    produces, times the design-time calibration scales (a fabricated system keeps them).

    Args:
        design: widths_um (n, 2, N, N), scales (n, 2, L) from `inverse_design`.
        chunk: kernels simulated together (bounds memory: chunk x 2 x L fields of padded_res²).
        frame: the full-frame model (`onn.optics.frame`: all the light, crosstalk included); None:
            the window model (each sub-optic's light in its own kernel window only).
    Returns:
        (n, 2, L, k', k') non-negative halves in kernel convention: ``k' = k + 2 ceil(misalignment_px)``
        in the window model, ``2 I - 1`` (I the sub-image side) in the full-frame model.
    """
    n = design.widths_um.shape[0]
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 kernel, got {chunk}")
    # Random numbers in a fixed order: all widths, then all offsets.
    widths = perturb_widths(design.widths_um, errors, generator)
    offsets = (torch.rand(n, 2, 2, generator=generator) * 2 - 1) * errors.misalignment_px  # (n, 2, [dy, dx])
    border = math.ceil(errors.misalignment_px)
    window = replace(geometry, kernel_size=geometry.kernel_size + 2 * border)
    distance_m = geometry.distance_m + errors.distance_error_um * 1e-6
    if frame is not None:
        return frame_halves(widths, design.scales, geometry, frame, shifts_px=offsets,
                            phase_levels=errors.phase_levels, distance_m=distance_m)
    out = []
    with torch.no_grad():
        for start in range(0, n, chunk):
            intensity = sensor_intensity(widths[start:start + chunk], geometry, phase_levels=errors.phase_levels,
                                         distance_m=distance_m)  # (c, 2, L, N, N)
            for i in range(intensity.shape[0]):
                # Each sub-optic has its own offset: integrate each onto its own shifted pixel grid.
                psf = torch.stack([integrate_to_kernel(intensity[i, h], window, tuple(offsets[start + i, h].tolist()))
                                   for h in range(2)])  # (2, L, k', k')
                out.append(psf_to_kernel(psf) * design.scales[start + i, :, :, None, None].to(psf))
    return torch.stack(out).clamp(min=0)  # (n, 2, L, k', k')


@dataclass(frozen=True)
class Realisation:
    """A model's optics as a metasurface: one inverse design and one geometry per kernel group
    (group i at kernel pixels 2^i times the base size, `onn.design.Design.geometries`)."""

    designs: tuple[InverseDesignResult, ...]
    geometries: tuple[OpticalGeometry, ...]
    # The full-frame model of each group (`onn.optics.frame`); None: the window model.
    frames: tuple[Frame, ...] | None = None

    def __post_init__(self):
        if len(self.designs) != len(self.geometries):
            raise ValueError(f"one geometry per inverse design: got {len(self.designs)} designs and "
                             f"{len(self.geometries)} geometries")
        if self.frames is not None and len(self.frames) != len(self.designs):
            raise ValueError(f"one frame per inverse design: got {len(self.frames)} for {len(self.designs)}")

    def frame(self, group: int) -> Frame | None:
        return None if self.frames is None else self.frames[group]

    def mean(self, field: str) -> float:
        """A per-colour error field (``kernel_error``, ``design_error``) averaged over colours and
        kernels, every kernel weighted alike."""
        counts = [d.widths_um.shape[0] for d in self.designs]
        return sum(c * statistics.fmean(getattr(d, field)) for c, d in zip(counts, self.designs)) / sum(counts)


def fabricate_physical(model: HybridONN, realisation: Realisation, errors: PhysicalErrors,
                       generator: torch.Generator, *, kernel_errors: KernelErrors | None = None,
                       chunk: int = 4) -> HybridONN:
    """A copy of ``model`` with each kernel group's optics replaced by a physical fabrication draw
    of its inverse design, optionally followed by kernel-level errors (e.g. a brightness gain).
    ``model`` is untouched."""
    if len(realisation.designs) != len(model.optics):
        raise ValueError(f"the model has {len(model.optics)} kernel groups but the realisation has "
                         f"{len(realisation.designs)}; realise every group (realise_design)")
    made = copy.deepcopy(model)
    for group, (optics, result, geom) in enumerate(zip(made.optics, realisation.designs, realisation.geometries)):
        halves = physical_halves(result, geom, errors, generator, chunk=chunk, frame=realisation.frame(group))
        if kernel_errors is not None:
            halves = perturb_halves(halves, kernel_errors, generator, model.design.wavelengths_nm)
        # full-frame halves hold the stray light the kernel-level haze stands for
        optics.freeze_to(halves.to(optics.weight.device), haze=0.0 if realisation.frame(group) else None)
    return made


def realise(model: HybridONN, geometry: OpticalGeometry, *, group: int = 0, steps: int = 300, chunk: int = 4,
            generator: torch.Generator | None = None, phase_levels: int | None = None,
            stray_weight: float = 0.0) -> InverseDesignResult:
    """Inverse-design the signed kernels of one kernel group, ``chunk`` kernels at a time (memory
    grows with chunk x 2 x L x padded_res²), merged into one result. Per-colour errors and the
    efficiency are means over chunks weighted by their kernel count."""
    kernels = model.optics[group].signed_kernels().detach()  # (n, L, k, k)
    parts = [inverse_design(kernels[s:s + chunk], geometry, steps=steps, generator=generator, phase_levels=phase_levels,
                            stray_weight=stray_weight)
             for s in range(0, kernels.shape[0], chunk)]
    weights = [p.widths_um.shape[0] / kernels.shape[0] for p in parts]
    mean = lambda field: tuple(sum(w * v for w, v in zip(weights, values))
                               for values in zip(*(getattr(p, field) for p in parts)))
    return InverseDesignResult(
        widths_um=torch.cat([p.widths_um for p in parts]), scales=torch.cat([p.scales for p in parts]),
        realised_kernels=torch.cat([p.realised_kernels for p in parts]), design_error=mean("design_error"),
        kernel_error=mean("kernel_error"), efficiency=sum(w * p.efficiency for w, p in zip(weights, parts)),
        steps=steps, seconds=sum(p.seconds for p in parts))


def realise_design(model: HybridONN, *, steps: int = 300, chunk: int = 4, generator: torch.Generator | None = None,
                   frame: bool = False, baffle: bool = False, stray_weight: float = 0.0) -> Realisation:
    """Inverse-design every kernel group of ``model`` at its design's mask resolution, one group at
    a time, each at its own kernel pixel (`Design.geometries`). ``frame``: image it with the
    full-frame model (`model_frames`), with an ideal ``baffle`` between sub-optics if asked;
    ``stray_weight``: penalise light outside the kernel window (`inverse_design`)."""
    geometries = model.design.geometries()
    designs = tuple(realise(model, geometry, group=group, steps=steps, chunk=chunk, generator=generator,
                            stray_weight=stray_weight)
                    for group, geometry in enumerate(geometries))
    return Realisation(designs, geometries, model_frames(model, baffle=baffle) if frame else None)


def model_frames(model: HybridONN, *, baffle: bool = False) -> tuple[Frame, ...]:
    """The full-frame model of a one-group model's metasurface: its 2n used sub-optics at their
    layout positions, each reading an image-sized sub-image. Multi-scale (several kernel groups)
    designs are not modelled full-frame yet (their groups image the scene at different scales)."""
    if len(model.optics) != 1:
        raise ValueError(f"the full-frame model handles one kernel group; this design has {len(model.optics)} "
                         "(use the window model: realisation.imaging: window)")
    return (Frame.of(model.design.layout(), 2 * model.optics[0].n_kernels, model.image_size, baffle=baffle),)


def freeze_realised(model: HybridONN, realisation: Realisation, *, chunk: int = 4) -> HybridONN:
    """A copy of ``model`` whose optics are the ideal (error-free) realisation of its inverse
    design: the system as designed, before fabrication."""
    return fabricate_physical(model, realisation, NO_PHYSICAL_ERRORS, torch.Generator().manual_seed(0), chunk=chunk)
