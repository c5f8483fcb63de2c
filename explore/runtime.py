"""Process set-up for the command-line entry points (not for library use), and the code version.

glibc hands PyTorch's multi-MB buffers back to the kernel after every op, and the page faults
that follow dominate large-tensor CPU code (ENVIRONMENT.md: 1.1-6x on propagation, ~5x on the
sensor model). The fix must be in the environment before the process starts, so an entry point
calls `ensure_malloc_env()` first: if the variables are missing it sets them and re-executes the
same command line once. Ray workers get the same variables through ``runtime_env``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "17179869184", "MALLOC_TRIM_THRESHOLD_": "17179869184"}


def ensure_malloc_env() -> None:
    """Re-exec this process with `MALLOC_ENV` unless it is already set (or ONN_NO_REEXEC=1)."""
    if all(os.environ.get(k) for k in MALLOC_ENV) or os.environ.get("ONN_NO_REEXEC") == "1":
        return
    env = {**os.environ, **MALLOC_ENV}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def code_version() -> str:
    """``<package version>+<git commit>`` of this checkout (the version alone outside git)."""
    import onn

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{onn.__version__}+{sha}" if sha else onn.__version__
