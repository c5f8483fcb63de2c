"""The columns of a trial row: one table, from which everything else about them is derived.

`COLUMNS` gives each column its dtype, unit, meaning and chart label, and whether a sweep may
optimise it (and in which direction). The Parquet schema (`explore.rows`), the metrics a sweep
file may name as objectives (`explore.spec`), the report's labels and tooltips, and the README's
metric table (`markdown_table`, kept in sync by a test) all come from here. Adding a metric is one
entry here plus the code that computes it (`explore.rows.outcome_metrics`).

Accuracies are the task's headline metric in [0, 1]: accuracy for classification, foreground IoU
for segmentation (`onn.train.headline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    doc: str  # what the value is (README, errors, --dry-run)
    unit: str = ""  # "" for counts, labels and fractions in [0, 1]
    label: str = ""  # short axis/tooltip title; defaults to `doc`
    objective: Direction | None = None  # a sweep may optimise it, in this natural direction
    split: Literal["val", "test"] | None = None  # the data split a score is measured on

    @property
    def selectable(self) -> bool:
        """May a sweep choose designs by it? Never by a test-split score."""
        return self.objective is not None and self.split != "test"

    @property
    def title(self) -> str:
        """Axis title: the label with its unit."""
        text = self.label or self.doc
        return f"{text} ({self.unit})" if self.unit else text


def _scores(stem: str, what: str, *, spread: bool = False) -> tuple[Column, ...]:
    """``<stem>_val`` and ``<stem>_test``: a score of the trained system on each split; with
    ``spread``, the mean over fabrication draws and its ``_std`` and ``_p5`` beside each."""
    columns = []
    for split, name in (("val", "validation"), ("test", "test")):
        text = f"{name} {what}"
        if not spread:
            columns.append(Column(f"{stem}_{split}", pl.Float64, f"{text} (0-1)", label=text, objective="max",
                                  split=split))
            continue
        columns += [Column(f"{stem}_{split}", pl.Float64, f"{text}, mean over fabrication draws (0-1)", label=text,
                           objective="max", split=split),
                    Column(f"{stem}_{split}_std", pl.Float64, f"{text}, standard deviation over draws",
                           label=f"{text}, std", split=split),
                    Column(f"{stem}_{split}_p5", pl.Float64, f"{text}, 5th percentile over draws (0-1)",
                           label=f"{text}, p5", objective="max", split=split)]
    return tuple(columns)


STAGES = ("validity", "estimate", "gate", "train", "realise", "fabricate", "compensate")
STATUSES = ("complete", "pruned", "infeasible", "failed", "screened")

COLUMNS: tuple[Column, ...] = (
    # identity and bookkeeping
    Column("trial_id", pl.String, "Tune's trial id (with #<trial index> for each proposal of a screening slot)"),
    Column("trial_index", pl.Int64, "0-based index of the trial in the sweep, in order of proposal"),
    Column("sweep", pl.String, "the sweep's name"),
    Column("status", pl.String, "complete, pruned, infeasible, failed or screened"),
    Column("reason", pl.String, "why the trial stopped early (empty when complete)"),
    Column("stage", pl.String, "the last stage reached"),
    Column("violation", pl.Float64, "how far the design is from feasible or from passing the gate (relative; 0 when "
           "trained); what the sampler's constraint sees"),
    Column("attempts", pl.Int64, "times the trial was started (retries after a worker died)"),
    Column("seed", pl.Int64, "the sweep's seed"),
    Column("config_hash", pl.String, "hash of the design point's parameters"),
    Column("code_version", pl.String, "package version and git commit of the driver"),
    Column("host", pl.String, "host the trial ran on"),
    Column("node_ip", pl.String, "Ray node address the trial ran on"),
    Column("pid", pl.Int64, "worker process id"),
    Column("device", pl.String, "device the trial ran on (cpu, or cuda: the GPU Ray assigned it)"),
    Column("ray_gpu_ids", pl.String, "the GPUs Ray assigned the trial (empty: none asked for)"),
    Column("reuses_trial", pl.Int64, "trial index whose result this twin reuses (the same design, not trained again)"),
    Column("artefacts", pl.String, "folder of the trial's hand-off files (card, widths, weights), relative to the sweep's"),
    Column("started_unix_s", pl.Float64, "start time", unit="s since 1970"),
    Column("finished_unix_s", pl.Float64, "finish time", unit="s since 1970"),
    # what the design is
    Column("n_kernels", pl.Int64, "signed kernels of the optical layer", objective="min"),
    Column("colours", pl.Int64, "camera colours (wavelengths)"),
    Column("n_suboptics", pl.Int64, "sub-optics the layout holds"),
    Column("pitch_um", pl.Float64, "design-sample pitch of the metasurface", unit="µm"),
    Column("haze", pl.Float64, "stray-light ratio of the kernel-level model the design was trained and estimated "
           "with (0: all light in the kernel window; parameter haze)"),
    Column("hidden", pl.String, "hidden widths of the digital backend"),
    Column("n_params", pl.Int64, "parameters of the hybrid model", objective="min"),
    # before training
    Column("est_accuracy", pl.Float64, "design-aware accuracy estimate before training, on held-out validation "
           "samples (0-1)", label="estimated accuracy before training"),
    Column("predicted_accuracy", pl.Float64, "screening: the estimate mapped onto trained accuracy by a line through "
           "the designs trained so far (0-1)", label="predicted accuracy (screening)"),
    Column("energy_pj", pl.Float64, "energy per inference", unit="pJ", label="energy per inference", objective="min"),
    Column("energy_capture_pj", pl.Float64, "energy of light source and exposure", unit="pJ"),
    Column("energy_readout_pj", pl.Float64, "energy of the sensor read-out", unit="pJ"),
    Column("energy_adc_pj", pl.Float64, "energy of the analogue-to-digital conversions", unit="pJ"),
    Column("energy_digital_mac_pj", pl.Float64, "energy of the digital multiply-accumulates", unit="pJ"),
    Column("energy_digital_add_pj", pl.Float64, "energy of the digital additions", unit="pJ"),
    Column("energy_all_digital_pj", pl.Float64, "energy of the same network with its convolution done digitally",
           unit="pJ"),
    Column("macs", pl.Int64, "digital multiply-accumulates per inference", objective="min"),
    Column("pixels_read", pl.Int64, "sensor pixels read per inference", objective="min"),
    # training, ideal simulation
    *_scores("accuracy_ideal", "accuracy in ideal simulation"),
    Column("train_s", pl.Float64, "training time", unit="s", objective="min"),
    Column("train_steps", pl.Int64, "optimiser steps of training"),
    Column("train_curve", pl.String, "learning curve: JSON [[epoch, mean train loss, validation accuracy], ...]"),
    # physical realisation of the trained kernels at the design's mask resolution
    Column("realised_kernel_error", pl.Float64, "normalised L2 error of the realised signed kernels, mean"),
    Column("realised_design_error", pl.Float64, "normalised L2 error of the realised PSFs on the sensor grid, mean"),
    *_scores("accuracy_realised", "accuracy of the realised metasurface, no fabrication error"),
    # where the realised metasurface's light goes (onn.optics.frame.light_budget): fractions of the
    # incident light, mean over sub-optics and wavelengths
    Column("light_in_window", pl.Float64, "light in the sub-optic's own kernel window (0-1)",
           label="in-window efficiency", objective="max"),
    Column("light_own_subimage", pl.Float64, "light elsewhere in the sub-optic's own sub-image (0-1)"),
    Column("light_crosstalk", pl.Float64, "light thrown into other sub-optics' sub-images (0-1)", objective="min"),
    Column("light_unread", pl.Float64, "light on the sensor outside every sub-image, or absorbed by a baffle (0-1)"),
    Column("light_lost", pl.Float64, "light cut by the band limit and evanescence, or past the frame window (0-1)"),
    Column("crosstalk_ratio", pl.Float64, "light into other sub-images per unit kept in the own sub-image",
           label="crosstalk ratio", objective="min"),
    # fabrication Monte Carlo: as made, then with the backend fine-tuned
    *_scores("accuracy_fabricated", "accuracy after fabrication, as made", spread=True),
    *_scores("accuracy_compensated", "accuracy after fabrication and backend fine-tuning", spread=True),
    Column("compensation_steps", pl.Float64, "optimiser steps of the backend fine-tune kept by early stopping on "
           "validation, mean over draws"),
    # stage timings
    *(Column(f"t_{stage}_s", pl.Float64, f"time of the {stage} stage", unit="s") for stage in STAGES),
    Column("t_total_s", pl.Float64, "time of the whole trial", unit="s"),
    Column("cpu_s", pl.Float64, "CPU time of the trial's worker process (all threads), set-up included", unit="s"),
    Column("cpu_estimate_s", pl.Float64, "CPU time of the estimate stage (what screening a design costs)", unit="s"),
)
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
# Known before a design is trained (validity and estimate stages): what screening may rank by.
BEFORE_TRAINING = ("n_kernels", "colours", "n_suboptics", "pitch_um", "haze", "n_params", "est_accuracy",
                   *(c.name for c in COLUMNS if c.name.startswith("energy_")), "macs", "pixels_read")
SCHEMA: dict[str, pl.DataType] = {c.name: c.dtype for c in COLUMNS}
OBJECTIVES: dict[str, Column] = {c.name: c for c in COLUMNS if c.selectable}
TEST_SCORES: dict[str, Column] = {c.name: c for c in COLUMNS if c.split == "test"}
# Columns of bookkeeping: not shown in tooltips or exported with a front design.
BOOKKEEPING = ("trial_id", "trial_index", "sweep", "status", "reason", "stage", "attempts", "seed", "config_hash",
               "code_version", "host", "node_ip", "pid", "device", "ray_gpu_ids", "artefacts", "reuses_trial",
               "started_unix_s", "finished_unix_s")
# The design's own numbers: tooltips and the front export (per-stage timings left out).
METRIC_COLUMNS = tuple(c.name for c in COLUMNS if c.name not in BOOKKEEPING and c.name != "train_curve"
                       and not (c.name.startswith("t_") and c.name != "t_total_s"))


def title(name: str) -> str:
    """Axis title of a column (its name for anything not in the table, e.g. ``param.*``)."""
    column = BY_NAME.get(name)
    return column.title if column else name


def validation_twin(name: str) -> str:
    """The validation column of a test-split score (``accuracy_x_test_p5`` -> ``accuracy_x_val_p5``)."""
    return name.replace("_test", "_val", 1)


def test_twin(name: str) -> str | None:
    """The test-split column beside a validation score (``accuracy_x_val_p5`` -> ``accuracy_x_test_p5``),
    or None for a column that is not a validation score."""
    column = BY_NAME.get(name)
    if column is None or column.split != "val":
        return None
    twin = name.replace("_val", "_test", 1)
    return twin if twin in BY_NAME else None


def split_of(name: str) -> str:
    """The split a score column is measured on; validation for anything else (what a sweep chooses by)."""
    column = BY_NAME.get(name)
    return column.split if column is not None and column.split else "val"


def markdown_table() -> str:
    """The README's metric table: every column a sweep may optimise (test scores never)."""
    lines = ["| metric | what it is | natural direction |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.doc}{f' ({c.unit})' if c.unit else ''} | {c.objective} |" for c in OBJECTIVES.values()]
    return "\n".join(lines)
