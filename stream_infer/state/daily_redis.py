"""Published daily rows in Redis: one hash per (view, day) of rows, and the watermark.

Keys (``prefix`` defaults to ``si``):
- ``{prefix}:d:{view}:{day}``: hash ``join key -> "v1,v2,..."`` (the row's floats, ``repr``
  each: exact, NaN included; as many as the view has aggregations);
- ``{prefix}:d:complete``: the last complete label day.

Every method raises :class:`~stream_infer.errors.StoreUnavailableError` for any Redis failure,
and :class:`~stream_infer.state.redis_client.RedisAccessError` (fatal) when Redis refuses our
credentials or a permission (see :mod:`stream_infer.state.redis_client`). Redis Cluster: the
watermark script touches one declared key, and a publish is a non-transactional pipeline the
cluster client splits by node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stream_infer.state.base import decode_row, encode_row
from stream_infer.state.redis_client import store_errors as _unavailable
from stream_infer.streamdef.daily_source import DailyRow

ROW_TTL_S = 40 * 86_400  # a row for day D is read on day D only; keep a margin for replays
# Compare-and-set so two label processors never move the watermark backwards.
_RAISE_WATERMARK = (
    "local cur = redis.call('GET', KEYS[1]); "
    "if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then "
    "redis.call('SET', KEYS[1], ARGV[1]) end return 1"
)


class RedisDailyRows:
    """:class:`~stream_infer.state.base.DailyRowStore` on Redis hashes."""

    def __init__(self, client: Any, prefix: str = "si") -> None:
        self.client = client
        self.prefix = prefix

    def _day_key(self, view: str, day: int) -> str:
        return f"{self.prefix}:d:{view}:{day}"

    def rows(
        self, view: str, keys: Iterable[tuple[str, int]]
    ) -> Mapping[tuple[str, int], DailyRow]:
        wanted = list(keys)
        if not wanted:
            return {}
        with _unavailable("daily rows read"):
            pipe = self.client.pipeline(transaction=False)
            for key, day in wanted:
                pipe.hget(self._day_key(view, day), key)
            replies = pipe.execute()
        return {
            key: decode_row(raw)
            for key, raw in zip(wanted, replies, strict=True)
            if raw is not None
        }

    def publish(
        self, rows: Mapping[str, Mapping[tuple[str, int], DailyRow]], complete_through: int
    ) -> None:
        by_day: dict[str, dict[str, str]] = {}
        for view, per in rows.items():
            for (key, day), row in per.items():
                by_day.setdefault(self._day_key(view, day), {})[key] = encode_row(row)
        with _unavailable("daily rows publish"):
            # Not a transaction: the days' hashes lie in different cluster slots. A reader
            # trusts a missing row only once the watermark covers it, and that moves after.
            pipe = self.client.pipeline(transaction=False)
            for name, mapping in by_day.items():
                pipe.hset(name, mapping=mapping)
                pipe.expire(name, ROW_TTL_S)
            pipe.execute()
            # After the rows: a reader that sees the watermark finds every row it covers.
            self.client.eval(_RAISE_WATERMARK, 1, f"{self.prefix}:d:complete", complete_through)

    def complete_through(self) -> int | None:
        with _unavailable("watermark read"):
            raw = self.client.get(f"{self.prefix}:d:complete")
        return None if raw is None else int(raw)
