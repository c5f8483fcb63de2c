"""What the fabrication hand-off costs: the artefacts a sweep keeps, and one design's export.

    python benchmarks/export_cost.py results/mono [--trial N] [--out DIR]

Prints the kept files' size per complete trial (median and largest) and in total, then exports one
design (``--trial``, default the front design with the finest mask) with ``--oasis`` in a child
process and prints its wall time, peak resident memory, and the GDSII / OASIS sizes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explore.analysis import load  # noqa: E402


def mask_res(folder: Path, trial: int) -> int:
    """The mask resolution a kept trial's design card records (0 if it kept nothing)."""
    card = folder / "artefacts" / f"trial-{trial:05d}" / "card.json"
    return json.loads(card.read_text())["mask_res"] if card.exists() else 0


def kept_sizes(folder: Path) -> list[int]:
    """Bytes of each kept trial's hand-off files."""
    return [sum(f.stat().st_size for f in trial.iterdir()) for trial in sorted((folder / "artefacts").glob("trial-*"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--trial", type=int, help="the trial to export (default: the front design with the finest mask)")
    parser.add_argument("--out", type=Path, help="where to export (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = kept_sizes(args.folder)
    if not sizes:
        print(f"{args.folder}: no artefacts/ kept", file=sys.stderr)
        return 2
    print(f"artefacts: {len(sizes)} trials, median {np.median(sizes) / 1e3:.1f} kB, largest {max(sizes) / 1e3:.1f} kB, "
          f"total {sum(sizes) / 1e6:.2f} MB")
    trial = args.trial
    if trial is None:
        masks = {int(index): mask_res(args.folder, index) for index in load(args.folder).front["trial_index"]}
        trial = max(masks, key=masks.get)  # a sweep may search mask_res or derive it (oversampling): ask the card
        print(f"front design with the finest mask: trial {trial} (mask_res {masks[trial]})")
    out = args.out or Path(tempfile.mkdtemp(prefix="export-cost-"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "explore.export", str(args.folder), "--trial", str(trial),
                           "--out", str(out), "--oasis"], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode:
        print(done.stderr, file=sys.stderr)
        return done.returncode
    print(done.stdout.strip())
    target = out / f"trial-{trial:05d}"
    for name in ("metasurface.gds", "metasurface.oas", "preview.png", "card.json", "widths.npz", "model.pt"):
        print(f"  {name}: {(target / name).stat().st_size / 1e3:.1f} kB")
    print(f"export with OASIS: {seconds:.1f} s wall (process start and imports included), peak resident {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
