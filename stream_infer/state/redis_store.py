"""Customer histories in Redis: one hash per customer (the daily rows:
:mod:`stream_infer.state.daily_redis`).

Keys (``prefix`` defaults to ``si``):
- ``{prefix}:c:{customer_id}``: hash ``transaction_id -> "epoch,seq,amount"``;
- ``{prefix}:first_day``: the earliest UTC day of the stream.

Every method raises :class:`~stream_infer.errors.StoreUnavailableError` for any Redis failure
(refused, timed out, loading, read-only, failing over, ...), and
:class:`~stream_infer.state.redis_client.RedisAccessError` (fatal) when Redis refuses our
credentials or a permission. The clients of :mod:`stream_infer.state.redis_client` bound each
call by their socket timeout and never retry: the caller decides what to do next.

Redis Cluster: every script touches one declared key, and every multi-key batch is a
non-transactional pipeline, which the cluster client splits by node; so no key needs a hash
tag and the key names are the same in every mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from stream_infer.config import RedisSettings
from stream_infer.state.base import Entry
from stream_infer.state.redis_client import build_client
from stream_infer.state.redis_client import store_errors as _unavailable

#: An idle customer's history expires once no window (30 days + the default margin) reaches it.
CUSTOMER_TTL_S = 31 * 86_400

_LOWER_FIRST_DAY = (
    "local cur = redis.call('GET', KEYS[1]); "
    "if (not cur) or tonumber(cur) > tonumber(ARGV[1]) then "
    "redis.call('SET', KEYS[1], ARGV[1]) end return 1"
)


def connect(url: str, *, socket_timeout_s: float = 1.0, connect_timeout_s: float = 1.0) -> Any:
    """A standalone redis client for ``url`` (redis://host:port/db) whose every call ends
    within about ``socket_timeout_s`` (connecting: ``connect_timeout_s``), retried by no one.

    A shorthand for tests and tools; the service builds its clients from the whole
    :class:`~stream_infer.config.RedisSettings` (``redis_client.open_redis``).
    """
    return build_client(
        RedisSettings(
            url=SecretStr(url),
            socket_timeout_s=socket_timeout_s,
            connect_timeout_s=connect_timeout_s,
        )
    )


class RedisCustomerStore:
    """:class:`~stream_infer.state.base.CustomerStore` on Redis hashes."""

    def __init__(self, client: Any, prefix: str = "si") -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, customer_id: str) -> str:
        return f"{self.prefix}:c:{customer_id}"

    def load(self, customer_ids: Iterable[str]) -> dict[str, list[Entry]]:
        ids = list(customer_ids)
        with _unavailable("customer load"):
            pipe = self.client.pipeline(transaction=False)
            for cid in ids:
                pipe.hgetall(self._key(cid))
            replies = pipe.execute()
        return {
            cid: [Entry.unpack(tid.decode(), raw) for tid, raw in reply.items()]
            for cid, reply in zip(ids, replies, strict=True)
        }

    def save(self, entries: Mapping[str, Sequence[Entry]]) -> None:
        if not entries:
            return
        pipe = self.client.pipeline(transaction=False)
        for cid, items in entries.items():
            key = self._key(cid)
            added = {e.transaction_id: e.pack() for e in items if not e.dropped}
            if added:
                pipe.hset(key, mapping=added)
                pipe.expire(key, CUSTOMER_TTL_S)
            dropped = [e.transaction_id for e in items if e.dropped]
            if dropped:  # after the HSET: an entry both added and dropped ends up gone
                pipe.hdel(key, *dropped)
        with _unavailable("customer save"):
            pipe.execute()

    def prune(self, customer_id: str, before_epoch_seconds: int) -> None:
        key = self._key(customer_id)
        with _unavailable("customer prune"):
            stale = [
                tid
                for tid, raw in self.client.hgetall(key).items()
                if Entry.unpack(tid.decode(), raw).epoch_seconds < before_epoch_seconds
            ]
            if stale:
                self.client.hdel(key, *stale)

    def first_day(self) -> int | None:
        with _unavailable("first day read"):
            raw = self.client.get(f"{self.prefix}:first_day")
        return None if raw is None else int(raw)

    def record_first_day(self, day: int) -> None:
        # Compare-and-set: the earliest day any worker has seen.
        with _unavailable("first day write"):
            self.client.eval(_LOWER_FIRST_DAY, 1, f"{self.prefix}:first_day", day)
