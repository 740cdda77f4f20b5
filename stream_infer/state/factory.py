"""Pick the state backend from the settings: Redis when configured, else a local SQLite file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream_infer.config import Settings
from stream_infer.state.daily_redis import RedisDailyRows
from stream_infer.state.daily_sqlite import SqliteDailyRows
from stream_infer.state.redis_client import Access, open_redis
from stream_infer.state.redis_entities import RedisEntityStore
from stream_infer.state.sqlite_entities import SqliteEntityStore


@dataclass(frozen=True)
class StateStores:
    """The entity-history store (stream views) and the terminal-row store of one deployment."""

    entities: Any
    terminals: Any
    backend: str


def open_state(settings: Settings, access: Access = "write") -> StateStores:
    """Redis (``redis.url`` or ``redis.mode=sentinel``: any topology, see
    :mod:`stream_infer.state.redis_client`) or ``<state_dir>/state.db`` (embedded default).

    A Redis client's calls each end within ``redis.socket_timeout_s``; at open, the ``access``
    the caller needs (``read``: the sidecar, ``write``: worker and label processor) is
    exercised once.

    Raises:
        RedisAccessError: Redis refused our credentials, a permission or the TLS handshake.
        StoreUnavailableError: the SQLite file cannot be opened, or no seed node of a Redis
            Cluster answered (a standalone or Sentinel Redis that does not answer yet is an
            outage the callers ride out).
    """
    if settings.redis.enabled:
        client = open_redis(settings.redis, access)
        prefix = settings.redis.key_prefix
        return StateStores(
            RedisEntityStore(client, prefix), RedisDailyRows(client, prefix), "redis"
        )
    path = settings.features.state_dir / "state.db"
    return StateStores(SqliteEntityStore(path), SqliteDailyRows(path), "sqlite")
