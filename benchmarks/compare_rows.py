"""Do two sweeps record the same trials? Compare their rows column by column, by trial index.

    git worktree add --detach /tmp/onn_before <older commit>
    (cd /tmp/onn_before && python -m explore.sweep sweeps/tiny.yaml output=/tmp/eq_before budget.concurrency=1 --no-report)
    python -m explore.sweep sweeps/tiny.yaml output=/tmp/eq_after budget.concurrency=1 --no-report
    python benchmarks/compare_rows.py /tmp/eq_before/tiny/trials /tmp/eq_after/tiny/trials --renamed-2026-11-30

Used to show that a refactor changed no proposal and no metric: one concurrent trial makes the
proposals deterministic. Timings, hosts, process ids and trial ids always differ and are skipped.
``--renamed-2026-11-30`` maps the columns the trial-contract change renamed (old -> new).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from explore.store import read_trials  # noqa: E402

RENAMED_2026_11_30 = {
    "accuracy_ideal": "accuracy_ideal_test", "accuracy_val": "accuracy_ideal_val",
    "accuracy_realised": "accuracy_realised_test", "accuracy_fabricated_raw": "accuracy_fabricated_test",
    "accuracy_fabricated_raw_std": "accuracy_fabricated_test_std", "accuracy_fabricated_raw_p5": "accuracy_fabricated_test_p5",
    "accuracy_fabricated": "accuracy_compensated_test", "accuracy_fabricated_std": "accuracy_compensated_test_std",
    "accuracy_fabricated_p5": "accuracy_compensated_test_p5"}
VARYING = {"trial_id", "host", "pid", "node_ip", "started_unix_s", "finished_unix_s", "code_version", "cpu_s",
           "train_s", "stage"}


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= 1e-9 * max(1.0, abs(a)) or (math.isnan(a) and math.isnan(b))
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="a trials/ folder or a Parquet file")
    parser.add_argument("after", type=Path)
    parser.add_argument("--renamed-2026-11-30", action="store_true", help="map the columns renamed on 2026-11-30")
    args = parser.parse_args()
    load = lambda p: (pl.read_parquet(p) if p.suffix == ".parquet" else read_trials(p)).sort("trial_index")  # noqa: E731
    before, after = load(args.before), load(args.after)
    renamed = RENAMED_2026_11_30 if args.renamed_2026_11_30 else {}
    compared, differ = 0, []
    for column in before.columns:
        if column in VARYING or column.startswith("t_"):
            continue
        new = renamed.get(column, column)
        if new not in after.columns:
            differ.append(f"{column}: no column {new} after")
            continue
        a, b = before[column].to_list(), after[new].to_list()
        compared += 1
        if len(a) != len(b) or not all(same(x, y) for x, y in zip(a, b)):
            differ.append(f"{column} -> {new}: {a} vs {b}")
    print(f"{len(before)} rows before, {len(after)} after; {compared} columns compared "
          f"(timings, hosts, pids, trial ids skipped); {len(differ)} differ")
    for line in differ:
        print("  " + line)
    sys.exit(1 if differ or len(before) != len(after) else 0)


if __name__ == "__main__":
    main()
