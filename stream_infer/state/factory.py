"""Pick the state backend from the settings: Redis when configured, else a local SQLite file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream_infer.config import Settings
from stream_infer.state.redis_store import RedisCustomerStore, RedisTerminalStore, connect
from stream_infer.state.sqlite_store import SqliteState


@dataclass(frozen=True)
class StateStores:
    """The customer-history store and the terminal-row store of one deployment."""

    customers: Any
    terminals: Any
    backend: str


def open_state(settings: Settings) -> StateStores:
    """Redis (``STREAM_INFER_REDIS__URL``) or ``<state_dir>/state.db`` (embedded default).

    A Redis client's calls each end within ``redis.socket_timeout_s``.

    Raises:
        StoreUnavailableError: the SQLite file cannot be opened (Redis connects lazily).
    """
    url = settings.redis.url
    if url is not None:
        client = connect(
            url.get_secret_value(),
            socket_timeout_s=settings.redis.socket_timeout_s,
            connect_timeout_s=settings.redis.connect_timeout_s,
        )
        prefix = settings.redis.key_prefix
        return StateStores(
            RedisCustomerStore(client, prefix), RedisTerminalStore(client, prefix), "redis"
        )
    db = SqliteState(settings.features.state_dir / "state.db")
    return StateStores(db, db, "sqlite")
