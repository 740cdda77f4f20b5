"""Redis feature state fails cleanly: refused or unanswered, every call raises
StoreUnavailableError (never a raw redis error, never a hang), and the same clients work again
once Redis answers. The paused Redis is this test's own, never the shared one on 6379."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis

from stream_infer.errors import StoreUnavailableError
from stream_infer.features.compiled import FeatureComputer
from stream_infer.state.daily_redis import RedisDailyRows
from stream_infer.state.entity_rows import StoredEntry
from stream_infer.state.redis_client import connect
from stream_infer.state.redis_entities import RedisEntityStore

from .fraud_events import columns, fraud_defs, reference, stream_columns, write_set
from .redis_server import RedisServer

TIMEOUT_S = 0.5
#: Generous on purpose: proves a call ends by itself (a hung one would never return) and that
#: the client does not multiply its timeout with hidden retries, on a slow host too.
BOUND_S = 20 * TIMEOUT_S
A = ("c1", "t1", 1_700_000_000, 1, [12.5])
B = ("c1", "t2", 1_700_000_100, 2, [3.0])
ROW = (1.0, 0.0, 2.0, 0.5, 3.0, 0.25)


def calls(customers: RedisEntityStore, terminals: RedisDailyRows) -> dict[str, Callable[[], Any]]:
    """Every method of both stores, with arguments."""
    return {
        "load": lambda: customers.load(["c1"]),
        "save": lambda: customers.save(_add_b_drop_a()),
        "first_day": customers.first_day,
        "record_first_day": lambda: customers.record_first_day(19_000),
        "rows": lambda: terminals.rows("v", [("T", 100)]),
        "publish": lambda: terminals.publish({"v": {("T", 100): ROW}}, 92),
        "complete_through": terminals.complete_through,
    }


def _add_b_drop_a() -> Any:
    ws = write_set([B])
    ws.dropped = write_set([A], dropped=True).dropped
    return ws


def stores(url: str) -> tuple[Any, RedisEntityStore, RedisDailyRows]:
    client = connect(url, socket_timeout_s=TIMEOUT_S, connect_timeout_s=TIMEOUT_S)
    return client, RedisEntityStore(client, "si"), RedisDailyRows(client, "si")


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed when the socket is: nothing listens there


def test_every_call_to_a_refused_redis_raises_store_unavailable() -> None:
    client, customers, terminals = stores(f"redis://127.0.0.1:{closed_port()}/0")
    for name, call in calls(customers, terminals).items():
        with pytest.raises(StoreUnavailableError) as info:
            call()
        assert isinstance(info.value.__cause__, redis.ConnectionError), name
    client.close()


def test_a_paused_redis_fails_each_call_within_a_bound_then_recovers(
    own_redis: RedisServer,
) -> None:
    client, customers, terminals = stores(own_redis.url)
    customers.save(write_set([A]))
    customers.record_first_day(19_100)
    terminals.publish({"v": {("T", 99): ROW}}, 90)
    table = calls(customers, terminals)
    with own_redis.outage():
        for name, call in table.items():
            start = time.monotonic()
            with pytest.raises(StoreUnavailableError) as info:
                call()
            took = time.monotonic() - start
            assert isinstance(info.value.__cause__, redis.TimeoutError), name
            assert took < BOUND_S, f"{name} took {took:.1f} s with a {TIMEOUT_S} s timeout"
    for call in table.values():  # the same clients, no reconnect by hand
        call()
    assert customers.load(["c1"]) == {"c1": [StoredEntry("t2", 1_700_000_100, 2, [3.0])]}
    assert customers.first_day() == 19_000
    assert terminals.rows("v", [("T", 99), ("T", 100)]) == {("T", 99): ROW, ("T", 100): ROW}
    assert terminals.complete_through() == 92
    client.close()


def test_features_retried_after_an_outage_are_exact(own_redis: RedisServer) -> None:
    client, customers, _ = stores(own_redis.url)
    txs = [(f"x{i}", f"c{i % 4}", 1_700_000_000 + 600 * i, 1.0 + i, i) for i in range(40)]
    fc = FeatureComputer(fraud_defs(), store=customers, write_behind=True, entity_cache_size=2)
    fc.compute(columns(txs[:20]))
    writes = fc.state.take_pending()
    with own_redis.outage():
        with pytest.raises(StoreUnavailableError):
            fc.state.save(writes)  # the worker's write-behind save
        with pytest.raises(StoreUnavailableError):
            fc.compute(columns(txs[20:]))  # evicted customers need the store
    fc.state.save(writes)  # the worker's retry of the same calls
    matrix, _ = fc.compute(columns(txs[20:]))
    fc.state.save(fc.state.take_pending())
    np.testing.assert_array_equal(stream_columns(matrix), reference(txs)[20:])
    assert sum(len(v) for v in customers.load([f"c{i}" for i in range(4)]).values()) == 40
    client.close()
