"""Replay a finished sweep's trials through the estimator gate, offline, at several margins.

    python benchmarks/gate_replay.py results/mono --margins 0 0.005 0.01 0.02

Every trial of the sweep ran to the end (or was pruned by the gate it had then). This takes the rows
in finishing order and asks, for each design that completed, whether the current gate rule
(`explore.trial.gate_reason`, against `explore.trial.gate_front` of the designs completed before it)
would have pruned it, and what that would have cost: the compute saved (its trial time minus the
few seconds of its estimate) and whether the final front would have lost a design. A counterfactual
on real rows, not a new sweep: a pruned design would also have changed what the sampler proposed next.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from explore.analysis import load
from explore.trial import gate_front, gate_reason


def replay(folder: Path, margin: float) -> dict:
    a = load(folder)
    spec = a.spec.model_copy(update={"gate": a.spec.gate.model_copy(update={"dominated_margin": margin})})
    rows = a.rows.to_dicts()  # finishing order
    front_ids = set(a.front["trial_id"].to_list())
    pruned, saved_s, lost = [], 0.0, []
    for i, row in enumerate(rows):
        if row["status"] != "complete":
            continue
        earlier = [r for r in rows[:i] if r["status"] == "complete" and r["trial_id"] not in pruned]
        front = gate_front(earlier)
        if gate_reason(row, spec.gate, np.array(front) if front else None):
            pruned.append(row["trial_id"])
            saved_s += row["t_total_s"] - (row["t_validity_s"] or 0.0) - (row["t_estimate_s"] or 0.0)
            if row["trial_id"] in front_ids:
                lost.append(row["trial_id"])
    total_s = float(a.rows["t_total_s"].fill_null(0.0).sum())
    return {"margin": margin, "complete": int((a.rows["status"] == "complete").sum()), "would prune": len(pruned),
            "saved min": saved_s / 60, "saved %": 100 * saved_s / total_s, "front designs lost": len(lost)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a sweep's results folder (results/<name>)")
    parser.add_argument("--margins", nargs="+", type=float, default=[0.0, 0.005, 0.01, 0.02])
    args = parser.parse_args()
    frame = pl.DataFrame([replay(args.folder, m) for m in args.margins])
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, float_precision=3):
        print(frame)


if __name__ == "__main__":
    main()
