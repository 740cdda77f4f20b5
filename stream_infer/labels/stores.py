"""Label counts on Redis or SQLite, applied idempotently by partition offset.

A batch's updates carry, per partition, the applied offset they were counted against; a store
applies an update only if that is still the partition's applied offset (compare-and-set), all
of a batch's updates in one atomic step. So a re-delivered batch is never counted twice, and
neither is a batch that a processor which just lost its partition (a rebalance, a zombie)
finishes after the new owner has moved on: its update does not match and is refused.

Redis keys (``prefix`` = settings.redis.key_prefix; on a Redis Cluster ``{prefix}``, a hash
tag, so that every key of the store shares one slot and a batch stays one atomic script):
- ``{prefix}:lc:{day}``: hash ``terminal -> "transactions,frauds"``;
- ``{prefix}:lo``: hash ``partition -> last applied offset``;
- ``{prefix}:ld``: hash ``partition -> latest label day``.

One slot (one shard) holds all the counts: a (terminal, day) count is shared by every
partition's updates, and its volume (terminals x 40 days) and rate (one script per batch) are
far below what one shard serves.

Both stores raise :class:`~stream_infer.errors.StoreUnavailableError`, and only that, when the
store cannot be reached, answers too late or is locked: the caller retries the same call. A
call that timed out may still have been applied (the reply was lost, not the request);
compare-and-set makes the retry safe, and the aggregator recognises its own applied update.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from stream_infer.errors import StoreUnavailableError
from stream_infer.labels.aggregator import PartitionUpdate
from stream_infer.state.redis_client import UNAVAILABLE, store_errors

# KEYS: the offsets hash, the days hash, then one count hash per day the batch touches (an
# increment names its day's key by index), all declared so a cluster can route the script.
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
    local incs = u[5]
    for j = 1, #incs do
      local e = incs[j]
      local key = KEYS[e[1]]
      local old = redis.call('HGET', key, e[2])
      local n, f = 0, 0
      if old then
        local comma = string.find(old, ',')
        n = tonumber(string.sub(old, 1, comma - 1))
        f = tonumber(string.sub(old, comma + 1))
      end
      redis.call('HSET', key, e[2], (n + e[3]) .. ',' .. (f + e[4]))
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


class RedisLabelCounts:
    """:class:`~stream_infer.labels.aggregator.LabelCountStore` on Redis (one Lua script per
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
            for d, _ in u.increments:
                if d not in index:
                    keys.append(f"{self._base}:lc:{d}")
                    index[d] = len(keys)
        payload = orjson.dumps(
            [
                [
                    u.partition,
                    u.expected_offset,
                    u.last_offset,
                    u.latest_day,
                    [[index[d], t, n, f] for (d, t), (n, f) in u.increments.items()],
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

    def counts(self, days: Iterable[int]) -> dict[int, dict[str, tuple[int, int]]]:
        wanted = list(days)
        pipe = self.client.pipeline(transaction=False)
        for d in wanted:
            pipe.hgetall(f"{self._base}:lc:{d}")
        with store_errors("label counts read", UNAVAILABLE):
            replies = pipe.execute()
        out: dict[int, dict[str, tuple[int, int]]] = {}
        for d, reply in zip(wanted, replies, strict=True):
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


@contextmanager
def _sqlite_io(what: str) -> Iterator[None]:
    # OperationalError is SQLite's I/O family: locked, busy, disk I/O, cannot open.
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailableError(f"sqlite label {what} failed: {exc}") from exc


class SqliteLabelCounts:
    """:class:`~stream_infer.labels.aggregator.LabelCountStore` on a local SQLite file.

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
        with self._lock, _sqlite_io("days read"):
            rows = self._db.execute("SELECT partition, day FROM label_progress").fetchall()
        return {int(p): int(d) for p, d in rows}

    def counts(self, days: Iterable[int]) -> dict[int, dict[str, tuple[int, int]]]:
        wanted = set(days)
        if not wanted:
            return {}
        out: dict[int, dict[str, tuple[int, int]]] = {}
        with self._lock, _sqlite_io("counts read"):
            rows = self._db.execute(
                "SELECT day, terminal_id, nb, fraud FROM label_counts WHERE day BETWEEN ? AND ?",
                (min(wanted), max(wanted)),
            ).fetchall()
        for day, terminal, nb, fraud in rows:
            if day in wanted:
                out.setdefault(int(day), {})[terminal] = (int(nb), int(fraud))
        return out
