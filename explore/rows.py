"""The trial row: its Parquet schema, and the one function that fills it from a trial's outcome.

Columns come from `explore.columns.COLUMNS` (units in their names). ``param.<name>`` columns hold
the design point as sampled (one per parameter of the sweep file). A trial that stopped early has
nulls where its later stages would be.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import polars as pl

from explore.columns import BOOKKEEPING, SCHEMA
from explore.space import value_dtype
from explore.spec import SweepSpec
from explore.trial import TrialOutcome


def row_schema(spec: SweepSpec) -> dict[str, pl.DataType]:
    """The sweep's full schema: the base columns plus one ``param.<name>`` per space/fixed key."""
    params = {f"param.{name}": domain.dtype for name, domain in spec.space.items()}
    params.update({f"param.{name}": value_dtype([value]) for name, value in spec.fixed.items()})
    return {**SCHEMA, **params}


REUSABLE_STATUSES = ("complete", "pruned", "infeasible")  # a failed trial is tried again, never reused


def reused_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a twin (the same design point later in the sweep) takes from ``row`` (a row or a
    trial's report): the outcome and the design's numbers, not the bookkeeping or the times and
    CPU, which are the twin's own (near zero); ``reuses_trial`` says whose they are."""
    kept = {k: v for k, v in row.items()
            if k in SCHEMA and (k not in BOOKKEEPING or k in ("status", "reason", "stage", "artefacts"))
            and not k.startswith(("t_", "cpu_"))}
    return {**kept, "reuses_trial": row.get("reuses_trial") if row.get("reuses_trial") is not None
            else row["trial_index"]}


def outcome_metrics(outcome: TrialOutcome) -> dict[str, Any]:
    """The row's metric columns from a trial's stage results (None where a stage did not run)."""
    row: dict[str, Any] = {"status": outcome.status, "reason": outcome.reason, "stage": outcome.stage,
                           "t_total_s": outcome.seconds["total"], "violation": outcome.violation}
    row.update({f"t_{stage}_s": seconds for stage, seconds in outcome.seconds.items() if stage != "total"})
    row["cpu_estimate_s"] = outcome.cpu_seconds.get("estimate")
    if (d := outcome.described) is not None:
        row.update(n_kernels=d.n_kernels, colours=d.colours, n_suboptics=d.n_suboptics, pitch_um=d.pitch_um,
                   hidden="x".join(map(str, d.hidden)), n_params=d.n_params, haze=d.haze)
    if (e := outcome.estimated) is not None:
        energy = e.energy
        row.update(est_accuracy=e.accuracy.design, energy_pj=energy.total_pj, energy_capture_pj=energy.capture_pj,
                   energy_readout_pj=energy.readout_pj, energy_adc_pj=energy.adc_pj,
                   energy_digital_mac_pj=energy.digital_mac_pj, energy_digital_add_pj=energy.digital_add_pj,
                   energy_all_digital_pj=e.all_digital.total_pj, macs=energy.digital_macs,
                   pixels_read=energy.pixels_read)
    if (t := outcome.trained) is not None:
        row.update(accuracy_ideal_test=t.test_metric, accuracy_ideal_val=t.val_metric, train_s=t.seconds,
                   train_steps=t.steps, train_curve=json.dumps([[round(e, 4), loss, score] for e, loss, score in t.history]))
    if (r := outcome.realised) is not None:
        row.update(realised_kernel_error=r.realisation.mean("kernel_error"),
                   realised_design_error=r.realisation.mean("design_error"),
                   **{f"accuracy_realised_{split}": score for split, score in r.scores.items()},
                   **r.light)
    if (f := outcome.fabricated) is not None:
        method = outcome.compensation
        for split in ("val", "test"):
            row.update(_spread(f"accuracy_fabricated_{split}", f.made(split)))
            if method != "none":
                row.update(_spread(f"accuracy_compensated_{split}", f.compensated(method, split)))
        if method != "none":
            row["compensation_steps"] = f.steps(method)
    return row


def _spread(name: str, spread) -> dict[str, float]:
    return {name: spread.mean, f"{name}_std": spread.std, f"{name}_p5": spread.p5}


def build_row(spec: SweepSpec, params: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One row: ``params`` (sampled + fixed) as ``param.*`` columns, ``metrics`` by column name.

    Raises KeyError for a metric the schema does not know (a typo would otherwise vanish).
    """
    unknown = set(metrics) - set(SCHEMA)
    if unknown:
        raise KeyError(f"metrics outside the row schema: {sorted(unknown)}")
    row = {f"param.{k}": (str(v) if isinstance(v, (list, tuple)) else v) for k, v in params.items()}
    row.update(metrics)
    row["sweep"] = spec.name
    return row
