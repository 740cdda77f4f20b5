"""Published daily rows in the local SQLite state file (the embedded default without Redis).

The rows share ``state.db`` with the entity histories (:mod:`stream_infer.state.sqlite_entities`)
but have their own connections: the label processor writes them, the worker and the sidecar
only read them. WAL mode lets readers go on while the label processor writes.

Every method raises :class:`~stream_infer.errors.StoreUnavailableError` when SQLite fails to do
its I/O (locked or busy past ``busy_timeout_s``, disk I/O error, disk full); a failed write
transaction is rolled back, so the call can be repeated as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from stream_infer.state.base import decode_row, encode_row
from stream_infer.state.sqlite_db import SqliteDb
from stream_infer.streamdef.daily_source import DailyRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS daily_rows (
    view TEXT NOT NULL, day INTEGER NOT NULL, entity TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (view, day, entity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_CHUNK = 500  # stay under SQLite's bound-variable limit


class SqliteDailyRows:
    """:class:`~stream_infer.state.base.DailyRowStore` on a SQLite file: one table of rows
    (view, day, join key -> the row's floats as text, exact; any width).

    Raises:
        StoreUnavailableError: (opening) the file cannot be opened or set up.
    """

    def __init__(self, path: Path, busy_timeout_s: float = 5.0) -> None:
        self._db = SqliteDb(path, busy_timeout_s, SCHEMA)

    def close(self) -> None:
        self._db.close()

    def rows(
        self, view: str, keys: Iterable[tuple[str, int]]
    ) -> Mapping[tuple[str, int], DailyRow]:
        wanted = set(keys)
        out: dict[tuple[str, int], DailyRow] = {}
        by_day: dict[int, list[str]] = {}
        for key, day in wanted:
            by_day.setdefault(day, []).append(key)
        with self._db.read("daily rows read") as db:
            for day, entities in by_day.items():
                for i in range(0, len(entities), _CHUNK):
                    chunk = entities[i : i + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for key, value in db.execute(
                        "SELECT entity, value FROM daily_rows WHERE view = ? AND day = ? "
                        f"AND entity IN ({marks})",
                        [view, day, *chunk],
                    ):
                        out[(key, day)] = decode_row(value)
        return out

    def publish(
        self, rows: Mapping[str, Mapping[tuple[str, int], DailyRow]], complete_through: int
    ) -> None:
        with self._db.transaction("daily rows publish") as db:
            db.executemany(
                "INSERT OR REPLACE INTO daily_rows VALUES (?, ?, ?, ?)",
                [
                    (view, day, key, encode_row(row))
                    for view, per in rows.items()
                    for (key, day), row in per.items()
                ],
            )
            db.execute(
                "INSERT INTO meta VALUES ('complete_through', ?) ON CONFLICT(key) DO UPDATE "
                "SET value = max(value, excluded.value)",
                (complete_through,),
            )

    def complete_through(self) -> int | None:
        with self._db.read("watermark read") as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'complete_through'").fetchone()
        return None if row is None else int(row[0])
