"""Energy per inference of the mono and poly presets, term by term, beside their all-digital
equivalents (the dataset's teacher behind a plain camera, and the same backend with the optical
conv computed digitally), and the paper's segmentation figures reproduced (`onn.energy`).

Counts only: teachers are built, not trained. Takes a few seconds (loading MNIST dominates).
    .venv/bin/python benchmarks/energy_breakdown.py [--constants default|paper]
"""

from __future__ import annotations

import argparse

import torch

from onn.data import load_dataset
from onn.design import PRESETS
from onn.energy import (CONSTANTS, breakdown_table, digital_conv_energy, format_energy, get_constants, hybrid_energy,
                        network_energy, reproduce_paper_segmentation)
from onn.models import build_hybrid
from onn.teachers import build_teacher

SYSTEMS = {"mono": ("mnist", "lenet5"), "poly": ("photo_patches", "alexnet")}  # preset -> (dataset, teacher)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--constants", default="default", choices=sorted(CONSTANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    constants = get_constants(args.constants)
    print(f"energy constants {args.constants!r}: " + ", ".join(f"{k}={v:.4g}" for k, v in vars(constants).items()))
    for preset, (dataset, teacher_name) in SYSTEMS.items():
        data = load_dataset(dataset)
        model = build_hybrid(PRESETS[preset], in_channels=data.channels, image_size=data.image_size,
                             n_outputs=data.n_classes)
        example = data.test.tensors[0][:1]  # (1, C, S, S)
        teacher = build_teacher(teacher_name, data)
        columns = {f"{preset} hybrid": hybrid_energy(model, example, constants),
                   "optical conv digital": digital_conv_energy(model, example, constants),
                   f"{teacher_name} (teacher)": network_energy(teacher, example, constants)}
        print(f"\n{preset}: {data.summary()}")
        print(breakdown_table(columns))
        hybrid = columns[f"{preset} hybrid"].total_pj
        for name, b in list(columns.items())[1:]:
            print(f"saving vs {name}: {format_energy(b.total_pj - hybrid)} ({1 - hybrid / b.total_pj:.1%}, "
                  f"{b.total_pj / hybrid:.2f}x)")
    print("\npaper segmentation figures (SPEC §5) with the 'paper' constants:")
    for name, (ours_j, paper_j) in reproduce_paper_segmentation().items():
        print(f"  {name:16s} ours {format_energy(ours_j * 1e12):>9s}   paper {format_energy(paper_j * 1e12):>9s}   "
              f"({ours_j / paper_j - 1:+.2%})")


if __name__ == "__main__":
    main()
