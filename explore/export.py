"""``python -m explore.export results/<name> [--trial N | --front] --out DIR [--oasis]``: from a
sweep's designs to files a foundry and a lab can take.

Per design, into ``<out>/trial-<N>/``:

- ``metasurface.gds`` (and ``.oas`` with ``--oasis``): a hierarchical layout in µm (0.1 nm database unit). One cell
  per pillar width (a square pillar of that width, layer 1), one cell per block of identical pillars,
  one cell per sub-optic (``SUBOPTIC_G<group>_K<kernel>_<P|M>``: K⁺ / K⁻), placed on the top cell
  ``METASURFACE`` where the layout puts them, each labelled with its kernel and sign (layer 3), and
  the aperture's outline (layer 2).
- ``card.json`` (the design card: units, layer map, lattice, width table, kernel order and signs,
  sub-optic positions, distance, wavelengths, sensor, backend), ``widths.npz`` (the quantised width
  maps and the digital gains), ``model.pt`` (the digital side's weights; load with
  ``torch.load(..., weights_only=True)``, or all of it with `onn.handoff.rebuild`);
- ``preview.png``: the whole aperture and one sub-optic's width map.

Pillars sit on the 293 nm meta-atom lattice. A design sample of pitch p covers the lattice sites whose
centres fall inside it: (p / 293 nm)² pillars, a 2 x 2 block at the authors' 586 nm. When p is not a
whole number of lattice periods the blocks alternate between the two nearest sizes (5 and 6 sites
at p = 1.5625 µm), every site still taking the width of the sample it lies in; sites of a sample the
design leaves empty (width below 60 nm) hold no pillar.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np

from explore.analysis import load
from onn.handoff import LAYERS, HandOff

FILES = ("card.json", "widths.npz", "model.pt")


class ExportError(ValueError):
    """A design that cannot be exported; the message says what to do."""


def handoff_of(folder: Path, trial: int) -> HandOff:
    """The saved hand-off of ``trial`` in a sweep's results ``folder``, or an `ExportError`."""
    analysis = load(folder)
    rows = analysis.rows.filter(analysis.rows["trial_index"] == trial)
    if not len(rows):
        known = sorted(analysis.rows["trial_index"].drop_nulls().to_list())
        raise ExportError(f"{folder}: no trial {trial}; the sweep has trials {known[:20]}{' ...' if len(known) > 20 else ''}")
    row = rows.row(0, named=True)
    if row["status"] != "complete":
        raise ExportError(f"trial {trial} did not complete ({row['status']}: {row['reason']}); only a trained and "
                          f"realised design can be exported")
    where = folder / "artefacts" / f"trial-{trial:05d}"
    missing = [name for name in FILES if not (where / name).exists()]
    if missing:
        if not (folder / "artefacts").exists():
            raise ExportError(f"{folder} was written before trials kept their designs (no artefacts/ folder); rerun "
                              f"the trial to export it (e.g. a sweep of this design alone)")
        raise ExportError(f"trial {trial} has no {', '.join(missing)} in {where} (realisation off, or the files were "
                          f"lost with a node); rerun it with realisation.enabled: true")
    return HandOff.from_files({name: (where / name).read_bytes() for name in FILES})


def blocks(mask_res: int, pitch_um: float, period_um: float) -> tuple[int, np.ndarray]:
    """The lattice sites of one sub-optic side: (sites per side S, (S,) index of the design sample
    each site's centre lies in)."""
    side_um = mask_res * pitch_um
    sites = int(math.floor(side_um / period_um + 1e-9))
    centres = (np.arange(sites) + 0.5) * period_um + (side_um - sites * period_um) / 2  # from the sub-optic's edge
    return sites, np.minimum((centres // pitch_um).astype(int), mask_res - 1)


def write_layout(handoff: HandOff, path: Path, *, oasis: bool = False) -> dict[str, float]:
    """Write the hierarchical layout of ``handoff`` to ``path`` (.gds; .oas beside it with
    ``oasis``); returns counts and sizes."""
    import gdstk

    card = handoff.card
    period = card["lattice_period_um"]
    pitch, mask_res = card["pitch_um"], card["mask_res"]
    table = np.asarray(card["width_table_nm"])
    sites, sample_of = blocks(mask_res, pitch, period)
    edges = np.flatnonzero(np.diff(np.concatenate([[-1], sample_of, [mask_res]])))  # first site of every sample
    starts, lengths = edges[:-1], np.diff(edges)  # per sample: first site, sites
    half_side = sites * period / 2
    library = gdstk.Library(unit=1e-6, precision=1e-10)  # 0.1 nm: a pillar of odd nm width stays centred exactly
    pillar_layer, pillar_type = LAYERS["pillars"]
    pillars: dict[int, gdstk.Cell] = {}
    block_cells: dict[tuple[int, int, int], gdstk.Cell] = {}

    def block(width_index: int, rows: int, columns: int) -> gdstk.Cell:
        key = (width_index, rows, columns)
        if key not in block_cells:
            if width_index not in pillars:
                w = table[width_index] * 1e-3 / 2
                pillars[width_index] = library.new_cell(f"PILLAR_{int(round(table[width_index]))}NM").add(
                    gdstk.rectangle((-w, -w), (w, w), layer=pillar_layer, datatype=pillar_type))
            cell = library.new_cell(f"BLOCK_{int(round(table[width_index]))}NM_{rows}X{columns}")
            cell.add(gdstk.Reference(pillars[width_index], (period / 2, period / 2), columns=columns, rows=rows,
                                     spacing=(period, period)))
            block_cells[key] = cell
        return block_cells[key]

    top = library.new_cell("METASURFACE")
    references = 0
    for entry in card["suboptics"]:
        index_map = handoff.widths[entry["group"]][entry["kernel_in_group"], entry["half"]]  # (N, N) rows = y
        cell = library.new_cell(entry["cell"])
        for i in range(mask_res):  # the map's row i lies at +y, its column j at +x (as in the simulation)
            for j in np.flatnonzero(index_map[i]):
                origin = (starts[j] * period - half_side, starts[i] * period - half_side)
                cell.add(gdstk.Reference(block(int(index_map[i, j]), int(lengths[i]), int(lengths[j])), origin))
                references += 1
        y_mm, x_mm = entry["centre_mm"]
        origin = (x_mm * 1e3, y_mm * 1e3)
        top.add(gdstk.Reference(cell, origin))
        label_layer, label_type = LAYERS["labels"]
        top.add(gdstk.Label(f"k{entry['kernel']}{entry['sign']}", origin, layer=label_layer, texttype=label_type))
    half = card["aperture_mm"] * 1e3 / 2
    outline_layer, outline_type = LAYERS["outline"]
    top.add(gdstk.rectangle((-half, -half), (half, half), layer=outline_layer, datatype=outline_type))
    library.write_gds(str(path))
    sizes = {"gds_mb": path.stat().st_size / 2**20, "sample_references": references,
             "sites_per_side": sites, "width_cells": len(pillars), "block_cells": len(block_cells)}
    if oasis:
        oas = path.with_suffix(".oas")
        library.write_oas(str(oas))
        sizes["oas_mb"] = oas.stat().st_size / 2**20
    return sizes


def write_preview(handoff: HandOff, path: Path | BinaryIO, *, size: int = 720) -> None:
    """A PNG (to a path or a binary file): the whole aperture (every sub-optic's width map where the layout puts it; dark = no
    pillar, bright = wide) beside one sub-optic at full resolution."""
    from PIL import Image

    card = handoff.card
    table = np.asarray(card["width_table_nm"])
    scale = 255 / table.max()
    aperture_um = card["aperture_mm"] * 1e3
    suboptic_um = card["mask_res"] * card["pitch_um"]
    whole = Image.new("L", (size, size), 32)
    pixels_per_um = size / aperture_um
    tile = max(1, int(suboptic_um * pixels_per_um))
    for entry in card["suboptics"]:
        widths = table[handoff.widths[entry["group"]][entry["kernel_in_group"], entry["half"]]] * scale
        image = Image.fromarray(widths.astype(np.uint8)).resize((tile, tile), Image.NEAREST)
        y_mm, x_mm = entry["centre_mm"]
        left = int((x_mm * 1e3 + aperture_um / 2) * pixels_per_um - tile / 2)
        top = int((aperture_um / 2 - y_mm * 1e3) * pixels_per_um - tile / 2)  # +y up on the picture
        whole.paste(image.transpose(Image.FLIP_TOP_BOTTOM), (left, top))
    first = card["suboptics"][0]
    zoom = table[handoff.widths[first["group"]][first["kernel_in_group"], first["half"]]] * scale
    zoom_image = Image.fromarray(zoom.astype(np.uint8)).resize((size, size), Image.NEAREST).transpose(Image.FLIP_TOP_BOTTOM)
    canvas = Image.new("L", (2 * size + 16, size), 255)
    canvas.paste(whole, (0, 0))
    canvas.paste(zoom_image, (size + 16, 0))
    canvas.save(path, format="PNG")


def export(folder: Path, trial: int, out: Path, *, oasis: bool = False) -> dict[str, float]:
    """Export one trial's design into ``out/trial-<N>/``; returns what `write_layout` measured plus
    the seconds it took."""
    start = time.perf_counter()
    handoff = handoff_of(folder, trial)
    target = out / f"trial-{trial:05d}"
    target.mkdir(parents=True, exist_ok=True)
    for name, content in handoff.files().items():
        (target / name).write_bytes(content)
    sizes = write_layout(handoff, target / "metasurface.gds", oasis=oasis)
    write_preview(handoff, target / "preview.png")
    return {**sizes, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explore.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a sweep's results folder, e.g. results/mono")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="the trial index to export")
    which.add_argument("--front", action="store_true", help="every design on the sweep's Pareto front")
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--oasis", action="store_true", help="also write OASIS beside the GDSII")
    args = parser.parse_args(argv)
    if not (args.folder / "sweep.yaml").is_file():
        print(f"{args.folder}: no sweep.yaml; pass a sweep's results folder, e.g. results/mono", file=sys.stderr)
        return 2
    trials = [args.trial] if args.trial is not None else load(args.folder).front["trial_index"].to_list()
    if not trials:
        print(f"{args.folder}: the sweep has no front yet (no complete trial with every objective)", file=sys.stderr)
        return 2
    for trial in trials:
        try:
            sizes = export(args.folder, trial, args.out, oasis=args.oasis)
        except ExportError as exc:
            print(f"cannot export: {exc}", file=sys.stderr)
            return 2
        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in sizes.items())
        print(f"trial {trial}: {args.out / f'trial-{trial:05d}'} ({shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
