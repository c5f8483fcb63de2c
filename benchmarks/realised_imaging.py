"""The same realised designs imaged by the window model and by the full sensor frame (issue 18).

    python benchmarks/realised_imaging.py results/mono [--limit N]

For every trial a sweep kept (its quantised widths and trained backend, `results/<name>/artefacts/`),
rebuild the realised system twice (`onn.handoff.rebuild`): with each sub-optic's light kept in its
kernel window, and with the full frame (stray light and crosstalk), then score both on validation
and test. The backend is the one trained in ideal simulation; nothing is retrained for either model.
Prints a Markdown table and the mean drop.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onn.data import load_dataset  # noqa: E402
from onn.handoff import HandOff, rebuild  # noqa: E402
from onn.train import evaluate, headline  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="score on the first N images of each split")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    trials = sorted((args.folder / "artefacts").glob("trial-*"))
    if not trials:
        print(f"{args.folder}: no artefacts/ kept", file=sys.stderr)
        return 2
    data = None
    drops = {"val": [], "test": []}
    print("| trial | kernels | mask_res | window val | frame val | window test | frame test |\n|---|---|---|---|---|---|---|")
    for folder in trials:
        handoff = HandOff.from_files({n: (folder / n).read_bytes() for n in ("card.json", "widths.npz", "model.pt")})
        card = handoff.card
        if data is None:
            data = load_dataset(card["task"]["dataset"])
        scores = {}
        for model in ("window", "frame"):
            system = rebuild(dataclasses.replace(handoff, card={**card, "imaging": {"model": model, "baffle": False}}))
            for split in ("val", "test"):
                subset = getattr(data, split)
                if args.limit:
                    subset = torch.utils.data.TensorDataset(*(t[:args.limit] for t in subset.tensors))
                scores[model, split] = headline(evaluate(system, subset, data.task))
        for split in drops:
            drops[split].append(scores["window", split] - scores["frame", split])
        kernels = sum(g["n_kernels"] for g in card["groups"])
        print(f"| {folder.name.split('-')[1].lstrip('0') or '0'} | {kernels} | {card['mask_res']} | "
              f"{100 * scores['window', 'val']:.2f} | {100 * scores['frame', 'val']:.2f} | "
              f"{100 * scores['window', 'test']:.2f} | {100 * scores['frame', 'test']:.2f} |", flush=True)
    for split, values in drops.items():
        print(f"{split}: the full frame costs {100 * statistics.fmean(values):.2f} points on average "
              f"(from {100 * min(values):.2f} to {100 * max(values):.2f}) over {len(values)} designs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
