"""What every experiment script's command line shares: where to write, on which device, how many
threads; and the process set-up that must happen before any work."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from explore.runtime import ensure_malloc_env


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
