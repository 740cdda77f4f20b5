"""SQLite state (entity histories and daily rows) fails cleanly: a locked or unopenable file
raises StoreUnavailableError, a failed write leaves nothing half-applied, and the same store
works once the lock is gone."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream_infer.errors import StoreUnavailableError
from stream_infer.state.daily_sqlite import SqliteDailyRows
from stream_infer.state.entity_rows import EntityRows, EntityWriteSet, StoredEntry
from stream_infer.state.sqlite_entities import SqliteEntityStore

A = StoredEntry("t1", 1_700_000_000, 1, [12.5])
B = StoredEntry("t2", 1_700_000_100, 2, [3.0])
ROW = (1.0, 0.0, 2.0, 0.5, 3.0, 0.25)


def rows(*entries: StoredEntry) -> EntityRows:
    return EntityRows(
        ["c"] * len(entries),
        [e.event_id for e in entries],
        np.array([e.time for e in entries], dtype=np.int64),
        np.array([e.seq for e in entries], dtype=np.int64),
        np.array([e.data for e in entries], dtype=np.float64).reshape(len(entries), 1),
    )


@dataclass
class State:
    """Both stores on one file, as ``open_state`` opens them."""

    c: SqliteEntityStore
    d: SqliteDailyRows


WRITES: dict[str, Callable[[State], Any]] = {
    "save": lambda db: db.c.save(EntityWriteSet([1], rows(B), rows(A))),
    "record_first_day": lambda db: db.c.record_first_day(1),
    "publish": lambda db: db.d.publish({"v": {("T", 100): ROW}}, 95),
}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[State]:
    state = State(
        SqliteEntityStore(tmp_path / "state.db", busy_timeout_s=0.05),
        SqliteDailyRows(tmp_path / "state.db", busy_timeout_s=0.05),
    )
    state.c.save(EntityWriteSet([0], rows(A), EntityRows.empty(1)))
    state.c.record_first_day(5)
    state.d.publish({"v": {("T", 99): ROW}}, 90)
    yield state
    state.d.close()
    state.c.close()


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another connection holds the write lock (a second writer, a stuck process)."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def snapshot(db: State) -> tuple[Any, ...]:
    return (
        db.c.load(["c"]),
        db.c.first_day(),
        db.d.rows("v", [("T", 99), ("T", 100)]),
        db.d.complete_through(),
    )


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_locked_write_raises_store_unavailable_and_changes_nothing(
    db: State, tmp_path: Path, write: str
) -> None:
    before = snapshot(db)
    with write_locked(tmp_path / "state.db"), pytest.raises(StoreUnavailableError) as info:
        WRITES[write](db)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert snapshot(db) == before  # rolled back, nothing half-applied
    WRITES[write](db)  # the lock is gone: the same call succeeds
    assert snapshot(db) != before


def test_reads_go_on_while_another_process_writes(db: State, tmp_path: Path) -> None:
    with write_locked(tmp_path / "state.db"):  # WAL: readers never wait for the writer
        assert db.c.load(["c"]) == {"c": [A]}
        assert db.c.first_day() == 5
        assert db.d.rows("v", [("T", 99)]) == {("T", 99): ROW}
        assert db.d.complete_through() == 90


def test_a_file_that_cannot_be_opened_raises_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()  # a directory where the database should be
    with pytest.raises(StoreUnavailableError):
        SqliteEntityStore(tmp_path / "state.db")


def test_an_exclusively_locked_file_raises_store_unavailable_on_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteEntityStore(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailableError):
            SqliteEntityStore(path, busy_timeout_s=0.05)
    finally:
        other.execute("ROLLBACK")
        other.close()
    SqliteEntityStore(path).close()
