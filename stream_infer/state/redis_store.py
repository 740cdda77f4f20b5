"""Feature state in Redis: one hash per customer, one hash per terminal day-row set.

Keys (``prefix`` defaults to ``si``):
- ``{prefix}:c:{customer_id}``: hash ``transaction_id -> "epoch,seq,amount"``;
- ``{prefix}:t:{day}``: hash ``terminal_id -> "nb1,risk1,nb7,risk7,nb30,risk30"``;
- ``{prefix}:t:complete``: the last complete label day.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stream_infer.errors import RetryableError
from stream_infer.features.online import TerminalRow
from stream_infer.state.base import Entry

CUSTOMER_TTL_S = 31 * 86_400
ROW_TTL_S = 40 * 86_400  # a row for day D is read on day D only; keep a margin for replays


def connect(url: str) -> Any:
    """A redis client for ``url`` (redis://host:port/db)."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)


class RedisCustomerStore:
    """:class:`~stream_infer.state.base.CustomerStore` on Redis hashes."""

    def __init__(self, client: Any, prefix: str = "si") -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, customer_id: str) -> str:
        return f"{self.prefix}:c:{customer_id}"

    def load(self, customer_ids: Iterable[str]) -> dict[str, list[Entry]]:
        ids = list(customer_ids)
        try:
            pipe = self.client.pipeline(transaction=False)
            for cid in ids:
                pipe.hgetall(self._key(cid))
            replies = pipe.execute()
        except Exception as exc:  # redis.RedisError: connection, timeout
            raise RetryableError(f"redis load failed: {exc}") from exc
        return {
            cid: [Entry.unpack(tid.decode(), raw) for tid, raw in reply.items()]
            for cid, reply in zip(ids, replies, strict=True)
        }

    def save(self, entries: Mapping[str, Sequence[Entry]]) -> None:
        if not entries:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for cid, items in entries.items():
                key = self._key(cid)
                pipe.hset(key, mapping={e.transaction_id: e.pack() for e in items})
                # An idle customer's history expires once no window can reach it.
                pipe.expire(key, CUSTOMER_TTL_S)
            pipe.execute()
        except Exception as exc:
            raise RetryableError(f"redis save failed: {exc}") from exc

    def prune(self, customer_id: str, before_epoch_seconds: int) -> None:
        key = self._key(customer_id)
        stale = [
            tid
            for tid, raw in self.client.hgetall(key).items()
            if Entry.unpack(tid.decode(), raw).epoch_seconds < before_epoch_seconds
        ]
        if stale:
            self.client.hdel(key, *stale)

    def first_day(self) -> int | None:
        raw = self.client.get(f"{self.prefix}:first_day")
        return None if raw is None else int(raw)

    def record_first_day(self, day: int) -> None:
        # Compare-and-set: the earliest day any worker has seen.
        script = (
            "local cur = redis.call('GET', KEYS[1]); "
            "if (not cur) or tonumber(cur) > tonumber(ARGV[1]) then "
            "redis.call('SET', KEYS[1], ARGV[1]) end return 1"
        )
        self.client.eval(script, 1, f"{self.prefix}:first_day", day)


class RedisTerminalStore:
    """:class:`~stream_infer.state.base.TerminalStore` on Redis hashes."""

    def __init__(self, client: Any, prefix: str = "si") -> None:
        self.client = client
        self.prefix = prefix

    def rows(self, keys: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], TerminalRow]:
        wanted = list(keys)
        if not wanted:
            return {}
        try:
            pipe = self.client.pipeline(transaction=False)
            for terminal, day in wanted:
                pipe.hget(f"{self.prefix}:t:{day}", terminal)
            replies = pipe.execute()
        except Exception as exc:
            raise RetryableError(f"redis terminal read failed: {exc}") from exc
        out: dict[tuple[str, int], TerminalRow] = {}
        for key, raw in zip(wanted, replies, strict=True):
            if raw is not None:
                a, b, c, d, e, f = (float(x) for x in raw.decode().split(","))
                out[key] = (a, b, c, d, e, f)
        return out

    def publish(self, rows: Mapping[tuple[str, int], TerminalRow], complete_through: int) -> None:
        pipe = self.client.pipeline(transaction=True)
        by_day: dict[int, dict[str, str]] = {}
        for (terminal, day), row in rows.items():
            by_day.setdefault(day, {})[terminal] = ",".join(repr(v) for v in row)
        for day, mapping in by_day.items():
            pipe.hset(f"{self.prefix}:t:{day}", mapping=mapping)
            pipe.expire(f"{self.prefix}:t:{day}", ROW_TTL_S)
        pipe.execute()
        self._advance(complete_through)

    def _advance(self, day: int) -> None:
        key = f"{self.prefix}:t:complete"
        # Compare-and-set so two label processors never move the watermark backwards.
        script = (
            "local cur = redis.call('GET', KEYS[1]); "
            "if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then "
            "redis.call('SET', KEYS[1], ARGV[1]) end return 1"
        )
        self.client.eval(script, 1, key, day)

    def complete_through(self) -> int | None:
        raw = self.client.get(f"{self.prefix}:t:complete")
        return None if raw is None else int(raw)
