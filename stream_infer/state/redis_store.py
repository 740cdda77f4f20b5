"""Feature state in Redis: one hash per customer, one hash per terminal day-row set.

Keys (``prefix`` defaults to ``si``):
- ``{prefix}:c:{customer_id}``: hash ``transaction_id -> "epoch,seq,amount"``;
- ``{prefix}:t:{day}``: hash ``terminal_id -> "nb1,risk1,nb7,risk7,nb30,risk30"``;
- ``{prefix}:t:complete``: the last complete label day;
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
from stream_infer.features.online import TerminalRow
from stream_infer.state.base import Entry
from stream_infer.state.redis_client import build_client
from stream_infer.state.redis_client import store_errors as _unavailable

#: An idle customer's history expires once no window (30 days + the default margin) reaches it.
CUSTOMER_TTL_S = 31 * 86_400
ROW_TTL_S = 40 * 86_400  # a row for day D is read on day D only; keep a margin for replays

_LOWER_FIRST_DAY = (
    "local cur = redis.call('GET', KEYS[1]); "
    "if (not cur) or tonumber(cur) > tonumber(ARGV[1]) then "
    "redis.call('SET', KEYS[1], ARGV[1]) end return 1"
)
# Compare-and-set so two label processors never move the watermark backwards.
_RAISE_WATERMARK = (
    "local cur = redis.call('GET', KEYS[1]); "
    "if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then "
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


class RedisTerminalStore:
    """:class:`~stream_infer.state.base.TerminalStore` on Redis hashes."""

    def __init__(self, client: Any, prefix: str = "si") -> None:
        self.client = client
        self.prefix = prefix

    def rows(self, keys: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], TerminalRow]:
        wanted = list(keys)
        if not wanted:
            return {}
        with _unavailable("terminal read"):
            pipe = self.client.pipeline(transaction=False)
            for terminal, day in wanted:
                pipe.hget(f"{self.prefix}:t:{day}", terminal)
            replies = pipe.execute()
        out: dict[tuple[str, int], TerminalRow] = {}
        for key, raw in zip(wanted, replies, strict=True):
            if raw is not None:
                a, b, c, d, e, f = (float(x) for x in raw.decode().split(","))
                out[key] = (a, b, c, d, e, f)
        return out

    def publish(self, rows: Mapping[tuple[str, int], TerminalRow], complete_through: int) -> None:
        by_day: dict[int, dict[str, str]] = {}
        for (terminal, day), row in rows.items():
            by_day.setdefault(day, {})[terminal] = ",".join(repr(v) for v in row)
        with _unavailable("terminal publish"):
            # Not a transaction: the days' hashes lie in different cluster slots. A reader
            # trusts a missing row only once the watermark covers it, and that moves after.
            pipe = self.client.pipeline(transaction=False)
            for day, mapping in by_day.items():
                pipe.hset(f"{self.prefix}:t:{day}", mapping=mapping)
                pipe.expire(f"{self.prefix}:t:{day}", ROW_TTL_S)
            pipe.execute()
            # After the rows: a reader that sees the watermark finds every row it covers.
            self.client.eval(_RAISE_WATERMARK, 1, f"{self.prefix}:t:complete", complete_through)

    def complete_through(self) -> int | None:
        with _unavailable("watermark read"):
            raw = self.client.get(f"{self.prefix}:t:complete")
        return None if raw is None else int(raw)
