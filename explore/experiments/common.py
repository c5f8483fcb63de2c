"""What every experiment script's command line shares: where to write, on which device, how many
threads; and the process set-up that must happen before any work."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from explore.runtime import ensure_malloc_env

# Backend fine-tuning after fabrication: row label -> `onn.robustness.compensate` method.
COMPENSATIONS = {"task-loss fine-tune": "none", "NTKD fine-tune": "ntkd"}


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


def mean_std(values: list[float]) -> str:
    """"mean ± std" (sample std) of the non-NaN values; the value alone for one; "–" for none."""
    values = [v for v in values if v == v]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"
