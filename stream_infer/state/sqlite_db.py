"""Two connections to one local SQLite file, as the embedded stores use it.

A writer connection and a query-only reader connection, each under its own lock, so a read
never waits behind a write transaction; WAL mode lets other processes read while one writes.
Every use maps SQLite's I/O failures (locked or busy past ``busy_timeout_s``, disk I/O error,
disk full) to :class:`~stream_infer.errors.StoreUnavailableError`; a failed write transaction
is rolled back, so the caller can repeat it as it is.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from stream_infer.errors import StoreUnavailableError


@contextmanager
def sqlite_io(what: str) -> Iterator[None]:
    """Raise :class:`StoreUnavailableError` (naming ``what``) for a SQLite I/O failure."""
    try:
        yield
    except sqlite3.OperationalError as exc:  # locked, busy, disk I/O, full
        raise StoreUnavailableError(f"sqlite {what} failed: {exc}") from exc


def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    # Autocommit (isolation_level=None): transactions are begun explicitly below.
    return sqlite3.connect(
        path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
    )


class SqliteDb:
    """A writer and a query-only reader connection to ``path``, the schema applied.

    ``writer_pragmas`` run on the writer after WAL mode and ``synchronous=NORMAL``;
    ``reader_pragmas`` on the reader after ``query_only``.

    Raises:
        StoreUnavailableError: (opening) the file cannot be opened or set up.
    """

    def __init__(
        self,
        path: Path,
        busy_timeout_s: float,
        schema: str,
        *,
        writer_pragmas: Sequence[str] = (),
        reader_pragmas: Sequence[str] = (),
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        with sqlite_io("open"):
            self._writer = _connect(path, busy_timeout_s)
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._writer.execute("PRAGMA synchronous=NORMAL")
            for pragma in writer_pragmas:
                self._writer.execute(f"PRAGMA {pragma}")
            self._writer.executescript(schema)
            self._reader = _connect(path, busy_timeout_s)
            self._reader.execute("PRAGMA query_only=1")
            for pragma in reader_pragmas:
                self._reader.execute(f"PRAGMA {pragma}")

    def close(self) -> None:
        """Close both connections (each once its current user is done)."""
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._writer.close()

    @contextmanager
    def read(self, what: str) -> Iterator[sqlite3.Connection]:
        """The reader connection, under its lock (never the writer's).

        Raises:
            StoreUnavailableError: SQLite failed to do its I/O.
        """
        with self._read_lock, sqlite_io(what):
            yield self._reader

    @contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction under the writer's lock; rolled back if anything in it fails.

        Raises:
            StoreUnavailableError: SQLite failed to do its I/O (the transaction is rolled back).
        """
        with self._lock, sqlite_io(what):
            db = self._writer
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
