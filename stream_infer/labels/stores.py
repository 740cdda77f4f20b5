"""Label counts on Redis or SQLite, applied idempotently by partition offset.

A batch's updates carry, per partition, the applied offset they were counted against; a store
applies an update only if that is still the partition's applied offset (compare-and-set), all
of a batch's updates in one atomic step. So a re-delivered batch is never counted twice, and
neither is a batch that a processor which just lost its partition (a rebalance, a zombie)
finishes after the new owner has moved on: its update does not match and is refused.

Redis keys (``prefix`` = settings.redis.key_prefix):
- ``{prefix}:lc:{day}``: hash ``terminal -> "transactions,frauds"``;
- ``{prefix}:lo``: hash ``partition -> last applied offset``;
- ``{prefix}:ld``: hash ``partition -> latest label day``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from stream_infer.errors import RetryableError
from stream_infer.labels.aggregator import PartitionUpdate

_APPLY = """
local prefix = ARGV[1]
local updates = cjson.decode(ARGV[2])
local refused = {}
for i = 1, #updates do
  local u = updates[i]
  local partition = tostring(u[1])
  local cur = redis.call('HGET', prefix .. ':lo', partition)
  local applied = -1
  if cur then applied = tonumber(cur) end
  if applied ~= u[2] then
    refused[#refused + 1] = u[1]
  else
    local incs = u[5]
    for j = 1, #incs do
      local e = incs[j]
      local key = prefix .. ':lc:' .. e[1]
      local old = redis.call('HGET', key, e[2])
      local n, f = 0, 0
      if old then
        local comma = string.find(old, ',')
        n = tonumber(string.sub(old, 1, comma - 1))
        f = tonumber(string.sub(old, comma + 1))
      end
      redis.call('HSET', key, e[2], (n + e[3]) .. ',' .. (f + e[4]))
    end
    redis.call('HSET', prefix .. ':lo', partition, u[3])
    local day = redis.call('HGET', prefix .. ':ld', partition)
    if (not day) or tonumber(day) < u[4] then
      redis.call('HSET', prefix .. ':ld', partition, u[4])
    end
  end
end
return refused
"""


class RedisLabelCounts:
    """:class:`~stream_infer.labels.aggregator.LabelCountStore` on Redis (one Lua script per
    batch, so a batch is atomic and costs one round trip)."""

    def __init__(self, client: Any, prefix: str = "si") -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_APPLY)

    def applied_offsets(self) -> dict[int, int]:
        raw = self.client.hgetall(f"{self.prefix}:lo")
        return {int(k): int(v) for k, v in raw.items()}

    def applied_offset(self, partition: int) -> int:
        """The last offset of ``partition`` whose label is counted (-1: none)."""
        return self.applied_offsets().get(partition, -1)

    def apply(self, updates: Sequence[PartitionUpdate]) -> set[int]:
        if not updates:
            return set()
        payload = orjson.dumps(
            [
                [
                    u.partition,
                    u.expected_offset,
                    u.last_offset,
                    u.latest_day,
                    [[d, t, n, f] for (d, t), (n, f) in u.increments.items()],
                ]
                for u in updates
            ]
        )
        try:
            refused = self._script(args=[self.prefix, payload])
        except Exception as exc:  # redis.RedisError
            raise RetryableError(f"redis label update failed: {exc}") from exc
        return {int(p) for p in refused}

    def partition_days(self) -> dict[int, int]:
        raw = self.client.hgetall(f"{self.prefix}:ld")
        return {int(k): int(v) for k, v in raw.items()}

    def counts(self, days: Iterable[int]) -> dict[int, dict[str, tuple[int, int]]]:
        wanted = list(days)
        pipe = self.client.pipeline(transaction=False)
        for d in wanted:
            pipe.hgetall(f"{self.prefix}:lc:{d}")
        out: dict[int, dict[str, tuple[int, int]]] = {}
        for d, reply in zip(wanted, pipe.execute(), strict=True):
            if reply:
                per: dict[str, tuple[int, int]] = {}
                for t, v in reply.items():
                    n, f = v.split(b",")
                    per[t.decode()] = (int(n), int(f))
                out[d] = per
        return out


_SCHEMA = """
CREATE TABLE IF NOT EXISTS label_counts (
    day INTEGER NOT NULL, terminal_id TEXT NOT NULL, nb INTEGER NOT NULL, fraud INTEGER NOT NULL,
    PRIMARY KEY (day, terminal_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS label_progress (
    partition INTEGER PRIMARY KEY, last_offset INTEGER NOT NULL, day INTEGER NOT NULL
);
"""


class SqliteLabelCounts:
    """:class:`~stream_infer.labels.aggregator.LabelCountStore` on a local SQLite file.

    Several processes may share the file (WAL; a writer waits up to ``busy_timeout_s`` for
    another's transaction). Each batch is one transaction, so one fsync.
    """

    def __init__(self, path: Path, busy_timeout_s: float = 30.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def applied_offsets(self) -> dict[int, int]:
        with self._lock:
            rows = self._db.execute("SELECT partition, last_offset FROM label_progress").fetchall()
        return {int(p): int(o) for p, o in rows}

    def applied_offset(self, partition: int) -> int:
        """The last offset of ``partition`` whose label is counted (-1: none)."""
        return self.applied_offsets().get(partition, -1)

    def apply(self, updates: Sequence[PartitionUpdate]) -> set[int]:
        if not updates:
            return set()
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # another process held the lock too long
                raise RetryableError(f"label counts are locked: {exc}") from exc
            try:
                refused = self._apply_locked(db, updates)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return refused

    @staticmethod
    def _apply_locked(db: sqlite3.Connection, updates: Sequence[PartitionUpdate]) -> set[int]:
        stored = dict(db.execute("SELECT partition, last_offset FROM label_progress").fetchall())
        refused = {u.partition for u in updates if stored.get(u.partition, -1) != u.expected_offset}
        accepted = [u for u in updates if u.partition not in refused]
        merged: dict[tuple[int, str], list[int]] = {}
        for u in accepted:
            for key, (n, f) in u.increments.items():
                acc = merged.setdefault(key, [0, 0])
                acc[0] += n
                acc[1] += f
        db.executemany(
            "INSERT INTO label_counts VALUES (?, ?, ?, ?) ON CONFLICT(day, terminal_id) "
            "DO UPDATE SET nb = nb + excluded.nb, fraud = fraud + excluded.fraud",
            [(d, t, n, f) for (d, t), (n, f) in merged.items()],
        )
        db.executemany(
            "INSERT INTO label_progress VALUES (?, ?, ?) ON CONFLICT(partition) DO UPDATE "
            "SET last_offset = excluded.last_offset, day = max(day, excluded.day)",
            [(u.partition, u.last_offset, u.latest_day) for u in accepted],
        )
        return refused

    def partition_days(self) -> dict[int, int]:
        with self._lock:
            rows = self._db.execute("SELECT partition, day FROM label_progress").fetchall()
        return {int(p): int(d) for p, d in rows}

    def counts(self, days: Iterable[int]) -> dict[int, dict[str, tuple[int, int]]]:
        wanted = set(days)
        if not wanted:
            return {}
        out: dict[int, dict[str, tuple[int, int]]] = {}
        with self._lock:
            rows = self._db.execute(
                "SELECT day, terminal_id, nb, fraud FROM label_counts WHERE day BETWEEN ? AND ?",
                (min(wanted), max(wanted)),
            ).fetchall()
        for day, terminal, nb, fraud in rows:
            if day in wanted:
                out.setdefault(int(day), {})[terminal] = (int(nb), int(fraud))
        return out
