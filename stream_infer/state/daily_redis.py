"""Published daily rows in Redis: one hash per day of rows, and the completeness watermark.

Keys (``prefix`` defaults to ``si``):
- ``{prefix}:t:{day}``: hash ``terminal_id -> "nb1,risk1,nb7,risk7,nb30,risk30"``;
- ``{prefix}:t:complete``: the last complete label day.

Every method raises :class:`~stream_infer.errors.StoreUnavailableError` for any Redis failure,
and :class:`~stream_infer.state.redis_client.RedisAccessError` (fatal) when Redis refuses our
credentials or a permission (see :mod:`stream_infer.state.redis_store`). Redis Cluster: the
watermark script touches one declared key, and a publish is a non-transactional pipeline the
cluster client splits by node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stream_infer.features.online import TerminalRow
from stream_infer.state.redis_client import store_errors as _unavailable

ROW_TTL_S = 40 * 86_400  # a row for day D is read on day D only; keep a margin for replays
# Compare-and-set so two label processors never move the watermark backwards.
_RAISE_WATERMARK = (
    "local cur = redis.call('GET', KEYS[1]); "
    "if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then "
    "redis.call('SET', KEYS[1], ARGV[1]) end return 1"
)


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
