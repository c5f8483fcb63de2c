"""The sweep's Parquet store: durable rows, consistent reads while writing, no duplicates."""

import polars as pl
import pytest

from explore.store import JOURNAL, StoreError, TrialStore, compact, read_trials, repair

SCHEMA = {"trial_id": pl.String, "status": pl.String, "accuracy": pl.Float64, "n_kernels": pl.Int64}


def row(i, **extra):
    return {"trial_id": f"t{i}", "status": "complete", "accuracy": i / 10, "n_kernels": i, **extra}


def test_rows_are_readable_before_and_after_flushing(tmp_path):
    store = TrialStore(tmp_path, SCHEMA, flush_rows=3)
    for i in range(5):
        store.append(row(i))
    assert len(list(tmp_path.glob("part-*.parquet"))) == 1  # 3 rows flushed, 2 still in the journal
    frame = read_trials(tmp_path, SCHEMA)
    assert frame["trial_id"].to_list() == [f"t{i}" for i in range(5)]
    assert frame.schema == pl.Schema(SCHEMA)


def test_a_failed_trials_nulls_keep_the_schema(tmp_path):
    store = TrialStore(tmp_path, SCHEMA, flush_rows=1)
    store.append({"trial_id": "bad", "status": "failed", "accuracy": float("nan")})
    store.append(row(1))
    frame = read_trials(tmp_path)  # from the part files' own schema
    assert frame.schema == pl.Schema(SCHEMA)
    assert frame.filter(pl.col("trial_id") == "bad")["accuracy"].to_list() == [None]


def test_parts_written_before_a_column_was_added_read_it_as_null(tmp_path):
    older = {k: v for k, v in SCHEMA.items() if k != "n_kernels"}
    store = TrialStore(tmp_path, older, flush_rows=1)
    store.append({k: v for k, v in row(1).items() if k != "n_kernels"})
    TrialStore(tmp_path, SCHEMA, flush_rows=1).append(row(2))
    frame = read_trials(tmp_path, SCHEMA)
    assert frame.schema == pl.Schema(SCHEMA) and frame["n_kernels"].to_list() == [None, 2]
    compact(tmp_path, SCHEMA)
    assert read_trials(tmp_path, SCHEMA)["n_kernels"].to_list() == [None, 2]


def test_crash_between_part_write_and_journal_truncation_duplicates_nothing(tmp_path):
    store = TrialStore(tmp_path, SCHEMA, flush_rows=100)
    for i in range(3):
        store.append(row(i))
    journal = (tmp_path / JOURNAL).read_text()
    store.flush()
    (tmp_path / JOURNAL).write_text(journal)  # as if the process died before emptying the journal
    reopened = TrialStore(tmp_path, SCHEMA)
    reopened.append(row(3))
    reopened.flush()
    assert read_trials(tmp_path)["trial_id"].to_list() == ["t0", "t1", "t2", "t3"]


def test_a_torn_last_journal_line_is_ignored(tmp_path):
    store = TrialStore(tmp_path, SCHEMA)
    store.append(row(0))
    with open(tmp_path / JOURNAL, "a") as handle:
        handle.write('{"trial_id": "t1", "stat')  # killed mid-write
    assert read_trials(tmp_path, SCHEMA)["trial_id"].to_list() == ["t0"]
    TrialStore(tmp_path, SCHEMA).flush()
    assert read_trials(tmp_path)["trial_id"].to_list() == ["t0"]


def test_rows_outside_the_schema_are_refused(tmp_path):
    store = TrialStore(tmp_path, SCHEMA)
    with pytest.raises(KeyError, match="outside the schema"):
        store.append({**row(0), "surprise": 1})
    with pytest.raises(ValueError, match="trial_id"):
        store.append({"status": "complete"})


def test_compaction_keeps_every_row_once(tmp_path):
    store = TrialStore(tmp_path, SCHEMA, flush_rows=2)
    for i in range(7):
        store.append(row(i))
    store.flush()
    assert len(list(tmp_path.glob("part-*.parquet"))) == 4
    compact(tmp_path, SCHEMA)
    assert len(list(tmp_path.glob("part-*.parquet"))) == 1
    assert sorted(read_trials(tmp_path)["trial_id"].to_list()) == [f"t{i}" for i in range(7)]


def test_a_truncated_part_file_is_read_from_its_journal_and_repaired(tmp_path, capsys):
    store = TrialStore(tmp_path, SCHEMA, flush_rows=3)
    for i in range(7):
        store.append(row(i))
    parts = sorted(tmp_path.glob("part-*.parquet"))
    assert len(parts) == 2 and (tmp_path / "flushed" / "journal-00000.jsonl").exists()
    data = parts[0].read_bytes()
    parts[0].write_bytes(data[: len(data) // 2])  # truncated mid-write (a full disk, a bad copy)
    frame = read_trials(tmp_path, SCHEMA)
    assert sorted(frame["trial_id"].to_list()) == [f"t{i}" for i in range(7)]  # nothing lost
    assert "part-00000.parquet is damaged" in capsys.readouterr().err
    assert repair(tmp_path, SCHEMA) == [parts[0]]
    assert pl.read_parquet(parts[0])["trial_id"].to_list() == ["t0", "t1", "t2"]
    compact(tmp_path, SCHEMA)  # one part, one journal: a later damage is still recoverable
    (part,) = tmp_path.glob("part-*.parquet")
    assert len((tmp_path / "flushed" / f"journal-{part.stem.split('-')[1]}.jsonl").read_text().splitlines()) == 6


def test_a_full_disk_is_a_clear_error_and_the_rows_so_far_stay(tmp_path, monkeypatch):
    import errno

    import explore.store

    store = TrialStore(tmp_path, SCHEMA, flush_rows=2)
    for i in range(3):
        store.append(row(i))  # two in a part, one in the journal

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(explore.store, "open", full, raising=False)
    with pytest.raises(StoreError, match="cannot write trial rows to .*No space left on device"):
        store.append(row(3))
    monkeypatch.undo()
    assert sorted(read_trials(tmp_path, SCHEMA)["trial_id"].to_list()) == ["t0", "t1", "t2"]
