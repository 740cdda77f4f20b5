"""Label partials on Redis or SQLite, applied idempotently by partition offset.

A batch's updates carry, per partition, the applied offset they were computed against; a store
applies an update only if that is still the partition's applied offset (compare-and-set), all
of a batch's updates in one atomic step. So a re-delivered batch is never counted twice, and
neither is a batch that a processor which just lost its partition (a rebalance, a zombie)
finishes after the new owner has moved on: its update does not match and is refused.

What is stored per (daily view, UTC day, join key, partition) is that partition's partial
(:mod:`stream_infer.labels.partials`): an update *sets* it to the value the processor folded
from the stored one, so the store never does float arithmetic and applying an update twice
changes nothing.

Redis keys (``prefix`` = settings.redis.key_prefix; on a Redis Cluster ``{prefix}``, a hash
tag, so that every key of the store shares one slot and a batch stays one atomic script):
- ``{prefix}:lp:{day}``: hash ``"{view}\\x1f{partition}\\x1f{join key}" -> partial text``;
- ``{prefix}:lo``: hash ``partition -> last applied offset``;
- ``{prefix}:ld``: hash ``partition -> latest label day``.

One slot (one shard) holds all the partials: their volume (keys x views x 40 days) and rate (one
script per batch) are far below what one shard serves.

Both stores raise :class:`~stream_infer.errors.StoreUnavailableError`, and only that, when the
store cannot be reached, answers too late or is locked: the caller retries the same call. A
call that timed out may still have been applied (the reply was lost, not the request);
compare-and-set makes the retry safe, and the aggregator recognises its own applied update.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import orjson

from stream_infer.labels.aggregator import PartialKey, PartitionUpdate
from stream_infer.labels.partials import Partial, decode, encode
from stream_infer.labels.rows import StoredPartials
from stream_infer.state.redis_client import UNAVAILABLE, store_errors
from stream_infer.state.sqlite_db import sqlite_io

_SEP = "\x1f"  # between view, partition and join key in a Redis field (not in view names)

# KEYS: the offsets hash, the days hash, then one partials hash per day the batch touches (a
# partial names its day's key by index), all declared so a cluster can route the script.
_APPLY = """
local updates = cjson.decode(ARGV[1])
local refused = {}
for i = 1, #updates do
  local u = updates[i]
  local partition = tostring(u[1])
  local cur = redis.call('HGET', KEYS[1], partition)
  local applied = -1
  if cur then applied = tonumber(cur) end
  if applied ~= u[2] then
    refused[#refused + 1] = u[1]
  else
    local sets = u[5]
    for j = 1, #sets do
      local e = sets[j]
      redis.call('HSET', KEYS[e[1]], e[2], e[3])
    end
    redis.call('HSET', KEYS[1], partition, u[3])
    local day = redis.call('HGET', KEYS[2], partition)
    if (not day) or tonumber(day) < u[4] then
      redis.call('HSET', KEYS[2], partition, u[4])
    end
  end
end
return refused
"""


def _field(view: str, partition: int, key: str) -> str:
    return f"{view}{_SEP}{partition}{_SEP}{key}"


class RedisLabelPartials:
    """:class:`~stream_infer.labels.aggregator.PartialStore` on Redis (one Lua script per
    batch, so a batch is atomic and costs one round trip).

    ``cluster``: name the keys ``{prefix}:...`` (one hash slot, see the module docstring).
    Besides :class:`StoreUnavailableError`, every method raises
    :class:`~stream_infer.state.redis_client.RedisAccessError` (fatal) when Redis refuses
    our credentials or a permission; any other Redis error (a script bug) propagates as it is.
    """

    def __init__(self, client: Any, prefix: str = "si", *, cluster: bool = False) -> None:
        self.client = client
        self.prefix = prefix
        self._base = f"{{{prefix}}}" if cluster else prefix
        self._script = client.register_script(_APPLY)

    def applied_offsets(self) -> dict[int, int]:
        with store_errors("label offsets read", UNAVAILABLE):
            raw = self.client.hgetall(f"{self._base}:lo")
        return {int(k): int(v) for k, v in raw.items()}

    def applied_offset(self, partition: int) -> int:
        """The last offset of ``partition`` whose label is counted (-1: none)."""
        return self.applied_offsets().get(partition, -1)

    def apply(self, updates: Sequence[PartitionUpdate]) -> set[int]:
        if not updates:
            return set()
        keys = [f"{self._base}:lo", f"{self._base}:ld"]
        index: dict[int, int] = {}  # day -> its key's 1-based index in KEYS
        for u in updates:
            for _v, d, _k in u.partials:
                if d not in index:
                    keys.append(f"{self._base}:lp:{d}")
                    index[d] = len(keys)
        payload = orjson.dumps(
            [
                [
                    u.partition,
                    u.expected_offset,
                    u.last_offset,
                    u.latest_day,
                    [
                        [index[d], _field(v, u.partition, k), encode(p)]
                        for (v, d, k), p in u.partials.items()
                    ],
                ]
                for u in updates
            ]
        )
        with store_errors("label update", UNAVAILABLE):
            refused = self._script(keys=keys, args=[payload])
        return {int(p) for p in refused}

    def partition_days(self) -> dict[int, int]:
        with store_errors("label days read", UNAVAILABLE):
            raw = self.client.hgetall(f"{self._base}:ld")
        return {int(k): int(v) for k, v in raw.items()}

    def partials_of(self, partition: int, keys: Iterable[PartialKey]) -> dict[PartialKey, Partial]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for v, d, k in wanted:
            pipe.hget(f"{self._base}:lp:{d}", _field(v, partition, k))
        with store_errors("label partials read", UNAVAILABLE):
            replies = pipe.execute()
        return {key: decode(raw) for key, raw in zip(wanted, replies, strict=True) if raw}

    def day_partials(self, days: Iterable[int]) -> StoredPartials:
        wanted = list(days)
        pipe = self.client.pipeline(transaction=False)
        for d in wanted:
            pipe.hgetall(f"{self._base}:lp:{d}")
        with store_errors("label partials read", UNAVAILABLE):
            replies = pipe.execute()
        out: dict[int, dict[tuple[str, str], dict[int, Partial]]] = {}
        for d, reply in zip(wanted, replies, strict=True):
            if reply:
                per: dict[tuple[str, str], dict[int, Partial]] = {}
                for f, raw in reply.items():
                    view, partition, key = f.decode().split(_SEP, 2)
                    per.setdefault((view, key), {})[int(partition)] = decode(raw)
                out[d] = per
        return out


_SCHEMA = """
CREATE TABLE IF NOT EXISTS label_partials (
    day INTEGER NOT NULL, view TEXT NOT NULL, partition INTEGER NOT NULL,
    entity TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (day, view, partition, entity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS label_progress (
    partition INTEGER PRIMARY KEY, last_offset INTEGER NOT NULL, day INTEGER NOT NULL
);
"""
_CHUNK = 500  # join keys per statement, under SQLite's bound-variable limit


def _sqlite_io(what: str) -> AbstractContextManager[None]:
    return sqlite_io(f"label {what}")


class SqliteLabelPartials:
    """:class:`~stream_infer.labels.aggregator.PartialStore` on a local SQLite file.

    Several processes may share the file (WAL; a writer waits up to ``busy_timeout_s`` for
    another's transaction). Each batch is one transaction, so one fsync. A lock held longer
    than that, or a failing disk, raises :class:`~stream_infer.errors.StoreUnavailableError`.
    """

    def __init__(self, path: Path, busy_timeout_s: float = 30.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with _sqlite_io("open"):
            self._db = sqlite3.connect(
                path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def applied_offsets(self) -> dict[int, int]:
        with self._lock, _sqlite_io("offsets read"):
            rows = self._db.execute("SELECT partition, last_offset FROM label_progress").fetchall()
        return {int(p): int(o) for p, o in rows}

    def applied_offset(self, partition: int) -> int:
        """The last offset of ``partition`` whose label is counted (-1: none)."""
        return self.applied_offsets().get(partition, -1)

    def apply(self, updates: Sequence[PartitionUpdate]) -> set[int]:
        if not updates:
            return set()
        with self._lock, _sqlite_io("update"):
            db = self._db
            db.execute("BEGIN IMMEDIATE")  # waits busy_timeout_s for another process's batch
            try:
                refused = self._apply_locked(db, updates)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed I/O may already have rolled it back
                    db.execute("ROLLBACK")
                raise
        return refused

    @staticmethod
    def _apply_locked(db: sqlite3.Connection, updates: Sequence[PartitionUpdate]) -> set[int]:
        stored = dict(db.execute("SELECT partition, last_offset FROM label_progress").fetchall())
        refused = {u.partition for u in updates if stored.get(u.partition, -1) != u.expected_offset}
        accepted = [u for u in updates if u.partition not in refused]
        db.executemany(
            "INSERT OR REPLACE INTO label_partials VALUES (?, ?, ?, ?, ?)",
            [
                (d, v, u.partition, k, encode(p))
                for u in accepted
                for (v, d, k), p in u.partials.items()
            ],
        )
        db.executemany(
            "INSERT INTO label_progress VALUES (?, ?, ?) ON CONFLICT(partition) DO UPDATE "
            "SET last_offset = excluded.last_offset, day = max(day, excluded.day)",
            [(u.partition, u.last_offset, u.latest_day) for u in accepted],
        )
        return refused

    def partition_days(self) -> dict[int, int]:
        with self._lock, _sqlite_io("days read"):
            rows = self._db.execute("SELECT partition, day FROM label_progress").fetchall()
        return {int(p): int(d) for p, d in rows}

    def partials_of(self, partition: int, keys: Iterable[PartialKey]) -> dict[PartialKey, Partial]:
        # One primary-key range per (day, view): the index answers it without a scan.
        groups: dict[tuple[int, str], list[str]] = {}
        for v, d, k in keys:
            groups.setdefault((d, v), []).append(k)
        out: dict[PartialKey, Partial] = {}
        with self._lock, _sqlite_io("partials read"):
            for (d, v), entities in groups.items():
                for i in range(0, len(entities), _CHUNK):
                    chunk = entities[i : i + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for k, value in self._db.execute(
                        "SELECT entity, value FROM label_partials WHERE day = ? AND view = ? "
                        f"AND partition = ? AND entity IN ({marks})",
                        [d, v, partition, *chunk],
                    ):
                        out[(v, d, k)] = decode(value)
        return out

    def day_partials(self, days: Iterable[int]) -> StoredPartials:
        wanted = set(days)
        if not wanted:
            return {}
        out: dict[int, dict[tuple[str, str], dict[int, Partial]]] = {}
        with self._lock, _sqlite_io("partials read"):
            rows = self._db.execute(
                "SELECT day, view, partition, entity, value FROM label_partials "
                "WHERE day BETWEEN ? AND ?",
                (min(wanted), max(wanted)),
            ).fetchall()
        for day, view, partition, key, value in rows:
            if day in wanted:
                per = out.setdefault(int(day), {})
                per.setdefault((view, key), {})[int(partition)] = decode(value)
        return out
