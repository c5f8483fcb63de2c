"""Replay a finished sweep's trials through the estimator gate, offline, at several margins.

    python benchmarks/gate_replay.py results/mono --margins 0 0.005 0.01 0.02
    python benchmarks/gate_replay.py results/mono --reestimate     # with the current estimator

Every trial of the sweep ran to the end (or was pruned by the gate it had then). This takes the rows
in finishing order and asks, for each design that completed, whether the current gate rule
(`explore.trial.gate_reason`, against `explore.trial.gate_front` of the designs completed before it)
would have pruned it, and what that would have cost: the compute saved (its trial time minus the
few seconds of its estimate) and whether the final front would have lost a design. A counterfactual
on real rows, not a new sweep: a pruned design would also have changed what the sampler proposed next.

``--reestimate`` first recomputes every complete design's ``est_accuracy`` with the current
estimator (the sweep's own gate settings and seed), prints its Spearman ρ against the trained
accuracies beside the recorded estimate's, and replays with the new estimates: how an estimator
change would have ranked and gated designs that were trained before it existed.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import polars as pl

from explore.analysis import Analysis, load, spearman
from explore.columns import split_of
from explore.point import base_design, design_point
from explore.trial import gate_estimate, gate_front, gate_reason
from onn.data import load_dataset


def reestimate(a: Analysis) -> pl.DataFrame:
    """``a.rows`` with ``est_accuracy`` of the complete designs recomputed by the current estimator."""
    import torch

    spec = a.spec
    ideal = f"accuracy_ideal_{split_of(a.y)}"
    data = load_dataset(spec.task.dataset, spec.task.root)
    torch.set_num_threads(1)
    estimates = []
    for row in a.rows.iter_rows(named=True):
        if row["status"] != "complete":
            estimates.append(row["est_accuracy"])
            continue
        params = {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.") and v is not None}
        point = design_point(params, base=base_design(data.channels, data.task), training=spec.training,
                             seed=spec.seed)
        estimate = gate_estimate(point.design, data, spec)
        estimates.append(estimate.design)
        print(f"trial {row['trial_index']}: estimate {row['est_accuracy']:.4f} -> {estimate.design:.4f} "
              f"({estimate.seconds_design:.1f} s), trained {row[ideal]:.4f}", flush=True)
    complete = a.rows["status"] == "complete"
    new = pl.Series("est_accuracy", estimates, dtype=pl.Float64)
    for column in (ideal, a.y):
        trained = a.rows.filter(complete)[column].to_numpy()
        _, before = spearman(a.rows.filter(complete)["est_accuracy"].to_numpy(), trained)
        _, after = spearman(new.filter(complete).to_numpy(), trained)
        print(f"estimate vs {column}: recorded {before}; current estimator {after}")
    return a.rows.with_columns(new)


def replay(a: Analysis, margin: float) -> dict:
    spec = a.spec.model_copy(update={"gate": a.spec.gate.model_copy(update={"dominated_margin": margin})})
    rows = a.rows.to_dicts()  # finishing order
    objective = a.y  # the sweep's accuracy objective
    front_ids = set(a.front["trial_id"].to_list())
    pruned, saved_s, lost = [], 0.0, []
    for i, row in enumerate(rows):
        if row["status"] != "complete":
            continue
        earlier = [r for r in rows[:i] if r["status"] == "complete" and r["trial_id"] not in pruned]
        front = gate_front(earlier, objective)
        if gate_reason(row["est_accuracy"], row["energy_pj"], spec.gate, np.array(front) if front else None):
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
    parser.add_argument("--reestimate", action="store_true", help="recompute the estimates with the current estimator")
    args = parser.parse_args()
    a = load(args.folder)
    if args.reestimate:
        a = dataclasses.replace(a, rows=reestimate(a))
    frame = pl.DataFrame([replay(a, m) for m in args.margins])
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, float_precision=3):
        print(frame)


if __name__ == "__main__":
    main()
