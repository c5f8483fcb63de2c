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
from typing import Sequence

import torch
import torch.nn.functional as F

from onn.models import HybridONN
from onn.optics.geometry import OpticalGeometry
from onn.optics.inverse_design import InverseDesignResult, inverse_design
from onn.optics.metasurface import fabricable_widths
from onn.optics.psf import integrate_to_kernel, psf_to_kernel, sensor_intensity

GREEN_NM = 532.0  # chromatic blur is relative to the design's reference (green) wavelength


@dataclass(frozen=True)
class KernelErrors:
    """Kernel-level fabrication errors, applied to every sub-optic (kernel half) independently.

    Choices (the paper gives none, SPEC §4 gives the magnitudes):
    - gain: one factor per sub-optic, shared by its colours (each sub-optic's transmission
      differs), ``g ~ U[gain_range]``.
    - shift: one (dy, dx) per sub-optic, shared by its colours, each ``~ U[-shift_px, shift_px]``
      kernel pixels; sub-pixel shifts are bilinear, i.e. exact for a PSF that is constant over
      each kernel pixel read by box-shaped pixels. The K⁺ and K⁻ images of a kernel move
      independently, which distorts the signed kernel, not just moves it.
    - kernel error: ``δ ~ N(0, (kernel_sigma_rel · max|k|)²)`` per kernel pixel of each half,
      ``max|k|`` over the signed kernel (all colours), on the designed k x k support; the half is
      clamped at 0 afterwards (a PSF is an intensity), which adds some stray light.
    - chromatic blur: a Gaussian of ``chromatic_blur_px`` kernel pixels on every colour other
      than green (532 nm). Default 0: SPEC §4 counts chromatic error inside δ (20 % for RGB).
    - ``gain_shared``: one gain per signed kernel instead of per sub-optic (K⁺ and K⁻ alike), for
      hardware whose brightness error is common to both halves; a per-half mismatch leaks the
      common-mode image through the subtraction.
    """

    gain_range: tuple[float, float] = (0.8, 1.2)
    shift_px: float = 1.0
    kernel_sigma_rel: float = 0.10
    chromatic_blur_px: float = 0.0
    gain_shared: bool = False

    def __post_init__(self):
        lo, hi = self.gain_range
        if not 0 <= lo <= hi:
            raise ValueError(f"gain_range must satisfy 0 <= low <= high, got {self.gain_range}")
        for name in ("shift_px", "kernel_sigma_rel", "chromatic_blur_px"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def scaled(self, factor: float) -> "KernelErrors":
        """The same kind of error, ``factor`` times as large (0: the ideal system)."""
        lo, hi = self.gain_range
        return KernelErrors((1 + factor * (lo - 1), 1 + factor * (hi - 1)), self.shift_px * factor,
                            self.kernel_sigma_rel * factor, self.chromatic_blur_px * factor, self.gain_shared)

    def border_px(self) -> int:
        """Kernel pixels added on each side so shifted / blurred light stays in the window."""
        return math.ceil(self.shift_px) + _blur_radius(self.chromatic_blur_px)


NO_KERNEL_ERRORS = KernelErrors(gain_range=(1.0, 1.0), shift_px=0.0, kernel_sigma_rel=0.0)


def default_kernel_errors(colours: int) -> KernelErrors:
    """SPEC §4 defaults: kernel noise 10 % of max|k| for a monochrome system, 20 % for colour."""
    return KernelErrors(kernel_sigma_rel=0.10 if colours == 1 else 0.20)


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
    shift_u = torch.rand(n, two, 2, generator=generator) * 2 - 1  # (n, 2, [dy, dx]) in [-1, 1]
    noise_z = torch.randn(n, two, colours, k, k, generator=generator)
    gain_u, shift_u, noise_z = (t.to(halves) for t in (gain_u, shift_u, noise_z))

    peak = (halves[:, 0] - halves[:, 1]).abs().flatten(1).amax(1)  # (n,) max|k| of each signed kernel
    delta = errors.kernel_sigma_rel * peak.view(n, 1, 1, 1, 1) * noise_z
    out = (halves + delta).clamp(min=0)
    border = errors.border_px()
    if border:
        out = F.pad(out, (border,) * 4)  # (n, 2, C, k', k')
    if errors.chromatic_blur_px > 0:
        if wavelengths_nm is None or len(wavelengths_nm) != colours:
            raise ValueError(f"chromatic blur needs the {colours} wavelengths of the halves' colours; pass "
                             f"wavelengths_nm (e.g. design.wavelengths_nm)")
        out = _blur_colours(out, errors.chromatic_blur_px, [w != GREEN_NM for w in wavelengths_nm])
    lo, hi = errors.gain_range
    out = out * (lo + (hi - lo) * gain_u).view(n, two, 1, 1, 1)
    if errors.shift_px > 0:
        out = shift_bilinear(out, errors.shift_px * shift_u)
    return out.clamp(min=0)  # bilinear weights are >= 0; the clamp only removes rounding below 0


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
                    generator: torch.Generator, *, chunk: int = 4) -> torch.Tensor:
    """One physical fabrication draw of an inverse design: the PSF halves the made metasurface
    produces, times the design-time calibration scales (a fabricated system keeps them).

    Args:
        design: widths_um (n, 2, N, N), scales (n, 2, L) from `inverse_design`.
        chunk: kernels simulated together (bounds memory: chunk x 2 x L fields of padded_res²).
    Returns:
        (n, 2, L, k', k') non-negative halves in kernel convention, ``k' = k + 2 ceil(misalignment_px)``.
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

    def __post_init__(self):
        if len(self.designs) != len(self.geometries):
            raise ValueError(f"one geometry per inverse design: got {len(self.designs)} designs and "
                             f"{len(self.geometries)} geometries")

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
    for optics, result, geom in zip(made.optics, realisation.designs, realisation.geometries):
        halves = physical_halves(result, geom, errors, generator, chunk=chunk)
        if kernel_errors is not None:
            halves = perturb_halves(halves, kernel_errors, generator, model.design.wavelengths_nm)
        optics.freeze_to(halves.to(optics.weight.device))
    return made


def realise(model: HybridONN, geometry: OpticalGeometry, *, group: int = 0, steps: int = 300, chunk: int = 4,
            generator: torch.Generator | None = None, phase_levels: int | None = None) -> InverseDesignResult:
    """Inverse-design the signed kernels of one kernel group, ``chunk`` kernels at a time (memory
    grows with chunk x 2 x L x padded_res²), merged into one result. Per-colour errors and the
    efficiency are means over chunks weighted by their kernel count."""
    kernels = model.optics[group].signed_kernels().detach()  # (n, L, k, k)
    parts = [inverse_design(kernels[s:s + chunk], geometry, steps=steps, generator=generator, phase_levels=phase_levels)
             for s in range(0, kernels.shape[0], chunk)]
    weights = [p.widths_um.shape[0] / kernels.shape[0] for p in parts]
    mean = lambda field: tuple(sum(w * v for w, v in zip(weights, values))
                               for values in zip(*(getattr(p, field) for p in parts)))
    return InverseDesignResult(
        widths_um=torch.cat([p.widths_um for p in parts]), scales=torch.cat([p.scales for p in parts]),
        realised_kernels=torch.cat([p.realised_kernels for p in parts]), design_error=mean("design_error"),
        kernel_error=mean("kernel_error"), efficiency=sum(w * p.efficiency for w, p in zip(weights, parts)),
        steps=steps, seconds=sum(p.seconds for p in parts))


def realise_design(model: HybridONN, *, steps: int = 300, chunk: int = 4,
                   generator: torch.Generator | None = None) -> Realisation:
    """Inverse-design every kernel group of ``model`` at its design's mask resolution, one group at
    a time, each at its own kernel pixel (`Design.geometries`)."""
    geometries = model.design.geometries()
    designs = tuple(realise(model, geometry, group=group, steps=steps, chunk=chunk, generator=generator)
                    for group, geometry in enumerate(geometries))
    return Realisation(designs, geometries)


def freeze_realised(model: HybridONN, realisation: Realisation, *, chunk: int = 4) -> HybridONN:
    """A copy of ``model`` whose optics are the ideal (error-free) realisation of its inverse
    design: the system as designed, before fabrication."""
    return fabricate_physical(model, realisation, NO_PHYSICAL_ERRORS, torch.Generator().manual_seed(0), chunk=chunk)
