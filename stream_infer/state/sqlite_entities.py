"""Entity histories in a local SQLite file: the embedded default when no Redis is configured.

WAL mode lets a sidecar process read while a worker writes. Two connections, each under its
own lock: one for writes, one for reads, so the scoring thread's reads (a missed entity's
history) never wait behind the state writer's transaction; a read sees the last committed
write (docs/ARCHITECTURE.md, "The hot path").

Every method raises :class:`~stream_infer.errors.StoreUnavailableError` when SQLite fails to do
its I/O (locked or busy past ``busy_timeout_s``, disk I/O error, disk full); a failed write
transaction is rolled back, so the call can be repeated as it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import orjson

from stream_infer.state.entity_rows import EntityWriteSet, StoredEntry
from stream_infer.state.sqlite_db import SqliteDb

# ``event_id`` has no declared type: an int id stays an int (the kernel compares ids as given).
SCHEMA = """
CREATE TABLE IF NOT EXISTS entity_entries (
    entity TEXT NOT NULL, event_id NOT NULL,
    epoch INTEGER NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (entity, event_id)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_CHUNK = 500  # stay under SQLite's bound-variable limit
_INSERT_JSON = (
    "INSERT OR IGNORE INTO entity_entries SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), "
    "json_extract(value, '$[4]') FROM json_each(?)"
)
_DELETE_JSON = (
    "DELETE FROM entity_entries WHERE (entity, event_id) IN "
    "(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))"
)


def json_doubles_exact(db: sqlite3.Connection) -> bool:
    """Whether this SQLite reads doubles from JSON correctly rounded (3.40 here does; a build
    without JSON, or an older parser, falls back to ``executemany``)."""
    rng = np.random.default_rng(0)
    probe = [
        0.1,
        1 / 3,
        0.30000000000000004,
        5e-324,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        9007199254740993.0,
        *rng.lognormal(3.0, 1.5, 2000).tolist(),
        *np.round(rng.uniform(0, 5000, 2000), 2).tolist(),
    ]
    try:
        got = [
            row[0]
            for row in db.execute(
                "SELECT json_extract(value, '$[0]') FROM json_each(?)",
                (orjson.dumps([[v] for v in probe]),),
            )
        ]
        # A data row travels as a JSON array inside the row and is stored as its JSON text.
        (rows,) = db.execute(
            "SELECT json_extract(value, '$[0]') FROM json_each(?)", (orjson.dumps([[probe]]),)
        ).fetchone()
    except sqlite3.Error:
        return False
    return got == probe and orjson.loads(rows) == probe


def _data(raw: str | bytes) -> list[float]:
    # NaN travels as JSON null (orjson); back to NaN here.
    return [float("nan") if v is None else v for v in orjson.loads(raw)]


class SqliteEntityStore:
    """:class:`~stream_infer.state.entity_rows.EntityStore` on one SQLite file.

    ``json_rows``: save through one JSON statement (None: when this SQLite reads JSON doubles
    exactly; False: ``executemany``, row by row).

    Raises:
        StoreUnavailableError: (opening) the file cannot be opened or set up.
    """

    def __init__(
        self, path: Path, busy_timeout_s: float = 5.0, *, json_rows: bool | None = None
    ) -> None:
        self._db = SqliteDb(
            path,
            busy_timeout_s,
            SCHEMA,
            # Checkpoint (and fsync) the WAL every ~80 MB rather than every 4 MB, and keep hot
            # pages cached: measured 15 -> 5 µs per saved entry. A process crash loses nothing
            # either way.
            writer_pragmas=("wal_autocheckpoint=20000", "cache_size=-65536"),
            reader_pragmas=("cache_size=-65536",),
        )
        with self._db.read("open") as reader:
            exact = json_doubles_exact(reader)
        self._json_rows = exact if json_rows is None else json_rows and exact

    def close(self) -> None:
        self._db.close()

    def load(self, keys: Iterable[str]) -> dict[str, list[StoredEntry]]:
        ids = list(dict.fromkeys(keys))
        out: dict[str, list[StoredEntry]] = {k: [] for k in ids}
        with self._db.read("entity load") as db:
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    "SELECT entity, event_id, epoch, seq, data "
                    f"FROM entity_entries WHERE entity IN ({marks})",
                    chunk,
                ).fetchall()
                for key, event_id, epoch, seq, data in rows:
                    out[key].append(StoredEntry(event_id, epoch, seq, _data(data)))
        return out

    def save(self, writes: EntityWriteSet) -> None:
        """One statement per table: the rows travel as one JSON array that SQLite unpacks
        itself (``json_each``).

        Why not ``executemany``: it releases and re-takes the GIL around every row, so a
        writer thread and the scoring thread hand the GIL back and forth per entry; measured,
        that halved the worker's throughput (docs/ARCHITECTURE.md, "The hot path"). Here the GIL
        is held only to encode the JSON (in C), and SQLite inserts with it released. Values
        round-trip exactly (orjson writes the shortest repr; SQLite reads it back correctly
        rounded, checked at open by :func:`json_doubles_exact`).
        """
        if not writes:
            return
        a, d = writes.added, writes.dropped
        with self._db.transaction("entity save") as db:
            if len(a):
                rows = a.json_rows()
                if self._json_rows:  # the data arrays stored as their JSON text by SQLite
                    db.execute(_INSERT_JSON, (orjson.dumps(rows),))
                else:
                    db.executemany(
                        "INSERT OR IGNORE INTO entity_entries VALUES (?,?,?,?,?)",
                        [(k, i, t, s, orjson.dumps(v).decode()) for k, i, t, s, v in rows],
                    )
            if len(d):
                # After the inserts, in the same transaction: an entry both added and dropped
                # is gone.
                pairs = list(zip(d.keys, d.ids, strict=True))
                if self._json_rows:
                    db.execute(_DELETE_JSON, (orjson.dumps(pairs),))
                else:
                    db.executemany(
                        "DELETE FROM entity_entries WHERE entity = ? AND event_id = ?", pairs
                    )

    def first_day(self) -> int | None:
        with self._db.read("first day read") as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'first_day'").fetchone()
        return None if row is None else int(row[0])

    def record_first_day(self, day: int) -> None:
        with self._db.transaction("first day write") as db:
            db.execute(
                "INSERT INTO meta VALUES ('first_day', ?) ON CONFLICT(key) DO UPDATE "
                "SET value = min(value, excluded.value)",
                (day,),
            )

    def entries(self) -> int:
        """How many entity entries the file holds (benchmarks, tests)."""
        with self._db.read("count") as db:
            row = db.execute("SELECT count(*) FROM entity_entries").fetchone()
        return int(row[0])
