"""Energy per inference of a hybrid ONN and of its all-digital equivalents (SPEC §5).

    E = E_light + E_frame + N_pixels_read * (e_readout + e_adc) + N_adds * e_add + N_MAC * e_MAC

The optics cost nothing (passive, as in the paper). ``N_pixels_read`` is what the sensor reads:
kernels x 2 halves x colours x feature-map size for a hybrid (`HybridONN.pixels_read`), C x H x W
for a plain camera. ``N_adds`` are the hybrid's digital colour sums and pos/neg subtractions,
``N_MAC`` the backend's multiply-accumulates, counted from the model by `onn.macs.count_macs`.
Element-wise affine/ReLU/pooling are counted on neither side. All energies are pJ.

Two constant sets (`CONSTANTS`): ``"default"`` — per-event figures for a 45 nm fp32 backend and a
CMOS sensor, used unless told otherwise because our mono/poly designs are small (28-32 px) and a
per-frame overhead calibrated on the paper's large images would swamp them — and ``"paper"``,
calibrated so that the paper's segmentation figures are reproduced (`reproduce_paper_segmentation`).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Mapping

import torch
from torch import nn

from onn.macs import count_macs
from onn.models import HybridONN

# --- Sources. Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm, 0.9 V), energy per op: ---
HOROWITZ_FP32_MULT_PJ = 3.7  # (8-bit int mult: 0.2 pJ)
HOROWITZ_FP32_ADD_PJ = 0.9  # (8-bit int add: 0.03 pJ)
HOROWITZ_SRAM_32KB_READ_PJ_PER_64BIT = 20.0  # (8 KB: 10 pJ, 1 MB: 100 pJ, DRAM: 1.3-2.6 nJ)
# Our assumption: one fp32 weight fetched per MAC (FC layers at batch 1 reuse no weight) from a
# 32 KB-class SRAM buffer; weights in DRAM would make a MAC 45-90x dearer; the paper implies ~31 pJ.
DEFAULT_MAC_PJ = HOROWITZ_FP32_MULT_PJ + HOROWITZ_FP32_ADD_PJ + HOROWITZ_SRAM_32KB_READ_PJ_PER_64BIT / 2
# Our assumption: a column-parallel CIS ADC at Walden FoM 0.1 pJ per conversion step (the best
# published ADCs reach ~1 fJ/step, Murmann's ADC survey; CIS column ADCs are far from that), 8 bits
# as our sensor model (onn.optics.sensor): 0.1 pJ * 2^8 = 25.6 pJ per pixel.
ADC_WALDEN_FOM_PJ_PER_STEP = 0.1
SENSOR_ADC_BITS = 8

# --- The paper's segmentation figures (SPEC §5): name -> (digital MACs, total J, capture J). ---
PAPER_SEGMENTATION: dict[str, tuple[float, float, float]] = {
    "unet_teacher": (65.9e9, 2.04, 2.36e-3),
    "compact_digital": (239e6, 9.73e-3, 2.36e-3),
    "hybrid": (65e6, 5.83e-3, 3.82e-3),
}
# Optics free: (total - capture) / MACs gives 30.92, 30.84, 30.92 pJ; we take the mean.
PAPER_MAC_PJ = sum((t - c) / m for m, t, c in PAPER_SEGMENTATION.values()) / len(PAPER_SEGMENTATION) * 1e12
# The paper gives no pixel counts. Our assumption: scenes of 300 x 300 px — a standard U-Net
# (64..1024 channels, padded 3x3 convs; our count) costs 48.2 GMAC at 256 x 256, so 65.9 GMAC
# means ~89,700 px (side 299; 300 is divisible by the 4x coarsest kernel scale). The hybrid reads 56 RGB kernels in groups 8/16/32
# at 1x/2x/4x kernel pixels (paper), x 2 halves, on 300/150/75 px feature maps.
PAPER_SCENE_PX = 300
PAPER_SEG_GROUPS = (8, 16, 32)
PAPER_PLAIN_PIXELS = 3 * PAPER_SCENE_PX**2  # 270,000
PAPER_HYBRID_PIXELS = sum(g * 2 * 3 * (PAPER_SCENE_PX // 2**i) ** 2 for i, g in enumerate(PAPER_SEG_GROUPS))  # 7.56 M
# Capture = frame + pixels x per-pixel, solved from the two capture energies:
_plain_capture_j, _hybrid_capture_j = PAPER_SEGMENTATION["compact_digital"][2], PAPER_SEGMENTATION["hybrid"][2]
PAPER_PIXEL_PJ = (_hybrid_capture_j - _plain_capture_j) / (PAPER_HYBRID_PIXELS - PAPER_PLAIN_PIXELS) * 1e12  # 200 pJ
PAPER_FRAME_PJ = _plain_capture_j * 1e12 - PAPER_PLAIN_PIXELS * PAPER_PIXEL_PJ  # 2.31 mJ


@dataclass(frozen=True)
class EnergyConstants:
    """Energy per event, pJ; every field must be finite and >= 0."""

    mac_pj: float  # one digital multiply-accumulate, operand fetch included
    add_pj: float  # one digital element-wise add (colour sum, pos/neg subtraction)
    pixel_readout_pj: float  # analogue read-out of one pixel (source follower, column amplifier, I/O)
    adc_pj_per_pixel: float  # one analogue-to-digital conversion
    light_source_pj: float  # illumination per exposure; 0 for a passively lit scene
    capture_fixed_pj: float  # per-frame sensor overhead (timing, bias, idle power x frame time)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"energy constant {f.name} must be a finite number >= 0 pJ, got {value!r}")

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, float],
                       base: "EnergyConstants | str" = "default") -> "EnergyConstants":
        """``base`` (a constant set or its name in `CONSTANTS`) with some fields replaced."""
        base = get_constants(base) if isinstance(base, str) else base
        names = [f.name for f in fields(cls)]
        for key in overrides:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1, cutoff=0.0)
                raise KeyError(f"unknown energy constant {key!r}; did you mean {close[0]!r}? Known: {', '.join(names)}")
        return replace(base, **overrides)


# A plain registry so a sweep file can name a set. See the module docstring for which is default.
CONSTANTS: dict[str, EnergyConstants] = {
    "default": EnergyConstants(
        mac_pj=DEFAULT_MAC_PJ,  # 14.6 pJ
        add_pj=HOROWITZ_FP32_ADD_PJ,
        # Our assumption: the paper's implied marginal energy per pixel (200 pJ, with PAPER_SCENE_PX)
        # less our ADC share; within the hundreds of pJ to few nJ per pixel of CMOS image sensors.
        pixel_readout_pj=PAPER_PIXEL_PJ - ADC_WALDEN_FOM_PJ_PER_STEP * 2**SENSOR_ADC_BITS,
        adc_pj_per_pixel=ADC_WALDEN_FOM_PJ_PER_STEP * 2**SENSOR_ADC_BITS,
        # Our assumption: passive, ambient-lit scene. Active light would not scale with the kernel count:
        # every sub-optic is its own aperture seeing the same scene radiance.
        light_source_pj=0.0,
        # Our assumption: sensor in standby between frames (LiKamWa et al., MobiSys 2013: energy then
        # becomes nearly proportional to pixels read); a frame overhead is the same for hybrid and camera.
        capture_fixed_pj=0.0),
    "paper": EnergyConstants(mac_pj=PAPER_MAC_PJ, add_pj=0.0,  # the paper counts MACs only
                             pixel_readout_pj=PAPER_PIXEL_PJ, adc_pj_per_pixel=0.0,  # not split in the paper
                             light_source_pj=0.0, capture_fixed_pj=PAPER_FRAME_PJ),
}


def get_constants(name: str) -> EnergyConstants:
    if name not in CONSTANTS:
        close = difflib.get_close_matches(name, CONSTANTS, n=1, cutoff=0.0)
        raise KeyError(f"unknown energy constant set {name!r}; did you mean {close[0]!r}? "
                       f"Known: {', '.join(CONSTANTS)}")
    return CONSTANTS[name]


@dataclass(frozen=True)
class EnergyBreakdown:
    """One inference's energy by term, pJ, with the counts it was computed from."""

    light_source_pj: float
    capture_fixed_pj: float
    readout_pj: float
    adc_pj: float
    digital_add_pj: float
    digital_mac_pj: float
    total_pj: float
    pixels_read: int
    digital_adds: int
    digital_macs: int

    @property
    def capture_pj(self) -> float:
        return self.light_source_pj + self.capture_fixed_pj + self.readout_pj + self.adc_pj

    @property
    def total_j(self) -> float:
        return self.total_pj * 1e-12

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "capture_pj": self.capture_pj}


def energy_from_counts(*, pixels_read: int, digital_macs: int, digital_adds: int = 0,
                       constants: EnergyConstants | None = None) -> EnergyBreakdown:
    """The model's arithmetic, one term per line (module docstring)."""
    c = constants or CONSTANTS["default"]
    terms = dict(light_source_pj=c.light_source_pj,  # one exposure
                 capture_fixed_pj=c.capture_fixed_pj,  # one frame
                 readout_pj=pixels_read * c.pixel_readout_pj,
                 adc_pj=pixels_read * c.adc_pj_per_pixel,
                 digital_add_pj=digital_adds * c.add_pj,
                 digital_mac_pj=digital_macs * c.mac_pj)
    return EnergyBreakdown(**terms, total_pj=sum(terms.values()), pixels_read=pixels_read,
                           digital_adds=digital_adds, digital_macs=digital_macs)


def _default_example(model: HybridONN) -> torch.Tensor:
    return torch.zeros(1, model.in_channels, model.image_size, model.image_size)  # (1, C_in, S, S)


def _macs(model: nn.Module, example: torch.Tensor) -> int:
    was_training = model.training
    try:
        return count_macs(model, example).macs
    finally:
        model.train(was_training)  # count_macs leaves the model in eval mode


def hybrid_adds(model: HybridONN) -> int:
    """Element-wise adds after the sensor: per kernel and output pixel, (C - 1) colour sums for each
    of the 2 halves, then 1 subtraction: n x S_i² x (2C - 1) per group."""
    return sum(o.n_kernels * (model.image_size // 2**i) ** 2 * (2 * o.colours - 1) for i, o in enumerate(model.optics))


def optical_conv_macs(model: HybridONN) -> int:
    """MACs of the optical layer done digitally (which `count_macs` treats as free):
    n_kernels x colours x k x k x S_i² per group."""
    return sum(o.n_kernels * o.colours * o.kernel_size**2 * (model.image_size // 2**i) ** 2
               for i, o in enumerate(model.optics))


def hybrid_energy(model: HybridONN, example: torch.Tensor | None = None,
                  constants: EnergyConstants | None = None) -> EnergyBreakdown:
    """Energy of one inference of a hybrid; ``example`` (1, C, S, S) defaults to zeros."""
    example = _default_example(model) if example is None else example
    return energy_from_counts(pixels_read=model.pixels_read(), digital_macs=_macs(model, example),
                              digital_adds=hybrid_adds(model), constants=constants)


def digital_energy(macs: int, pixels_captured: int, constants: EnergyConstants | None = None) -> EnergyBreakdown:
    """An all-digital network: a plain camera reads one image (C x H x W pixels), then all MACs are digital."""
    return energy_from_counts(pixels_read=pixels_captured, digital_macs=macs, constants=constants)


def network_energy(model: nn.Module, example: torch.Tensor,
                   constants: EnergyConstants | None = None) -> EnergyBreakdown:
    """An electronic network (e.g. the dataset's teacher) behind a plain camera; ``example`` is (1, C, H, W)."""
    return digital_energy(_macs(model, example), example[0].numel(), constants)


def digital_conv_energy(model: HybridONN, example: torch.Tensor | None = None,
                        constants: EnergyConstants | None = None) -> EnergyBreakdown:
    """The same hybrid with its optical conv computed digitally from a plain camera's image
    (colours x S x S pixels): backend MACs + `optical_conv_macs`, no pos/neg adds."""
    example = _default_example(model) if example is None else example
    pixels = model.optics[0].colours * model.image_size**2
    return digital_energy(_macs(model, example) + optical_conv_macs(model), pixels, constants)


def reproduce_paper_segmentation(constants: EnergyConstants | None = None) -> dict[str, tuple[float, float]]:
    """name -> (our model's energy, the paper's), J, for the paper's three segmentation systems."""
    constants = constants or CONSTANTS["paper"]
    pixels = {"unet_teacher": PAPER_PLAIN_PIXELS, "compact_digital": PAPER_PLAIN_PIXELS, "hybrid": PAPER_HYBRID_PIXELS}
    return {name: (energy_from_counts(pixels_read=pixels[name], digital_macs=int(macs), constants=constants).total_j,
                   total_j) for name, (macs, total_j, _) in PAPER_SEGMENTATION.items()}


def format_energy(pj: float) -> str:
    """pJ -> '3.26 µJ' (SI prefix chosen by size)."""
    for scale, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


_ROWS = (("light source", "light_source_pj"), ("frame overhead", "capture_fixed_pj"), ("sensor read-out", "readout_pj"),
         ("ADC", "adc_pj"), ("capture (sum)", "capture_pj"), ("digital adds", "digital_add_pj"),
         ("digital MACs", "digital_mac_pj"), ("total", "total_pj"), ("pixels read", "pixels_read"),
         ("adds (count)", "digital_adds"), ("MACs (count)", "digital_macs"))


def breakdown_table(columns: Mapping[str, EnergyBreakdown]) -> str:
    """A printable table: one row per term, one column per named breakdown."""
    cells = [["term", *columns]]
    for label, key in _ROWS:
        values = [b.as_dict()[key] for b in columns.values()]
        cells.append([label, *(f"{v:,}" if key in ("pixels_read", "digital_adds", "digital_macs")
                               else format_energy(v) for v in values)])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in cells]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])
