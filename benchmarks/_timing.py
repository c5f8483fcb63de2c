"""Tiny helpers shared by the benchmark scripts: an interleaved median timer and a line that
says how the process was set up (threads, glibc malloc thresholds; see shared/ENVIRONMENT.md)."""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import torch

MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 2) -> dict[str, float]:
    """Median wall seconds per call of every function.

    Calls are interleaved round-robin (a, b, a, b, ...) so that drift from other work on the
    machine hits every function alike; their ratio is the figure to trust, not the absolute time.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def environment_line() -> str:
    """torch version, thread count and whether the malloc thresholds were set before start."""
    malloc = {var: os.environ.get(var) for var in MALLOC_VARS}
    state = "ON" if all(malloc.values()) else "OFF"
    return (f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, os.cpu_count() {os.cpu_count()}, "
            f"malloc env {state} ({', '.join(f'{k}={v}' for k, v in malloc.items())})")
