"""The Redis label-partial store keeps the SQLite store's contract (compare-and-set by offset,
partials set per partition and read back exactly)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import RedisClusterException

from stream_infer.errors import StoreUnavailableError
from stream_infer.labels.aggregator import PartitionUpdate
from stream_infer.labels.stores import RedisLabelPartials, SqliteLabelPartials
from stream_infer.state.redis_client import open_redis

from .redis_secure import RedisClusterServers, cluster_settings
from .redis_server import RedisServer

V = "terminal_counts"
ODD = "T:1,é|x y"  # a join key with the characters a field or a row might split on
P1 = (3.0, 1.0, 2 / 3, 0.0, 1.0)
P2 = (1.0, 0.0, 0.0, 0.0, 0.0)
P3 = (2.0, 2.0, 0.0, 1.0, 1.0)
P4 = (4.0, 2.0, 1.0, 0.0, 1.0)
P5 = (2.0, 0.1 + 0.2, 0.005000000000000001, 0.1, 0.2)


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        return SqliteLabelPartials(tmp_path / "labels.db")
    prefix = request.getfixturevalue("redis_prefix")
    if request.param == "redis-cluster":
        client = open_redis(cluster_settings(request.getfixturevalue("redis_cluster"), prefix))
        return RedisLabelPartials(client, prefix, cluster=True)
    url = request.getfixturevalue("redis_url")
    return RedisLabelPartials(redis.Redis.from_url(url), prefix)


def test_updates_apply_once_and_stale_ones_are_refused(store: Any) -> None:
    assert store.applied_offsets() == {} and store.partition_days() == {}
    a = PartitionUpdate(0, -1, 9, {(V, 20000, "T1"): P1, (V, 20001, ODD): P2}, 20001)
    b = PartitionUpdate(1, -1, 4, {(V, 20000, "T2"): P3, (V, 20000, "T1"): P5}, 20000)
    assert store.apply([a, b]) == set()
    assert store.apply([a]) == {0}  # the same batch again: its offset moved on
    late = PartitionUpdate(0, 9, 12, {(V, 20000, "T1"): P4}, 19999)  # an older label day
    stale = PartitionUpdate(1, 2, 6, {(V, 20000, "T2"): P1}, 20002)
    assert store.apply([late, stale]) == {1}
    assert store.applied_offsets() == {0: 12, 1: 4}
    assert store.partition_days() == {0: 20001, 1: 20000}  # a partition's day never goes back
    assert store.day_partials([20000, 20001, 20002]) == {
        20000: {(V, "T1"): {0: P4, 1: P5}, (V, "T2"): {1: P3}},
        20001: {(V, ODD): {0: P2}},
    }
    assert store.partials_of(0, [(V, 20000, "T1"), (V, 20001, ODD), (V, 20002, "T1")]) == {
        (V, 20000, "T1"): P4,
        (V, 20001, ODD): P2,
    }
    assert store.partials_of(1, [(V, 20000, "T1")]) == {(V, 20000, "T1"): P5}
    assert store.apply([]) == set()


def test_the_cluster_refuses_the_script_without_its_hash_tag(
    redis_cluster: RedisClusterServers, redis_prefix: str
) -> None:
    # What the {prefix} tag is for: one batch over two days touches keys in other slots.
    client = open_redis(cluster_settings(redis_cluster, redis_prefix))
    untagged = RedisLabelPartials(client, redis_prefix, cluster=False)
    update = PartitionUpdate(0, -1, 1, {(V, 20000, "T1"): P2, (V, 20001, "T1"): P3}, 20001)
    with pytest.raises(RedisClusterException, match="same key slot"):
        untagged.apply([update])
    tagged = RedisLabelPartials(client, redis_prefix, cluster=True)
    assert tagged.apply([update]) == set()
    assert tagged.day_partials([20000, 20001]) == {
        20000: {(V, "T1"): {0: P2}},
        20001: {(V, "T1"): {0: P3}},
    }


def test_a_paused_redis_raises_store_unavailable(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url, socket_timeout=0.3, socket_connect_timeout=0.3)
    store = RedisLabelPartials(client, "outage")
    update = PartitionUpdate(0, -1, 1, {(V, 20000, "T1"): P1}, 20000)
    with own_redis.outage():
        for call in (
            store.applied_offsets,
            store.partition_days,
            lambda: store.day_partials([20000]),
            lambda: store.partials_of(0, [(V, 20000, "T1")]),
            lambda: store.apply([update]),
        ):
            with pytest.raises(StoreUnavailableError) as info:
                call()
            assert isinstance(info.value.__cause__, redis.TimeoutError)
    # The update sent into the outage may have run once Redis resumed; a retry is still safe.
    assert store.apply([update]) in (set(), {0})
    assert store.applied_offsets() == {0: 1}
    assert store.day_partials([20000]) == {20000: {(V, "T1"): {0: P1}}}


def test_a_locked_sqlite_raises_store_unavailable(tmp_path: Path) -> None:
    store = SqliteLabelPartials(tmp_path / "labels.db", busy_timeout_s=0.05)
    other = sqlite3.connect(tmp_path / "labels.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holding the file's write lock
    update = PartitionUpdate(0, -1, 1, {(V, 20000, "T1"): P1}, 20000)
    with pytest.raises(StoreUnavailableError) as info:
        store.apply([update])
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    other.execute("ROLLBACK")
    other.close()
    assert store.apply([update]) == set()
    assert store.day_partials([20000]) == {20000: {(V, "T1"): {0: P1}}}
