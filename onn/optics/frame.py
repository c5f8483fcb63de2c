"""The sensor frame: where all of each sub-optic's light lands, its neighbours' sub-images included.

The window model (`onn.optics.psf`) keeps only the light that lands in a sub-optic's own k x k
kernel window. Here each sub-optic's field is propagated over a window wide enough to hold every
place its light can reach on the sensor (`reach_m`), and the intensity is integrated over the
sensor regions the camera reads: its own sub-image and every other sub-optic's.

Because every sub-optic sees the same scene, the reading of sub-image i is the scene convolved with
one *effective kernel* per region: E_i(d) = sum_j PSF_j(c_i - c_j + d), the sum over every
sub-optic j of its PSF seen from region i (c are the sub-optic centres on the sensor, d runs over
the ``2 I - 1`` pixel offsets that connect an I x I scene to an I x I sub-image). `frame_halves`
returns those kernels; the optical layer applies them by FFT convolution (`onn.layers`).
`light_budget` says where the light went.

Idealisations (named wherever a result of this model is shown):
- sub-optics are mutually incoherent: their intensities add. The light of one scene point through
  two sub-optics does interfere; its fringes (period ~ lambda z / cell, 2.6 µm at 532 nm for a
  0.5 mm cell) are finer than a 11.72 µm kernel pixel, and colour filters pass ~100 nm bands, so the
  term mostly averages out; `coherent_frame_intensity` measures what is left;
- the scene is the same for every sub-optic (a far scene: no parallax between sub-optics);
- the metasurface transmits with amplitude 1 (no absorption or reflection) and unused sub-optic
  positions are opaque;
- an ideal baffle absorbs exactly the light that would cross into another cell, without diffracting.

All lengths in SI metres; tensors are batched over sub-optics and wavelengths as in `onn.optics.psf`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from onn.optics.geometry import OpticalGeometry, next_smooth
from onn.optics.layout import SubopticLayout
from onn.optics.metasurface import transmission
from onn.optics.propagation import _transfer_function
from onn.optics.psf import pixel_integration_matrix, psf_to_kernel

FRAME_PAD = 2.0  # FFT grid side / frame window side: within 1e-4 of x4 for an inverse design (benchmarks/README.md)


@dataclass(frozen=True)
class Frame:
    """Where the sub-optics sit and what the camera reads: sub-optic s (row-major in the layout;
    2j and 2j+1 are K⁺ and K⁻ of kernel j) is centred at ``centres_m[s]`` = (y, x) and its sub-image
    is the ``image_size`` x ``image_size`` pixels (of the geometry's kernel pixel) centred below it;
    ``cell_m`` is the pitch of the array (a baffle's walls sit halfway between neighbours)."""

    centres_m: tuple[tuple[float, float], ...]
    image_size: int
    cell_m: float
    baffle: bool = False

    @classmethod
    def of(cls, layout: SubopticLayout, n_suboptics: int, image_size: int, *, baffle: bool = False) -> "Frame":
        """The first ``n_suboptics`` positions of ``layout`` (the used ones; the rest are opaque)."""
        if n_suboptics > layout.n_suboptics:
            raise ValueError(f"{n_suboptics} sub-optics do not fit a layout of {layout.n_suboptics}")
        centres = tuple((y * 1e-3, x * 1e-3) for y, x in layout.centres_mm()[:n_suboptics])
        return cls(centres, int(image_size), layout.cell_mm * 1e-3, baffle)

    def check(self, geometry: OpticalGeometry) -> None:
        """Sub-images must not overlap (each sensor pixel belongs to one reading); raises ValueError."""
        side = self.image_size * geometry.kernel_pixel_m
        if side > self.cell_m * (1 + 1e-9):
            raise ValueError(f"a {self.image_size}-pixel sub-image is {side * 1e3:.3f} mm wide, more than the "
                             f"{self.cell_m * 1e3:.3f} mm between sub-optics: neighbouring sub-images overlap")


def reach_m(geometry: OpticalGeometry) -> float:
    """How far past its own edge a sub-optic's light can land on the sensor: the steepest ray the
    sampled mask can send, sin(theta) = lambda / (2 pitch) at the longest wavelength, over the
    distance to the sensor (all of the plane when the mask samples finer than lambda / 2)."""
    sine = max(geometry.wavelengths_m) / (2 * geometry.pitch_m)
    if sine >= 1:
        return math.inf
    return geometry.distance_m * sine / math.sqrt(1 - sine * sine)


def window_res(geometry: OpticalGeometry, frame: Frame, support_px: int) -> int:
    """Samples per side of one sub-optic's frame window: every sensor region of ``support_px``
    kernel pixels (centred below a sub-optic) that its light can reach (`reach_m`), whole; the same
    for every sub-optic (the farthest pair counts). Same parity as ``mask_res`` (the aperture is
    centred)."""
    n, pitch = geometry.mask_res, geometry.pitch_m
    light = n * pitch / 2 + reach_m(geometry)  # from the axis, Chebyshev distance
    region = support_px * geometry.kernel_pixel_m / 2
    half = n * pitch / 2
    for ci in frame.centres_m:
        for cj in frame.centres_m:
            distance = max(abs(ci[0] - cj[0]), abs(ci[1] - cj[1]))
            if distance - region <= light:
                half = max(half, distance + region)
    w = max(n, math.ceil(2 * half / pitch))
    return w + (w - n) % 2


@dataclass(frozen=True)
class FrameField:
    """Sensor-plane intensity of sub-optics over their frame windows, normalised so that each
    sub-optic's incident power is 1: ``intensity`` (..., L, W, W) centred on the sub-optic's axis,
    ``beyond`` (..., L) the power that landed on the FFT grid outside the window, ``lost`` (..., L)
    the power the band limit and evanescent cut removed (never reaches the sensor)."""

    intensity: torch.Tensor
    beyond: torch.Tensor
    lost: torch.Tensor


def frame_intensity(width_um: torch.Tensor, geometry: OpticalGeometry, w: int, *, pad: float = FRAME_PAD,
                    phase_levels: int | None = None, distance_m: float | None = None) -> FrameField:
    """Propagate (..., N, N) width maps to the sensor over a W x W window centred on each aperture.

    The aperture's field is zero-padded to an FFT grid of ``pad * W`` (5-smooth); the W x W window
    is cut from its centre. Memory: (..., L) x that grid squared, complex."""
    n = geometry.mask_res
    if (w - n) % 2 or w < n:
        raise ValueError(f"the window ({w}) must be at least the aperture ({n}) and differ from it by an even count")
    m = next_smooth(math.ceil(pad * w))
    field = transmission(width_um, geometry.wavelengths_nm, phase_levels=phase_levels)  # (..., L, N, N)
    transfer = _frame_transfer(m, float(geometry.pitch_m), float(geometry.distance_m if distance_m is None else distance_m),
                               tuple(float(w) for w in geometry.wavelengths_m), str(width_um.device))
    spectrum = torch.fft.fft2(field, s=(m, m))  # the aperture at the grid's corner [0, N)
    kept = transfer.abs().square()
    lost = (spectrum.abs().square() * (1 - kept)).sum((-1, -2)) / (m * m)
    out = torch.fft.ifft2(spectrum * transfer)
    # Centre the aperture: its centre (N-1)/2 goes to the window's centre (W-1)/2.
    out = torch.roll(out, shifts=((w - n) // 2, (w - n) // 2), dims=(-2, -1))
    total = out.abs().square().sum((-1, -2))
    window = out[..., :w, :w].abs().square()
    norm = n * n
    return FrameField(window / norm, (total - window.sum((-1, -2))) / norm, lost / norm)


@lru_cache(maxsize=2)
def _frame_transfer(m: int, pitch_m: float, distance_m: float, wavelengths_m: tuple[float, ...], device: str) -> torch.Tensor:
    """The transfer function of a frame's FFT grid. These grids are large ((pad x window)², tens of
    MB per wavelength), so only the last two are kept (a realisation and one fabrication distance),
    not the 64 that `onn.optics.propagation.transfer_function` caches."""
    return _transfer_function.__wrapped__(m, pitch_m, distance_m, wavelengths_m, True, torch.complex64, device)


@lru_cache(maxsize=256)
def _integration(w: int, pitch_m: float, pixels: int, pixel_m: float, shift_m: float) -> torch.Tensor:
    return pixel_integration_matrix(w, pitch_m, pixels, pixel_m, shift_m, dtype=torch.float64)


def _region(intensity: torch.Tensor, pitch_m: float, pixels: int, pixel_m: float,
            offset_m: tuple[float, float]) -> torch.Tensor:
    """(..., W, W) intensity -> (..., pixels, pixels) energy on a pixel grid centred at ``offset_m``
    (y, x) from the window's centre."""
    w = intensity.shape[-1]
    rows = _integration(w, pitch_m, pixels, pixel_m, round(offset_m[0], 12)).to(intensity)
    cols = _integration(w, pitch_m, pixels, pixel_m, round(offset_m[1], 12)).to(intensity)
    return rows @ intensity @ cols.T


def _within_cell(offset_m: tuple[float, float], cell_m: float) -> bool:
    return max(abs(offset_m[0]), abs(offset_m[1])) < cell_m / 2


def _cell_mask(w: int, pitch_m: float, cell_m: float, device) -> torch.Tensor:
    """(W, W) fraction of each sample of a window centred on a sub-optic inside that sub-optic's
    cell (what an ideal baffle lets through)."""
    inside = pixel_integration_matrix(w, pitch_m, 1, cell_m, device=device)[0]  # (W,)
    return inside[:, None] * inside[None, :]


def frame_halves(widths_um: torch.Tensor, scales: torch.Tensor, geometry: OpticalGeometry, frame: Frame, *,
                 shifts_px: torch.Tensor | None = None, phase_levels: int | None = None,
                 distance_m: float | None = None, pad: float = FRAME_PAD) -> torch.Tensor:
    """Effective kernels of every sub-image of a layer, in kernel (correlation) convention.

    Args:
        widths_um: (n, 2, N, N) width maps of the K⁺ and K⁻ sub-optic of each kernel; sub-optic
            ``2j + h`` of ``frame`` is kernel j's half h.
        scales: (n, 2, L) the digital calibration of each sub-image (`inverse_design`).
        shifts_px: (n, 2, 2) misalignment (dy, dx) of each sub-image's pixel grid, kernel pixels.
    Returns:
        (n, 2, L, 2I-1, 2I-1) non-negative: E_i of each sub-image, times its scale.
    """
    n = widths_um.shape[0]
    if len(frame.centres_m) != 2 * n:
        raise ValueError(f"{n} kernels need {2 * n} sub-optic positions, the frame has {len(frame.centres_m)}")
    frame.check(geometry)
    size, kp = 2 * frame.image_size - 1, geometry.kernel_pixel_m
    w = window_res(geometry, frame, size)
    shifts = torch.zeros(n, 2, 2) if shifts_px is None else shifts_px
    reach = w * geometry.pitch_m / 2 + size * kp / 2  # a region farther than this sees none of the window
    flat = widths_um.reshape(2 * n, *widths_um.shape[2:])  # (2n, N, N): sub-optic 2j + h is kernel j's half h
    out = torch.zeros(2 * n, len(geometry.wavelengths_m), size, size, dtype=torch.float64, device=widths_um.device)
    mask = _cell_mask(w, geometry.pitch_m, frame.cell_m, widths_um.device) if frame.baffle else None
    with torch.no_grad():
        for j in range(2 * n):
            field = frame_intensity(flat[j], geometry, w, pad=pad, phase_levels=phase_levels, distance_m=distance_m)
            light = field.intensity.double() if mask is None else field.intensity.double() * mask
            cj = frame.centres_m[j]
            rows_done: dict[float, torch.Tensor] = {}  # regions in one row of the array share the row pass
            for i, ci in enumerate(frame.centres_m):
                dy = round(ci[0] - cj[0] + float(shifts[i // 2, i % 2, 0]) * kp, 12)
                dx = round(ci[1] - cj[1] + float(shifts[i // 2, i % 2, 1]) * kp, 12)
                if max(abs(dy), abs(dx)) > reach or (frame.baffle and i != j):
                    continue
                if dy not in rows_done:
                    rows_done[dy] = _integration(w, geometry.pitch_m, size, kp, dy).to(light) @ light  # (L, size, W)
                out[i] += rows_done[dy] @ _integration(w, geometry.pitch_m, size, kp, dx).to(light).T
    halves = psf_to_kernel(out.view(n, 2, *out.shape[1:])).to(scales.dtype)  # (n, 2, L, 2I-1, 2I-1)
    return (halves * scales[..., None, None]).clamp(min=0)


@dataclass(frozen=True)
class LightBudget:
    """Where each sub-optic's incident light (1) went, per sub-optic and wavelength (S, L):
    ``in_window`` its own k x k kernel window (all the window model keeps); ``own_subimage`` the
    rest of its own sub-image; ``other_subimages`` other sub-optics' sub-images (crosstalk);
    ``unread`` the sensor outside every sub-image (or, with a baffle, absorbed by it); ``beyond``
    past the frame window; ``lost`` removed by the band limit and evanescent cut. The terms sum
    to ``incident`` (1: the metasurface is lossless in this model)."""

    in_window: torch.Tensor
    own_subimage: torch.Tensor
    other_subimages: torch.Tensor
    unread: torch.Tensor
    beyond: torch.Tensor
    lost: torch.Tensor

    TERMS = ("in_window", "own_subimage", "other_subimages", "unread", "beyond", "lost")

    @property
    def total(self) -> torch.Tensor:
        return sum(getattr(self, t) for t in self.TERMS)

    @property
    def crosstalk_ratio(self) -> torch.Tensor:
        """Light thrown into other sub-images per unit of light kept in the own sub-image."""
        return self.other_subimages / (self.in_window + self.own_subimage).clamp(min=1e-12)

    def means(self) -> dict[str, float]:
        """Every term and the crosstalk ratio averaged over sub-optics and wavelengths."""
        values = {t: float(getattr(self, t).mean()) for t in self.TERMS}
        return values | {"crosstalk_ratio": float(self.crosstalk_ratio.mean())}


def light_budget(widths_um: torch.Tensor, geometry: OpticalGeometry, frame: Frame, *,
                 phase_levels: int | None = None, pad: float = FRAME_PAD) -> LightBudget:
    """The light budget of (S, N, N) width maps placed at ``frame``'s first S positions; every
    position of ``frame`` is read (S = 1 in a larger frame: one sub-optic lit alone)."""
    s = widths_um.shape[0]
    frame.check(geometry)
    w = window_res(geometry, frame, frame.image_size)
    kp, k, image = geometry.kernel_pixel_m, geometry.kernel_size, frame.image_size
    mask = _cell_mask(w, geometry.pitch_m, frame.cell_m, widths_um.device) if frame.baffle else None
    terms = {t: [] for t in LightBudget.TERMS}
    with torch.no_grad():
        for j in range(s):
            field = frame_intensity(widths_um[j], geometry, w, pad=pad, phase_levels=phase_levels)
            raw = field.intensity.double()
            light = raw if mask is None else raw * mask
            window = _region(light, geometry.pitch_m, k, kp, (0.0, 0.0)).sum((-1, -2))
            own = _region(light, geometry.pitch_m, image, kp, (0.0, 0.0)).sum((-1, -2))
            other = torch.zeros_like(own)
            for i, ci in enumerate(frame.centres_m):
                if i != j:
                    offset = (ci[0] - frame.centres_m[j][0], ci[1] - frame.centres_m[j][1])
                    other = other + _region(light, geometry.pitch_m, image, kp, offset).sum((-1, -2))
            terms["in_window"].append(window)
            terms["own_subimage"].append(own - window)
            terms["other_subimages"].append(other)
            terms["unread"].append(raw.sum((-1, -2)) - own - other)  # with a baffle: includes what it absorbed
            terms["beyond"].append(field.beyond.double())
            terms["lost"].append(field.lost.double())
    return LightBudget(**{t: torch.stack(v) for t, v in terms.items()})


def stray_ratio(halves: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(..., S, S) effective kernels (`frame_halves`) -> (...) the light outside the central
    ``kernel_size`` window as a ratio to the light inside it: the kernel-level model's ``haze``
    (`onn.layers.OpticalConv`) that puts the same stray light in each sub-image."""
    size = halves.shape[-1]
    lo = (size - kernel_size) // 2
    window = halves[..., lo:lo + kernel_size, lo:lo + kernel_size].sum((-1, -2))
    return (halves.sum((-1, -2)) - window) / window


# The stray ratio of inverse-designed sub-optics, fitted as a (suboptic_mm / 0.4)^b oversampling^c
# (benchmarks/light_budget.py --parts haze: two random signed 7x7 kernels on a 2 x 2 array, 60 design
# steps, sub-optics 0.3-0.5 mm, oversampling 1-2, 532 nm and 635/532/450 nm, 2.4 mm to the sensor,
# 28 x 28 / 32 x 32 sub-images). Outside that range it extrapolates.
HAZE_FIT = {"a_mono": 3.192, "a_rgb": 6.964, "b": -1.267, "c": 0.445}  # within ±15 % of every fitted design


def fitted_haze(colours: int, suboptic_mm: float, oversampling: float) -> float:
    """The kernel-level ``haze`` that matches what the full-frame model measures on average for a
    geometry (`HAZE_FIT`): one colour uses the 532 nm fit, more colours the RGB fit. A design's own
    ratio varies about it (benchmarks/README.md, "Where the light goes")."""
    if not (suboptic_mm > 0 and oversampling > 0):
        raise ValueError(f"need suboptic_mm > 0 and oversampling > 0, got {suboptic_mm}, {oversampling}")
    a = HAZE_FIT["a_mono"] if colours == 1 else HAZE_FIT["a_rgb"]
    return a * (suboptic_mm / 0.4) ** HAZE_FIT["b"] * oversampling ** HAZE_FIT["c"]


def coherent_frame_intensity(widths_um: torch.Tensor, geometry: OpticalGeometry, frame: Frame, *,
                             pad: float = 2.0, phase_levels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute force on one grid: every used sub-optic placed at its position in one aperture-wide
    field (the rest of the metasurface opaque), under one on-axis plane wave. Returns the sensor
    intensity of the whole field propagated at once (coherent: sub-optics interfere) and the sum of
    each sub-optic propagated alone on the same grid (incoherent: what `frame_halves` models), both
    (L, G, G) on a grid centred on the metasurface, normalised by one sub-optic's incident power.
    For checks on small grids: memory grows with the whole frame squared."""
    n, pitch = geometry.mask_res, geometry.pitch_m
    s = widths_um.shape[0]
    w = window_res(geometry, frame, 2 * frame.image_size - 1)
    extent = 2 * max(max(abs(c[0]), abs(c[1])) for c in frame.centres_m[:s]) + w * pitch
    g = math.ceil(extent / pitch)
    g += (g - n) % 2
    m = next_smooth(math.ceil(pad * g))
    transfer = _frame_transfer(m, float(pitch), float(geometry.distance_m), tuple(float(w) for w in geometry.wavelengths_m),
                               str(widths_um.device))
    fields = transmission(widths_um, geometry.wavelengths_nm, phase_levels=phase_levels)  # (S, L, N, N)
    placed = torch.zeros(s, len(geometry.wavelengths_m), g, g, dtype=fields.dtype, device=widths_um.device)
    for j, (cy, cx) in enumerate(frame.centres_m[:s]):
        # The aperture's centre sample (N-1)/2 at the grid centre (G-1)/2 plus the sub-optic offset.
        top = (g - n) // 2 + round(cy / pitch)
        left = (g - n) // 2 + round(cx / pitch)
        if abs(cy / pitch - round(cy / pitch)) > 1e-6 or abs(cx / pitch - round(cx / pitch)) > 1e-6:
            raise ValueError("the brute force needs sub-optic centres on the sample grid (cell a multiple of the pitch)")
        placed[j, :, top:top + n, left:left + n] = fields[j]
    out = torch.fft.ifft2(torch.fft.fft2(placed, s=(m, m)) * transfer)[..., :g, :g]
    incoherent = out.abs().square().sum(0) / (n * n)
    coherent = out.sum(0).abs().square() / (n * n)
    return coherent, incoherent
