"""What would screening save with a better estimate? Replayed on the tabulated benchmark (issue 20).

    python benchmarks/screening_whatif.py          # ~2 min on one core

Random search with screening (k proposals estimated per design trained, the largest estimated
hypervolume gain trained: `explore.screening.choose`) against plain random search, on the table
(`benchmarks/tables/mnist_mono.parquet`) with its estimates as measured and with two counterfactual
estimates: the designs one epoch of training leaves short (backend depth 2 × width 32: estimated
at 0.91–0.95, trained to 0.39–0.93, 19 points below their estimate on average) estimated at what
they trained to, and an oracle
estimate equal to the trained accuracy. Each estimate keeps its measured CPU. Random search is
used because it ignores what it is told, so the differences are the screening's alone. Medians
over 20 seeds of the CPU to 95 % and 99 % of the table's hypervolume, as a ratio to plain random
search on the same seeds.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_replay as sr  # noqa: E402


def median_cpu(table: sr.Table, spec, strategy: sr.Strategy, target: float, seeds: int) -> float:
    options = {"gate": sr.Gate(enabled=True), "cap_cpu": table.train_all_cpu, "max_asks": 3 * len(table.entries),
               "target": target}  # as search_replay.py's defaults
    return float(np.median([sr.replay_one(table, spec, strategy, seed, options).cpu_to(target) for seed in range(seeds)]))


def main(seeds: int = 20) -> None:
    spec = sr.load_spec(sr.SWEEP)
    table = sr.read_table(sr.TABLE, spec)
    depth, width = table.params.index("backend_depth"), table.params.index("backend_width")

    def with_estimate(estimate) -> sr.Table:
        return sr.Table(table.params, {k: dataclasses.replace(e, estimate=estimate(k, e)) for k, e in table.entries.items()})

    estimates = {"as measured": table,
                 "depth-2 × width-32 designs estimated at their trained accuracy": with_estimate(
                     lambda k, e: e.accuracy if (k[depth], k[width]) == (2, 32) else e.estimate),
                 "oracle (estimate = trained accuracy)": with_estimate(lambda k, e: e.accuracy)}
    print("| target | estimate | k = 2 | k = 4 | k = 8 |\n|---|---|---|---|---|")
    for target in (0.95, 0.99):
        plain = median_cpu(table, spec, sr.Strategy("random", "plain"), target, seeds)
        for name, t in estimates.items():
            ratios = [median_cpu(t, spec, sr.Strategy("random", "screen", k, "est"), target, seeds) / plain
                      for k in (2, 4, 8)]
            print(f"| {target:.0%} (random: {plain / 3600:.2f} h) | {name} | "
                  + " | ".join(f"{r:.2f}×" for r in ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
