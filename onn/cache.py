"""On-disk cache for expensive artefacts (trained teachers, measured tables).

Location: ``$ONN_CACHE_DIR`` if set, else ``~/.cache/onn``. Files are written to a temporary
name in the same folder and renamed into place, so a crash never leaves a half-written file that
a later run would trust.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


class CacheError(RuntimeError):
    """A cache file exists but cannot be read; the message says what to do."""


def cache_dir() -> Path:
    """The cache folder, created on first use."""
    root = Path(os.environ.get("ONN_CACHE_DIR") or Path.home() / ".cache" / "onn")
    root.mkdir(parents=True, exist_ok=True)
    return root


def source_hash(*objects: Any) -> str:
    """Short hash of the source code of functions/classes: part of a cache key, so that a change
    to the code that produced an artefact invalidates it."""
    import inspect

    digest = hashlib.sha256()
    for obj in objects:
        digest.update(inspect.getsource(obj).encode())
    return digest.hexdigest()[:10]


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the target folder, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` that turns a corrupt file into a `CacheError` saying how
    to recover."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/garbled files
        raise CacheError(
            f"cache file {path} is corrupt or unreadable ({type(exc).__name__}: {exc}). "
            f"Delete it (rm '{path}') and run again to rebuild it."
        ) from exc
