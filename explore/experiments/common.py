"""The kit every experiment script shares: its command line (where to write, on which device, how
many threads), the process set-up that must happen before any work, a table of runs kept on disk
after every run, and the Markdown it is reported in."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

import polars as pl
import torch
import yaml

from explore.runtime import ensure_malloc_env
from onn.train import TrainConfig

# How each backend fine-tuning compensation (`onn.robustness.Compensation`) is named in tables.
COMPENSATION_LABELS = {"none": "no compensation", "task": "task-loss fine-tune", "ntkd": "NTKD fine-tune"}


def add_run_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")


def parse_and_start(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, re-exec with the malloc settings if needed, pin the threads."""
    args = parser.parse_args(argv)
    ensure_malloc_env()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def assignments(items: Sequence[str], flag: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` command-line items as a dict, each value read as YAML (``2`` -> 2, ``true`` -> True)."""
    bad = [item for item in items if "=" not in item]
    if bad:
        raise SystemExit(f"{flag} takes KEY=VALUE items, got {bad}")
    return {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in items)}


def command_line(module: str) -> str:
    """The command that ran this script, for the header of its tables."""
    return f"python -m {module} " + " ".join(sys.argv[1:])


class RunTable:
    """Rows of an experiment, written to ``path`` (Parquet) after every row: a crash keeps the runs
    already finished."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.frame.write_parquet(self.path)

    def extend(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    @property
    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows)


_KD_FIELDS = {"kd_alpha", "kd_temperature"}
_NTK_FIELDS = {f.name for f in dataclasses.fields(TrainConfig) if f.name.startswith("ntk_")}


def model_path(folder: Path, system: str, config: TrainConfig, changes: dict | None = None) -> Path:
    """Where an experiment keeps the student it trained (``folder/models/...``), named by everything
    its training depends on, so another experiment (Table 4 after Table 3) can start from it and a
    resumed one can tell it is there. The weights, seed and budget are spelt out; any other training
    setting off its default (for the method at hand: a task-loss run ignores KD's and NTKD's), and
    the design changes, enter as short hashes."""
    temperature = "" if config.kd_temperature == TrainConfig.kd_temperature else f"-T{config.kd_temperature:g}"
    weights = {"kd": f"-a{config.kd_alpha:g}{temperature}",
               "ntkd": f"-b{config.ntk_beta:g}{'-centred' if config.ntk_centre else ''}"}.get(config.method, "")
    tag = f"{system}-{config.method}{weights}-s{config.seed}-e{config.epochs:g}"
    if config.max_steps:
        tag += f"-m{config.max_steps}"
    if changes:
        tag += "-" + hashlib.sha1(repr(sorted(changes.items())).encode()).hexdigest()[:8]
    ignored = {"method", "seed", "epochs", "max_steps", "kd_alpha", "kd_temperature", "ntk_beta", "ntk_centre",
               "eval_batch_size", "log_every_s"}  # spelt out above, or not a training setting
    ignored |= (_KD_FIELDS if config.method != "kd" else set()) | (_NTK_FIELDS if config.method != "ntkd" else set())
    # the normalisation that goes with the centring is implied by "-centred" (or its absence)
    defaults = {**{f.name: f.default for f in dataclasses.fields(TrainConfig)},
                "ntk_normalise": "frobenius" if config.ntk_centre else "trace"}
    others = sorted((name, value) for name, value in dataclasses.asdict(config).items()
                    if name not in ignored and value != defaults[name])
    if others:
        tag += "-t" + hashlib.sha1(repr(others).encode()).hexdigest()[:8]
    return folder / "models" / f"{tag}.pt"


METHOD_NAMES = {"task": "no transfer", "kd": "KD", "ntkd": "NTKD"}


def ordering(frame: pl.DataFrame, metric: str, unit: str = "points") -> list[str]:
    """Does NTKD > KD > no transfer hold on ``metric``? Each pair's difference paired by seed (mean ±
    sample std, and in how many seeds the first is higher), then the order on the means. ``frame``:
    one row per (method, seed) of one system."""
    means = {m: frame.filter(pl.col("method") == m)[metric].mean() for m in METHOD_NAMES}
    lines = []
    for better, worse in (("ntkd", "kd"), ("kd", "task"), ("ntkd", "task")):
        paired = (frame.filter(pl.col("method") == better).join(frame.filter(pl.col("method") == worse), on="seed",
                                                                suffix="_other"))
        if not len(paired):
            continue
        diffs = (paired[metric] - paired[f"{metric}_other"]).to_list()
        spread = f" ± {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else ""
        lines.append(f"{METHOD_NAMES[better]} − {METHOD_NAMES[worse]}: {statistics.fmean(diffs):+.2f}{spread} {unit}, "
                     f"higher in {sum(d > 0 for d in diffs)} of {len(diffs)} seeds")
    if all(v is not None for v in means.values()):
        holds = means["ntkd"] > means["kd"] > means["task"]
        order = " > ".join(METHOD_NAMES[m] for m in sorted(means, key=means.get, reverse=True))
        lines.append(f"NTKD > KD > no transfer on the means: {'holds' if holds else 'does not hold'} ({order})")
    return lines


def recovery(frame: pl.DataFrame, metric: str = "test_accuracy_pct", keys: Sequence[str] = ("system", "seed"),
             ) -> pl.DataFrame:
    """The share of each fabrication draw's drop that each fine-tune wins back,
    ``recovered = (fine-tuned − as made) / (ideal − as made)``: one row per fine-tuned draw. ``frame``:
    rows with ``method`` ("ideal" per ``keys``; as made and each fine-tune per ``keys`` and ``draw``)."""
    ideal = frame.filter(pl.col("method") == "ideal").select(*keys, ideal=metric)
    made = frame.filter(pl.col("method") == COMPENSATION_LABELS["none"]).select(*keys, "draw", made=metric)
    tuned = frame.filter(pl.col("method").is_in([COMPENSATION_LABELS[m] for m in ("task", "ntkd")]))
    return (tuned.join(made, on=[*keys, "draw"]).join(ideal, on=list(keys))
            .with_columns(recovered=pl.when(pl.col("ideal") != pl.col("made"))  # no drop: nothing to recover
                          .then((pl.col(metric) - pl.col("made")) / (pl.col("ideal") - pl.col("made")))))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table, one line per row; cells are shown as given (format them first)."""
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]


def mean_std(values: list[float]) -> str:
    """"mean ± std" (sample std) of the finite values; the value alone for one; "–" for none."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"
