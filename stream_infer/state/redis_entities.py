"""Entity histories in Redis: one hash per entity.

Keys (``prefix`` defaults to ``si``):
- ``{prefix}:e:{entity}``: hash ``event_id -> JSON [event_id, epoch, seq, data]``;
- ``{prefix}:first_day``: the earliest UTC day of the stream.

Every method raises :class:`~stream_infer.errors.StoreUnavailableError` for any Redis failure,
and :class:`~stream_infer.state.redis_client.RedisAccessError` (fatal) when Redis refuses our
credentials or a permission. Redis Cluster: every script touches one declared key, and every
multi-key batch is a non-transactional pipeline, which the cluster client splits by node; so no
key needs a hash tag and the key names are the same in every mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from stream_infer.state.entity_rows import EntityWriteSet, StoredEntry
from stream_infer.state.redis_client import store_errors as _unavailable

#: An idle entity's history expires once no window (30 days + the default margin) reaches it.
DEFAULT_TTL_S = 31 * 86_400

_LOWER_FIRST_DAY = (
    "local cur = redis.call('GET', KEYS[1]); "
    "if (not cur) or tonumber(cur) > tonumber(ARGV[1]) then "
    "redis.call('SET', KEYS[1], ARGV[1]) end return 1"
)


def _entry(raw: bytes) -> StoredEntry:
    event_id, epoch, seq, data = orjson.loads(raw)
    # NaN travels as JSON null (orjson); back to NaN here.
    return StoredEntry(event_id, epoch, seq, [float("nan") if v is None else v for v in data])


class RedisEntityStore:
    """:class:`~stream_infer.state.entity_rows.EntityStore` on Redis hashes. ``ttl_s``: an
    entity nobody writes for this long expires (the longest window plus the margin)."""

    def __init__(self, client: Any, prefix: str = "si", ttl_s: int = DEFAULT_TTL_S) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def _key(self, key: str) -> str:
        return f"{self.prefix}:e:{key}"

    def load(self, keys: Iterable[str]) -> dict[str, list[StoredEntry]]:
        ids = list(keys)
        with _unavailable("entity load"):
            pipe = self.client.pipeline(transaction=False)
            for key in ids:
                pipe.hgetall(self._key(key))
            replies = pipe.execute()
        return {
            key: [_entry(raw) for raw in reply.values()]
            for key, reply in zip(ids, replies, strict=True)
        }

    def save(self, writes: EntityWriteSet) -> None:
        if not writes:
            return
        added: dict[str, dict[str, bytes]] = {}
        for key, event_id, t, s, data in writes.added.json_rows():
            added.setdefault(key, {})[str(event_id)] = orjson.dumps([event_id, t, s, data])
        dropped: dict[str, list[str]] = {}
        for key, event_id in zip(writes.dropped.keys, writes.dropped.ids, strict=True):
            dropped.setdefault(key, []).append(str(event_id))
        pipe = self.client.pipeline(transaction=False)
        for key, mapping in added.items():
            pipe.hset(self._key(key), mapping=mapping)
            pipe.expire(self._key(key), self.ttl_s)
        for key, fields in dropped.items():  # after the HSETs: added and dropped ends up gone
            pipe.hdel(self._key(key), *fields)
        with _unavailable("entity save"):
            pipe.execute()

    def first_day(self) -> int | None:
        with _unavailable("first day read"):
            raw = self.client.get(f"{self.prefix}:first_day")
        return None if raw is None else int(raw)

    def record_first_day(self, day: int) -> None:
        # Compare-and-set: the earliest day any worker has seen.
        with _unavailable("first day write"):
            self.client.eval(_LOWER_FIRST_DAY, 1, f"{self.prefix}:first_day", day)
