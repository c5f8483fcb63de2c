"""One Parquet dataset per sweep, written only by the driver, readable while the sweep runs.

Layout of ``<folder>/``:

- ``part-00000.parquet``, ``part-00001.parquet``, ...: immutable part files of bounded size, each
  written to a temporary name and renamed into place (a reader never sees half a file);
- ``journal.jsonl``: rows not yet in a part file, one JSON object per line, fsynced per row, so a
  crash loses at most the row being written (a torn last line is ignored);
- ``flushed/journal-00000.jsonl``, ...: the journal each part was written from, kept: a part file
  that is later found damaged (truncated by a full disk, a bad copy) is read from its journal
  instead, with a warning saying so (`repair` rewrites it).

Every row has a unique ``trial_id``. Flushing writes the journal's rows as a new part, checks that
the part reads back, then moves the journal beside it; a crash in between leaves a row in both
places, so readers keep one row per ``trial_id`` (the last written). This is the layout measured in
ENVIRONMENT.md: ~1 000 rows a part keeps reads fast at 100 k rows, and the journal costs one small
append per trial (the kept journals double the rows' footprint on disk, as JSON).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import polars as pl

JOURNAL = "journal.jsonl"
FLUSHED = "flushed"


class StoreError(OSError):
    """Rows cannot be written to the store's folder; the message says where and why."""


class TrialStore:
    """Append-only trial rows with an explicit schema (``column -> polars dtype``)."""

    def __init__(self, folder: str | Path, schema: Mapping[str, pl.DataType], *, flush_rows: int = 1000,
                 flush_s: float = 300.0):
        if "trial_id" not in schema:
            raise ValueError("the schema needs a 'trial_id' column")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.schema = dict(schema)
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self._pending = _read_journal(self.folder / JOURNAL)
        self._last_flush = time.monotonic()

    def append(self, row: Mapping[str, Any]) -> None:
        """Record one row durably (journal + fsync); flush to a part file when due.

        Raises:
            StoreError: the folder cannot be written (permissions, a full disk); the rows written
                before stay readable.
        """
        unknown = set(row) - set(self.schema)
        if unknown:
            raise KeyError(f"row has columns outside the schema: {sorted(unknown)}")
        if row.get("trial_id") is None:
            raise ValueError("every row needs a trial_id")
        row = {k: _jsonable(v) for k, v in row.items()}  # the part file holds what the journal holds
        line = json.dumps(row)
        try:
            with open(self.folder / JOURNAL, "a") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StoreError(f"cannot write trial rows to {self.folder / JOURNAL}: {exc.strerror or exc}") from exc
        self._pending.append(row)
        if len(self._pending) >= self.flush_rows or time.monotonic() - self._last_flush > self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Move the journal's rows into a new part file (checked by reading it back), then keep the
        journal it came from under ``flushed/`` and start an empty one."""
        if not self._pending:
            return
        number = _next_part(self.folder)
        part = self.folder / f"part-{number:05d}.parquet"
        try:
            _atomic_parquet(_frame(self._pending, self.schema), part)
            if pl.read_parquet(part).height != len(self._pending):
                raise OSError(f"{part} read back with the wrong number of rows")
            (self.folder / FLUSHED).mkdir(exist_ok=True)
            os.replace(self.folder / JOURNAL, self.folder / FLUSHED / f"journal-{number:05d}.jsonl")
            _atomic_text("", self.folder / JOURNAL)
        except OSError as exc:
            raise StoreError(f"cannot write trial rows to {self.folder}: {getattr(exc, 'strerror', None) or exc}; "
                             f"they stay in {self.folder / JOURNAL}") from exc
        self._pending = []
        self._last_flush = time.monotonic()

    def read(self) -> pl.DataFrame:
        return read_trials(self.folder, self.schema)

    def trial_ids(self) -> set[str]:
        return set(self.read()["trial_id"].to_list())


def read_trials(folder: str | Path, schema: Mapping[str, pl.DataType] | None = None) -> pl.DataFrame:
    """Every row of a sweep (parts + journal), one per ``trial_id``; safe while a sweep writes.

    Without ``schema`` the part files' own schema is used (the journal's rows are cast to it).
    """
    folder = Path(folder)
    parts = sorted(folder.glob("part-*.parquet"))
    frames = [f for f in (_read_part(p, schema) for p in parts) if f is not None]
    if schema is None and frames:
        schema = frames[0].schema
    journal = _read_journal(folder / JOURNAL)
    if journal:
        if schema is None:
            raise ValueError(f"{folder}: rows only in the journal; pass the schema to read them")
        frames.append(_frame(journal, schema))
    if not frames:
        return pl.DataFrame(schema=schema or {"trial_id": pl.String})
    frame = pl.concat([_conform(f, schema) for f in frames], how="diagonal_relaxed")
    return frame.unique("trial_id", keep="last", maintain_order=True)


def _read_part(path: Path, schema: Mapping[str, pl.DataType] | None) -> pl.DataFrame | None:
    """A part file, or its rows from the journal it was written from when the file is damaged
    (saying so on stderr); None if neither can be read (also said)."""
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars/pyarrow raise several kinds for a truncated or corrupt file
        journal = path.parent / FLUSHED / f"journal-{path.stem.split('-')[1]}.jsonl"
        rows = _read_journal(journal)
        if rows and schema is not None:
            print(f"[store] {path.name} is damaged ({type(exc).__name__}: {str(exc)[:120]}); its {len(rows)} rows "
                  f"were read from {journal.relative_to(path.parent)} instead (explore.store.repair rewrites the part)",
                  file=sys.stderr)
            return _frame(rows, schema)
        print(f"[store] {path.name} is damaged ({type(exc).__name__}) and has no journal to recover it from; "
              f"its rows are missing", file=sys.stderr)
        return None


def repair(folder: str | Path, schema: Mapping[str, pl.DataType]) -> list[Path]:
    """Rewrite every damaged part file from its kept journal; returns the parts rewritten."""
    folder = Path(folder)
    fixed = []
    for path in sorted(folder.glob("part-*.parquet")):
        try:
            pl.read_parquet(path)
        except Exception:
            rows = _read_journal(folder / FLUSHED / f"journal-{path.stem.split('-')[1]}.jsonl")
            if rows:
                _atomic_parquet(_frame(rows, schema), path)
                fixed.append(path)
    return fixed


def _conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """``frame`` cast to ``schema``; a column that a part written by older code lacks reads as nulls."""
    missing = [pl.lit(None, dtype).alias(name) for name, dtype in schema.items() if name not in frame.columns]
    return frame.with_columns(missing).cast(dict(schema))


def compact(folder: str | Path, schema: Mapping[str, pl.DataType]) -> None:
    """Merge all part files into one, and their kept journals into its journal (readers in between
    see duplicates, which they drop)."""
    folder = Path(folder)
    parts = sorted(folder.glob("part-*.parquet"))
    if len(parts) < 2:
        return
    merged = pl.concat([_conform(pl.read_parquet(p), schema) for p in parts], how="diagonal_relaxed")
    merged = merged.unique("trial_id", keep="last", maintain_order=True)
    number = _next_part(folder)
    journals = [folder / FLUSHED / f"journal-{p.stem.split('-')[1]}.jsonl" for p in parts]
    kept = [line for j in journals if j.exists() for line in j.read_text().splitlines()]
    if kept:
        (folder / FLUSHED).mkdir(exist_ok=True)
        _atomic_text("\n".join(kept) + "\n", folder / FLUSHED / f"journal-{number:05d}.jsonl")
    _atomic_parquet(merged, folder / f"part-{number:05d}.parquet")
    for part, journal in zip(parts, journals):
        part.unlink()
        journal.unlink(missing_ok=True)


def _frame(rows: list[dict], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    columns = {name: [row.get(name) for row in rows] for name in schema}
    return pl.DataFrame(columns, schema=dict(schema), strict=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN/inf are not JSON; the Parquet column holds null
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _read_journal(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a crash mid-write: that row was never recorded
            continue
    return rows


def _next_part(folder: Path) -> int:
    numbers = [int(p.stem.split("-")[1]) for p in folder.glob("part-*.parquet")]
    return max(numbers, default=-1) + 1


def _atomic_parquet(frame: pl.DataFrame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_text(text: str, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".txt")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
