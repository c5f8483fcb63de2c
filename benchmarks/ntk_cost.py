"""Cost and error of the empirical NTK Gram estimates on the mono preset (SPEC §2).

    python benchmarks/ntk_cost.py --batch 32

For a freshly initialised mono hybrid on real MNIST images: the exact Gram (Jacobian contraction)
against the output-probe estimate with 1..8 probes and the last-layer Gram. Prints the median time
of each as a ratio to the exact one (measured in the same process), the relative Frobenius error of
the estimates (mean over 5 probe seeds) and the correlation of the last-layer Gram's entries with
the exact ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from explore.systems import SYSTEMS, build_student
from onn.data import load_dataset
from onn.ntk import empirical_ntk


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    system = SYSTEMS["mono"]
    data = load_dataset(system.dataset)
    model = build_student(system.design, data, seed=0)
    x = data.train.tensors[0][: args.batch]
    print(f"mono preset ({sum(p.numel() for p in model.parameters())} parameters), batch {args.batch}, "
          f"{args.threads} thread(s), malloc env {'on' if os.environ.get('MALLOC_MMAP_THRESHOLD_') else 'off'}")
    exact = empirical_ntk(model, x, mode="exact").detach()
    t_exact = median_seconds(lambda: empirical_ntk(model, x, mode="exact"), args.repeats)
    print(f"| Gram | time ms | x exact time | rel. Frobenius error | corr. with exact |\n|---|---:|---:|---:|---:|")
    print(f"| exact | {t_exact * 1e3:.0f} | 1.00 | 0 | 1 |")
    for probes in (1, 2, 4, 8):
        seconds = median_seconds(lambda: empirical_ntk(model, x, mode="probe", probes=probes), args.repeats)
        errors = [float((empirical_ntk(model, x, mode="probe", probes=probes,
                                       generator=torch.Generator().manual_seed(s)).detach() - exact).norm() / exact.norm())
                  for s in range(5)]
        print(f"| probe x{probes} | {seconds * 1e3:.0f} | {seconds / t_exact:.2f} | {statistics.mean(errors):.3f} | – |")
    last = empirical_ntk(model, x, mode="last_layer").detach()
    seconds = median_seconds(lambda: empirical_ntk(model, x, mode="last_layer"), args.repeats)
    corr = torch.corrcoef(torch.stack([last.flatten(), exact.flatten()]))[0, 1]
    print(f"| last layer | {seconds * 1e3:.0f} | {seconds / t_exact:.2f} | "
          f"{float((last / last.norm() - exact / exact.norm()).norm()):.3f} (after scaling) | {float(corr):.3f} |")


if __name__ == "__main__":
    main()
