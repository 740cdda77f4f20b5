"""Label counts on Redis or SQLite, applied idempotently by partition offset.

Redis keys (``prefix`` = settings.redis.key_prefix):
- ``{prefix}:lc:{day}``: hash ``terminal -> "transactions,frauds"`` (updated by a Lua script);
- ``{prefix}:lo``: hash ``partition -> last applied offset``;
- ``{prefix}:ld``: hash ``partition -> latest label day``.
The script checks the stored offset and applies the batch in one atomic step, so a zombie
processor that lost its partition cannot double-count.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from stream_infer.errors import RetryableError

_APPLY = """
local prefix = ARGV[1]
local partition = ARGV[2]
local last_offset = tonumber(ARGV[3])
local pday = ARGV[4]
local cur = redis.call('HGET', prefix .. ':lo', partition)
if cur and tonumber(cur) >= last_offset then return 0 end
local incs = cjson.decode(ARGV[5])
for i = 1, #incs do
  local e = incs[i]
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
redis.call('HSET', prefix .. ':lo', partition, last_offset)
redis.call('HSET', prefix .. ':ld', partition, pday)
return 1
"""


class RedisLabelCounts:
    """:class:`~stream_infer.labels.aggregator.LabelCountStore` on Redis."""

    def __init__(self, client: Any, prefix: str = "si") -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_APPLY)

    def applied_offset(self, partition: int) -> int:
        raw = self.client.hget(f"{self.prefix}:lo", str(partition))
        return -1 if raw is None else int(raw)

    def apply(
        self,
        partition: int,
        last_offset: int,
        increments: Mapping[tuple[int, str], tuple[int, int]],
        partition_day: int,
    ) -> None:
        payload = orjson.dumps([[d, t, n, f] for (d, t), (n, f) in increments.items()])
        try:
            self._script(args=[self.prefix, str(partition), last_offset, partition_day, payload])
        except Exception as exc:  # redis.RedisError
            raise RetryableError(f"redis label update failed: {exc}") from exc

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
                out[d] = {
                    t.decode(): (int(v.split(b",")[0]), int(v.split(b",")[1]))
                    for t, v in reply.items()
                }
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
    """:class:`~stream_infer.labels.aggregator.LabelCountStore` on a local SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def applied_offset(self, partition: int) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT last_offset FROM label_progress WHERE partition = ?", (partition,)
            ).fetchone()
        return -1 if row is None else int(row[0])

    def apply(
        self,
        partition: int,
        last_offset: int,
        increments: Mapping[tuple[int, str], tuple[int, int]],
        partition_day: int,
    ) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT last_offset FROM label_progress WHERE partition = ?", (partition,)
                ).fetchone()
                if row is not None and row[0] >= last_offset:
                    db.execute("ROLLBACK")
                    return
                db.executemany(
                    "INSERT INTO label_counts VALUES (?, ?, ?, ?) ON CONFLICT(day, terminal_id) "
                    "DO UPDATE SET nb = nb + excluded.nb, fraud = fraud + excluded.fraud",
                    [(d, t, n, f) for (d, t), (n, f) in increments.items()],
                )
                db.execute(
                    "INSERT OR REPLACE INTO label_progress VALUES (?, ?, ?)",
                    (partition, last_offset, partition_day),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def partition_days(self) -> dict[int, int]:
        with self._lock:
            rows = self._db.execute("SELECT partition, day FROM label_progress").fetchall()
        return {int(p): int(d) for p, d in rows}

    def counts(self, days: Iterable[int]) -> dict[int, dict[str, tuple[int, int]]]:
        wanted = list(days)
        if not wanted:
            return {}
        out: dict[int, dict[str, tuple[int, int]]] = {}
        with self._lock:
            rows = self._db.execute(
                "SELECT day, terminal_id, nb, fraud FROM label_counts WHERE day BETWEEN ? AND ?",
                (min(wanted), max(wanted)),
            ).fetchall()
        for day, terminal, nb, fraud in rows:
            out.setdefault(int(day), {})[terminal] = (int(nb), int(fraud))
        return out
