"""The fabrication hand-off of a realised design: quantised pillar widths, a design card, the
backend's weights, and the hybrid system rebuilt from them (SPEC §6, "Hand-off").

A realised design's widths are quantised to the lithography grid (`WIDTH_STEP_NM`) before its
accuracy is measured, so the system a sweep scores is exactly the one exported. `pack` turns a
realised trial into three files' contents (``card.json``, ``widths.npz``, ``model.pt``) and
`rebuild` turns them back into the same `HybridONN`, its optics re-simulated from the widths.
`explore.export` writes the layout (GDSII / OASIS) from the same files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from onn.design import Design
from onn.fabrication import Realisation, freeze_realised, model_frames
from onn.models import HybridONN
from onn.optics import constants as C
from onn.optics.inverse_design import InverseDesignResult
from onn.optics.metasurface import fabricable_widths
from onn.optics.sensor import SensorConfig

CARD_FORMAT = "onn-design-card/1"
WIDTH_STEP_NM = 1.0  # pillar widths are written on a 1 nm grid (e-beam lithography)
LAYERS = {"pillars": (1, 0), "outline": (2, 0), "labels": (3, 0)}  # GDS (layer, datatype)


def width_table_nm() -> np.ndarray:
    """Every width a pillar can have, nm: 0 (no pillar), then the fabricable range on the grid."""
    lo = math.ceil(C.PILLAR_MIN_WIDTH_UM * 1e3 / WIDTH_STEP_NM) * WIDTH_STEP_NM
    hi = math.floor(C.PILLAR_MAX_WIDTH_UM * 1e3 / WIDTH_STEP_NM + 1e-9) * WIDTH_STEP_NM
    return np.concatenate([[0.0], np.arange(lo, hi + WIDTH_STEP_NM / 2, WIDTH_STEP_NM)])


def quantise(realisation: Realisation) -> tuple[Realisation, tuple[np.ndarray, ...]]:
    """The realisation with every width made fabricable and put on the grid, and the widths as
    indices (uint8, (n, 2, N, N) per kernel group) into `width_table_nm`."""
    table = torch.tensor(width_table_nm(), dtype=torch.float64)
    designs, indices = [], []
    for design in realisation.designs:
        made = fabricable_widths(design.widths_um.detach()).double() * 1e3  # nm; 0 where no pillar
        index = torch.bucketize(made, (table[1:] + table[:-1]) / 2)  # nearest table entry
        index = torch.where(made > 0, index.clamp(min=1), torch.zeros_like(index))
        indices.append(index.to(torch.uint8).cpu().numpy())
        widths = (table[index] * 1e-3).to(design.widths_um)
        designs.append(dataclasses.replace(design, widths_um=widths))
    return Realisation(tuple(designs), realisation.geometries, realisation.frames), tuple(indices)


@dataclass(frozen=True)
class HandOff:
    """What a realised design is handed over as: the files' contents."""

    card: dict[str, Any]
    widths: tuple[np.ndarray, ...]  # per kernel group: (n, 2, N, N) uint8 indices into the card's width table
    scales: tuple[np.ndarray, ...]  # per kernel group: (n, 2, L) float32 digital calibration
    state_dict: dict[str, torch.Tensor]  # the digital side: per-channel affine and backend

    def files(self) -> dict[str, bytes]:
        """``card.json``, ``widths.npz`` and ``model.pt`` as bytes."""
        arrays = {f"widths_{g}": w for g, w in enumerate(self.widths)}
        arrays |= {f"scales_{g}": s for g, s in enumerate(self.scales)}
        npz, pt = io.BytesIO(), io.BytesIO()
        np.savez_compressed(npz, width_table_nm=np.asarray(self.card["width_table_nm"]), **arrays)
        torch.save(self.state_dict, pt)
        return {"card.json": json.dumps(self.card, indent=1).encode(), "widths.npz": npz.getvalue(),
                "model.pt": pt.getvalue()}

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> "HandOff":
        card = json.loads(files["card.json"])
        if card.get("format") != CARD_FORMAT:
            raise ValueError(f"not a design card of format {CARD_FORMAT!r} (found {card.get('format')!r})")
        arrays = np.load(io.BytesIO(files["widths.npz"]))
        groups = len(card["groups"])
        state = torch.load(io.BytesIO(files["model.pt"]), weights_only=True)
        return cls(card, tuple(arrays[f"widths_{g}"] for g in range(groups)),
                   tuple(arrays[f"scales_{g}"] for g in range(groups)), state)


def pack(model: HybridONN, realisation: Realisation, indices: tuple[np.ndarray, ...], *,
         task: dict[str, Any]) -> HandOff:
    """The hand-off of ``model`` (trained, kernel level) realised as ``realisation`` (quantised,
    `quantise`); ``task``: dataset name, task, channels, image_size, n_outputs."""
    design = model.design
    layout = design.layout()
    centres = layout.centres_mm()
    suboptics, offset = [], 0
    for group, result in enumerate(realisation.designs):
        for k in range(result.widths_um.shape[0]):
            for sign, half in (("+", 0), ("-", 1)):
                index = 2 * (offset + k) + half  # sub-optic 2j images K+ of kernel j, 2j+1 its K-
                suboptics.append({"group": group, "kernel": offset + k, "kernel_in_group": k, "sign": sign,
                                  "half": half, "centre_mm": list(centres[index]),
                                  "cell": f"SUBOPTIC_G{group}_K{k}_{'P' if half == 0 else 'M'}"})
        offset += result.widths_um.shape[0]
    geometry = design.geometry()
    card = {
        "format": CARD_FORMAT,
        "units": {"lengths": "as named (_mm, _um, _nm)", "widths": "nm", "positions": "mm from the metasurface centre",
                  "axes": "a width map's row i lies at +y, its column j at +x; centre_mm is (y, x)"},
        "design": _design_dict(design),
        "task": task,
        "lattice_period_um": C.LATTICE_PERIOD_UM,
        "pitch_um": geometry.pitch_m * 1e6,
        "mask_res": design.mask_res,
        "width_table_nm": width_table_nm().tolist(),
        "layers": {name: list(layer) for name, layer in LAYERS.items()},
        "groups": [{"kernel_pixel_um": g.kernel_pixel_m * 1e6, "n_kernels": int(r.widths_um.shape[0])}
                   for g, r in zip(realisation.geometries, realisation.designs)],
        "suboptics": suboptics,
        "aperture_mm": design.aperture_mm,
        "distance_mm": design.distance_mm,
        "wavelengths_nm": list(design.wavelengths_nm),
        "sensor": dataclasses.asdict(design.sensor),
        "backend": {"kind": design.backend, "hidden": list(design.hidden), "pool": design.pool,
                    "n_params": sum(p.numel() for p in model.parameters())},
        "weights": "model.pt: the per-channel affine and the digital backend, trained in ideal simulation "
                   "(kernel level), before any per-device compensation: a fabricated device's backend is "
                   "fine-tuned on that device's own measured response",
        "scales": "widths.npz scales_<group> (n, 2, colours): the digital gain of each sub-image, fitted at "
                  "design time",
        "imaging": _imaging(realisation),
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith("optics.")}
    return HandOff(card, tuple(indices), tuple(r.scales.detach().float().cpu().numpy() for r in realisation.designs),
                   state)


def _design_dict(design: Design) -> dict[str, Any]:
    out = dataclasses.asdict(design)
    out["hidden"] = list(design.hidden)
    out["groups"] = None if design.groups is None else list(design.groups)
    return out


def design_of(card: dict[str, Any]) -> Design:
    """The `Design` a card describes."""
    fields = dict(card["design"])
    fields["sensor"] = SensorConfig(**fields["sensor"])
    fields["hidden"] = tuple(fields["hidden"])
    fields["groups"] = None if fields["groups"] is None else tuple(fields["groups"])
    return Design(**fields)


def rebuild(handoff: HandOff, *, device: torch.device | str = "cpu") -> HybridONN:
    """The realised hybrid system from its hand-off: the network of the card with the saved digital
    weights, its optics re-simulated from the quantised widths (no fabrication error)."""
    card = handoff.card
    design = design_of(card)
    task = card["task"]
    model = HybridONN(design, in_channels=task["channels"], image_size=task["image_size"],
                      n_outputs=task["n_outputs"])
    missing, unexpected = model.load_state_dict(handoff.state_dict, strict=False)
    if unexpected or any(not name.startswith("optics.") for name in missing):
        raise ValueError(f"model.pt does not fit the card's network: missing {missing}, unexpected {unexpected}")
    table = torch.tensor(card["width_table_nm"], dtype=torch.float64)
    designs = []
    for index, scales in zip(handoff.widths, handoff.scales):
        widths = (table[torch.from_numpy(index.astype(np.int64))] * 1e-3).float()  # (n, 2, N, N) µm
        n, _, _, _ = widths.shape
        colours = scales.shape[-1]
        designs.append(InverseDesignResult(widths_um=widths, scales=torch.from_numpy(scales).float(),
                                           realised_kernels=torch.zeros(n, colours, 1, 1), design_error=(),
                                           kernel_error=(), efficiency=float("nan"), steps=0, seconds=0.0))
    imaging = card.get("imaging", {"model": "window"})
    frames = model_frames(model, baffle=imaging.get("baffle", False)) if imaging["model"] == "frame" else None
    return freeze_realised(model, Realisation(tuple(designs), design.geometries(), frames)).to(device)


def _imaging(realisation: Realisation) -> dict[str, Any]:
    """How the recorded accuracy imaged the optics: the window model (each sub-optic's light in
    its kernel window) or the full frame (all the light, crosstalk included; with or without an
    ideal baffle between sub-optics)."""
    if realisation.frames is None:
        return {"model": "window"}
    return {"model": "frame", "baffle": realisation.frames[0].baffle}
