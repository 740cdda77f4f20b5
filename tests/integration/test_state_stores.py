"""State stores against real Redis and real SQLite: same promises on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from stream_infer.config import RedisSettings
from stream_infer.features.compiled import FeatureComputer
from stream_infer.labels.stores import RedisLabelPartials, SqliteLabelPartials
from stream_infer.state.daily_redis import RedisDailyRows
from stream_infer.state.daily_sqlite import SqliteDailyRows
from stream_infer.state.entity_rows import StoredEntry
from stream_infer.state.redis_client import open_redis
from stream_infer.state.redis_entities import DEFAULT_TTL_S, RedisEntityStore
from stream_infer.state.sqlite_entities import SqliteEntityStore
from stream_infer.streamdef.kernel import PRUNE_AT
from stream_infer.streamdef.spec import SECONDS_PER_DAY

from .fraud_events import columns, fraud_defs, reference, stream_columns, write_set
from .redis_secure import cluster_settings, secure_settings


@pytest.fixture(params=["redis", "sqlite", "redis-cluster", "redis-tls-acl"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, redis_prefix: str
) -> Iterator[tuple[Any, Any, Any]]:
    if request.param.startswith("redis"):
        if request.param == "redis-cluster":
            settings = cluster_settings(request.getfixturevalue("redis_cluster"), redis_prefix)
        elif request.param == "redis-tls-acl":
            server, pki = (request.getfixturevalue(f) for f in ("secure_redis", "redis_pki"))
            settings = secure_settings(server, pki, redis_prefix)
        else:
            settings = RedisSettings(url=SecretStr(redis_url), key_prefix=redis_prefix)
        client = open_redis(settings)
        cluster = settings.mode == "cluster"
        yield (
            RedisEntityStore(client, redis_prefix),
            RedisDailyRows(client, redis_prefix),
            RedisLabelPartials(client, redis_prefix, cluster=cluster),
        )
        client.close()
    else:
        db = SqliteEntityStore(tmp_path / "state.db")
        daily = SqliteDailyRows(tmp_path / "state.db")
        yield db, daily, SqliteLabelPartials(tmp_path / "labels.db")
        daily.close()
        db.close()


def test_entity_entries_are_idempotent(stores: tuple[Any, Any, Any]) -> None:
    entities, _, _ = stores
    a = ("c1", "t1", 1_700_000_000, 5, [12.25, 0.0, 1.0, float("nan")])
    b = ("c1", "t2", 1_700_000_100, 6, [0.1, 12.25, 2.0, 6.175])
    entities.save(write_set([a, b]))
    entities.save(write_set([a]))  # re-delivery
    loaded = entities.load(["c1", "nobody"])
    got = sorted(loaded["c1"], key=lambda e: e.seq)
    assert [(e.event_id, e.time, e.seq, e.data[:3]) for e in got] == [
        (r[1], r[2], r[3], r[4][:3]) for r in (a, b)
    ]
    assert np.isnan(got[0].data[3]) and got[1].data[3] == 6.175  # floats exact, NaN kept
    assert loaded["nobody"] == []


def test_terminal_rows_and_watermark(stores: tuple[Any, Any, Any]) -> None:
    _, terminals, _ = stores
    assert terminals.complete_through() is None
    row = (3.0, 1 / 3, 10.0, 0.1, 40.0, 0.025)
    wide = (1.5, float("nan"), -0.0, 1e-300, 7.0, 2.0, 3.0, 5e-324)  # any width, exact
    terminals.publish({"v": {("T1", 100): row}, "w": {("T1", 100): wide}}, complete_through=92)
    terminals.publish({}, complete_through=90)  # a late processor never moves it back
    assert terminals.complete_through() == 92
    assert terminals.rows("v", [("T1", 100), ("T2", 100)]) == {("T1", 100): row}
    (got,) = terminals.rows("w", [("T1", 100)]).values()
    assert repr(got) == repr(wide)


def test_dropped_entries_are_deleted_with_the_save(stores: tuple[Any, Any, Any]) -> None:
    entities, _, _ = stores
    a = ("c1", "t1", 1_700_000_000, 5, [12.25])
    b = ("c1", "t2", 1_700_000_100, 6, [0.1])
    late = ("c1", "t0", 1_690_000_000, 4, [1.0])
    entities.save(write_set([a, b]))
    drop = write_set([a], dropped=True)
    entities.save(drop)
    entities.save(drop)  # again: nothing changes
    assert entities.load(["c1"])["c1"] == [StoredEntry("t2", 1_700_000_100, 6, [0.1])]
    # An entry added and dropped in one write set (a late event out of reach) is not kept.
    both = write_set([late])
    both.dropped = write_set([late], dropped=True).dropped
    entities.save(both)
    assert entities.load(["c1"])["c1"] == [StoredEntry("t2", 1_700_000_100, 6, [0.1])]


def test_a_long_stream_keeps_the_store_to_the_window(
    stores: tuple[Any, Any, Any], redis_url: str, redis_prefix: str
) -> None:
    entities, _, _ = stores
    day = SECONDS_PER_DAY
    t0 = 1_700_000_000
    # 3 customers, 6 events a day each for 70 days; evicted from a cache of 1 all along.
    txs = [(f"x{i}", f"c{i % 3}", t0 + i * day // 18, 1.0 + i % 7, i) for i in range(18 * 70)]
    fc = FeatureComputer(
        fraud_defs(), store=entities, write_behind=True, entity_cache_size=1, drop_delay_s=0
    )
    want = reference(txs)
    for i in range(0, len(txs), 50):
        matrix, _ = fc.compute(columns(txs[i : i + 50]))
        fc.state.save(fc.state.take_pending())
        np.testing.assert_array_equal(stream_columns(matrix), want[i : i + 50])
    keep = 30 * day + day  # the window plus the default one-day margin
    slack = PRUNE_AT * day // 6  # pruning waits for PRUNE_AT entries out of reach
    for cid, entries in entities.load(["c0", "c1", "c2"]).items():
        newest = max(e.time for e in entries)
        assert min(e.time for e in entries) > newest - keep - slack, cid
        assert len(entries) <= 6 * 31 + 1 + PRUNE_AT, cid
    if isinstance(entities, RedisEntityStore):  # idle customers still expire
        assert 0 < entities.client.ttl(f"{redis_prefix}:e:c0") <= DEFAULT_TTL_S
