"""State stores against real Redis and real SQLite: same promises on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from stream_infer.config import RedisSettings
from stream_infer.features.definitions import CUSTOMER_HORIZON_S, SECONDS_PER_DAY, CustomerHistory
from stream_infer.features.online import FeatureComputer, TxInput
from stream_infer.labels.stores import RedisLabelPartials, SqliteLabelPartials
from stream_infer.state.base import Entry
from stream_infer.state.daily_redis import RedisDailyRows
from stream_infer.state.daily_sqlite import SqliteDailyRows
from stream_infer.state.redis_client import open_redis
from stream_infer.state.redis_store import CUSTOMER_TTL_S, RedisCustomerStore
from stream_infer.state.sqlite_store import SqliteState

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
            RedisCustomerStore(client, redis_prefix),
            RedisDailyRows(client, redis_prefix),
            RedisLabelPartials(client, redis_prefix, cluster=cluster),
        )
        client.close()
    else:
        db = SqliteState(tmp_path / "state.db")
        daily = SqliteDailyRows(tmp_path / "state.db")
        yield db, daily, SqliteLabelPartials(tmp_path / "labels.db")
        daily.close()
        db.close()


def test_customer_entries_are_idempotent(stores: tuple[Any, Any, Any]) -> None:
    customers, _, _ = stores
    a = Entry("t1", 1_700_000_000, 5, 12.25)
    b = Entry("t2", 1_700_000_100, 6, 0.1)
    customers.save({"c1": [a, b]})
    customers.save({"c1": [a]})  # re-delivery
    loaded = customers.load(["c1", "nobody"])
    assert sorted(loaded["c1"], key=lambda e: e.seq) == [a, b]
    assert loaded["nobody"] == []
    customers.prune("c1", 1_700_000_050)
    assert customers.load(["c1"])["c1"] == [b]


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
    customers, _, _ = stores
    a = Entry("t1", 1_700_000_000, 5, 12.25)
    b = Entry("t2", 1_700_000_100, 6, 0.1)
    late = Entry("t0", 1_690_000_000, 4, 1.0)
    customers.save({"c1": [a, b]})
    drop = {"c1": [Entry("t1", a.epoch_seconds, 5, 12.25, dropped=True)]}
    customers.save(drop)
    customers.save(drop)  # again: nothing changes
    assert customers.load(["c1"])["c1"] == [b]
    # An entry added and dropped in one write set (a late event out of reach) is not kept.
    customers.save({"c1": [late, Entry("t0", late.epoch_seconds, 4, 1.0, dropped=True)]})
    assert customers.load(["c1"])["c1"] == [b]


def test_a_long_stream_keeps_the_store_to_the_window(
    stores: tuple[Any, Any, Any], redis_url: str, redis_prefix: str
) -> None:
    customers, _, _ = stores
    day = SECONDS_PER_DAY
    t0 = 1_700_000_000
    # 3 customers, 6 events a day each for 70 days; evicted from a cache of 1 all along.
    txs = [
        TxInput(f"x{i}", f"c{i % 3}", "T", t0 + i * day // 18, 1.0 + i % 7, 0, i)
        for i in range(18 * 70)
    ]
    fc = FeatureComputer(store=customers, write_behind=True, customer_cache_size=1, drop_delay_s=0)
    hists: dict[str, CustomerHistory] = {}
    for i in range(0, len(txs), 50):
        matrix, _ = fc.compute(txs[i : i + 50])
        fc.state.save(fc.state.take_pending())
        for row, t in zip(matrix.tolist(), txs[i : i + 50], strict=True):
            hist = hists.setdefault(t.customer_id, CustomerHistory())
            want = hist.features_at(hist.add(t.epoch_seconds, t.offset, t.amount, t.transaction_id))
            assert tuple(row[3:9]) == want, t.transaction_id
    keep = CUSTOMER_HORIZON_S + day  # the window plus the default one-day margin
    for cid, entries in customers.load(["c0", "c1", "c2"]).items():
        newest = max(e.epoch_seconds for e in entries)
        assert min(e.epoch_seconds for e in entries) > newest - keep, cid
        assert len(entries) <= 6 * 31 + 1, cid
    if isinstance(customers, RedisCustomerStore):  # idle customers still expire
        assert 0 < customers.client.ttl(f"{redis_prefix}:c:c0") <= CUSTOMER_TTL_S
