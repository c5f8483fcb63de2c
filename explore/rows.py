"""The trial row: one explicit Parquet schema, and the one function that fills it.

Columns carry their units in their names. ``param.<name>`` columns hold the design point as sampled
(one per parameter of the sweep file); everything else is fixed across sweeps, so every sweep's
table reads the same way. A trial that stopped early has nulls where its later stages would be.
"""

from __future__ import annotations

from typing import Any, Mapping

import polars as pl

from explore.spec import Choice, FloatRange, IntRange, SweepSpec

STATUSES = ("complete", "pruned", "infeasible", "failed")
STAGES = ("validity", "estimate", "gate", "train", "realise", "fabricate", "compensate")

BASE_SCHEMA: dict[str, pl.DataType] = {
    # identity and bookkeeping
    "trial_id": pl.String, "trial_index": pl.Int64, "sweep": pl.String, "status": pl.String,
    "reason": pl.String, "stage": pl.String,  # the last stage reached
    "attempts": pl.Int64, "seed": pl.Int64, "config_hash": pl.String, "code_version": pl.String,
    "host": pl.String, "node_ip": pl.String, "pid": pl.Int64,
    "started_unix_s": pl.Float64, "finished_unix_s": pl.Float64,
    # what the design is
    "n_kernels": pl.Int64, "colours": pl.Int64, "n_suboptics": pl.Int64, "pitch_um": pl.Float64,
    "hidden": pl.String, "n_params": pl.Int64,
    # pre-training predictions
    "est_accuracy": pl.Float64,  # the design-aware estimate (the ∞-width ceiling is not computed per trial)
    "energy_pj": pl.Float64, "energy_capture_pj": pl.Float64, "energy_readout_pj": pl.Float64,
    "energy_adc_pj": pl.Float64, "energy_digital_mac_pj": pl.Float64, "energy_digital_add_pj": pl.Float64,
    "energy_all_digital_pj": pl.Float64, "macs": pl.Int64, "pixels_read": pl.Int64,
    # training (ideal simulation)
    "accuracy_ideal": pl.Float64, "accuracy_val": pl.Float64, "train_s": pl.Float64, "train_steps": pl.Int64,
    # physical realisation of the trained kernels at the design's mask resolution
    "realised_kernel_error": pl.Float64, "realised_design_error": pl.Float64, "accuracy_realised": pl.Float64,
    # fabrication Monte Carlo and compensation
    "accuracy_fabricated_raw": pl.Float64, "accuracy_fabricated_raw_std": pl.Float64,
    "accuracy_fabricated_raw_p5": pl.Float64,
    "accuracy_fabricated": pl.Float64, "accuracy_fabricated_std": pl.Float64, "accuracy_fabricated_p5": pl.Float64,
    # stage timings
    **{f"t_{stage}_s": pl.Float64 for stage in STAGES}, "t_total_s": pl.Float64,
    "cpu_s": pl.Float64,  # CPU time of the trial's worker process (all its threads), loading and set-up included
}


def param_dtype(domain) -> pl.DataType:
    match domain:
        case FloatRange():
            return pl.Float64
        case IntRange():
            return pl.Int64
        case Choice(values=values):
            kinds = {type(v) for v in values}
            if kinds <= {bool}:
                return pl.Boolean
            if kinds <= {int}:
                return pl.Int64
            if kinds <= {int, float}:
                return pl.Float64
            return pl.String
    raise TypeError(domain)


def row_schema(spec: SweepSpec) -> dict[str, pl.DataType]:
    """The sweep's full schema: the base columns plus one ``param.<name>`` per space/fixed key."""
    params = {f"param.{name}": param_dtype(domain) for name, domain in spec.space.items()}
    for name, value in spec.fixed.items():
        params[f"param.{name}"] = {bool: pl.Boolean, int: pl.Int64, float: pl.Float64}.get(type(value), pl.String)
    return {**BASE_SCHEMA, **params}


def build_row(spec: SweepSpec, params: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One row: ``params`` (sampled + fixed) as ``param.*`` columns, ``metrics`` by column name.

    Raises KeyError for a metric the schema does not know (a typo would otherwise vanish).
    """
    unknown = set(metrics) - set(BASE_SCHEMA)
    if unknown:
        raise KeyError(f"metrics outside the row schema: {sorted(unknown)}")
    row = {f"param.{k}": (str(v) if isinstance(v, (list, tuple)) else v) for k, v in params.items()}
    row.update(metrics)
    row["sweep"] = spec.name
    return row
