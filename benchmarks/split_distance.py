"""Why constrained poly scores ~11 points lower on test than on validation (issue 19).

    python benchmarks/split_distance.py --models results/t3_19        # ~20 min beside two other jobs

`photo_patches` splits every photo into column bands (`onn.data.classify.BANDS`): train 0–60 % of
its width, validation 60–75 %, test 75–100 %. The validation band borders the training band and is
narrow (8–27 patch positions across), the test band lies beyond it. This scores Table 3's poly
students (the no-transfer and NTKD models of each seed, both regimes, as kept under
``<models>/poly_<regime>/models``) on fresh patches drawn from each band, the test band cut into
its near and far half, to see whether accuracy falls with the distance from the training columns.
The patches are drawn with their own seed, not the dataset's, so the training band's are new crops
of seen pixels; the figures are for diagnosis only and choose nothing.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from explore.systems import build_student, load_system, system_design  # noqa: E402
from onn.cache import safe_torch_load  # noqa: E402
from onn.data.classify import BANDS, _photos  # noqa: E402

# (label, band, share of its left-edge range): the test band in its near and far half
PLACES = (("train band", "train", 0.0, 1.0), ("val band", "val", 0.0, 1.0),
          ("test band, near half", "test", 0.0, 0.5), ("test band, far half", "test", 0.5, 1.0))
REGIMES = ("default", "constrained")


def patches(per_class: int, seed: int, size: int = 32) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    photos = _photos(256)  # as `photo_patches` builds them
    rng = np.random.default_rng(seed)
    out = {}
    for label, band, f0, f1 in PLACES:
        images, labels = [], []
        for cls, photo in enumerate(photos):
            height, width = photo.shape[:2]
            lo, hi = int(BANDS[band][0] * width), int(BANDS[band][1] * width) - size
            x0, x1 = lo + int(f0 * (hi - lo)), lo + int(f1 * (hi - lo))
            xs, ys = rng.integers(x0, x1 + 1, per_class), rng.integers(0, height - size + 1, per_class)
            images += [photo[y:y + size, x:x + size] for x, y in zip(xs, ys)]
            labels += [cls] * per_class
        out[label] = (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True,
                        help="folder holding Table 3's poly_default/ and poly_constrained/ runs")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--per-class", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    system, data, _ = load_system("poly")
    sets = patches(args.per_class, seed=1)
    print(f"Poly students of Table 3 on fresh patches from each column band ({args.per_class} per class), "
          f"accuracy %, mean over seeds {args.seeds} (per seed in brackets)\n")
    print("| regime | method | " + " | ".join(label for label, *_ in PLACES) + " |")
    print("|---|---|" + "---|" * len(PLACES))
    for regime in REGIMES:
        folder = args.models / f"poly_{regime}"
        if not (folder / "table3.parquet").exists():
            sys.exit(f"{folder}/table3.parquet not found: run Table 3's poly commands (benchmarks/README.md) "
                     f"with --out {folder}")
        runs = pl.read_parquet(folder / "table3.parquet")  # its rows name the students it kept
        design = system_design(system, ast.literal_eval(runs["changes"][0]))
        for method in ("task", "ntkd"):
            scores = []
            for seed in args.seeds:
                path = folder / "models" / runs.filter(method=method, seed=seed)["model"][-1]  # the latest
                model = build_student(design, data, seed=seed)
                model.load_state_dict(safe_torch_load(path)["state_dict"])
                model.eval()
                with torch.no_grad():
                    torch.manual_seed(0)  # the read noise
                    scores.append([100 * (model(x).argmax(1) == y).float().mean().item() for x, y in sets.values()])
            mean = np.mean(scores, axis=0)
            cells = [f"{m:.1f} [{', '.join(f'{s[i]:.1f}' for s in scores)}]" for i, m in enumerate(mean)]
            print(f"| {regime} | {method} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
