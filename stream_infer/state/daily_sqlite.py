"""Published daily rows in the local SQLite state file (the embedded default without Redis).

The rows share ``state.db`` with the customer histories (:mod:`stream_infer.state.sqlite_store`)
but have their own connections: the label processor writes them, the worker and the sidecar
only read them. WAL mode lets readers go on while the label processor writes.

Every method raises :class:`~stream_infer.errors.StoreUnavailableError` when SQLite fails to do
its I/O (locked or busy past ``busy_timeout_s``, disk I/O error, disk full); a failed write
transaction is rolled back, so the call can be repeated as it is.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from stream_infer.errors import StoreUnavailableError
from stream_infer.features.online import TerminalRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS terminal_rows (
    day INTEGER NOT NULL, terminal_id TEXT NOT NULL,
    nb1 REAL, risk1 REAL, nb7 REAL, risk7 REAL, nb30 REAL, risk30 REAL,
    PRIMARY KEY (day, terminal_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_CHUNK = 500  # stay under SQLite's bound-variable limit


class SqliteDailyRows:
    """:class:`~stream_infer.state.base.TerminalStore` on a SQLite file.

    Raises:
        StoreUnavailableError: (opening) the file cannot be opened or set up.
    """

    def __init__(self, path: Path, busy_timeout_s: float = 5.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        with self._io("open"):
            self._db = sqlite3.connect(
                path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._reader = sqlite3.connect(
                path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
            )
            self._reader.execute("PRAGMA query_only=1")

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()

    @contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        """The read connection, under its lock (never the writer's)."""
        with self._read_lock, self._io(what):
            yield self._reader

    @contextmanager
    def _io(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:  # locked, busy, disk I/O, full
            raise StoreUnavailableError(f"sqlite {what} failed: {exc}") from exc

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; rolled back if anything in it fails."""
        with self._lock, self._io(what):
            db = self._db
            if db.in_transaction:  # an earlier rollback failed: finish it before starting over
                db.execute("ROLLBACK")
            db.execute("BEGIN IMMEDIATE")  # take the write lock now, not half-way through
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with suppress(sqlite3.Error):  # report the original error, not this one
                        db.execute("ROLLBACK")
                raise

    def rows(self, keys: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], TerminalRow]:
        wanted = set(keys)
        out: dict[tuple[str, int], TerminalRow] = {}
        by_day: dict[int, list[str]] = {}
        for terminal, day in wanted:
            by_day.setdefault(day, []).append(terminal)
        with self._read("terminal read") as db:
            for day, terminals in by_day.items():
                for i in range(0, len(terminals), _CHUNK):
                    chunk = terminals[i : i + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for terminal, *v in db.execute(
                        "SELECT terminal_id, nb1, risk1, nb7, risk7, nb30, risk30 FROM "
                        f"terminal_rows WHERE day = ? AND terminal_id IN ({marks})",
                        [day, *chunk],
                    ):
                        out[(terminal, day)] = (v[0], v[1], v[2], v[3], v[4], v[5])
        return out

    def publish(self, rows: Mapping[tuple[str, int], TerminalRow], complete_through: int) -> None:
        with self._transaction("terminal publish") as db:
            db.executemany(
                "INSERT OR REPLACE INTO terminal_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(day, terminal, *row) for (terminal, day), row in rows.items()],
            )
            db.execute(
                "INSERT INTO meta VALUES ('complete_through', ?) ON CONFLICT(key) DO UPDATE "
                "SET value = max(value, excluded.value)",
                (complete_through,),
            )

    def complete_through(self) -> int | None:
        with self._read("watermark read") as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'complete_through'").fetchone()
        return None if row is None else int(row[0])
