"""State stores against real Redis and real SQLite: same promises on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_infer.labels.stores import RedisLabelCounts, SqliteLabelCounts
from stream_infer.state.base import Entry
from stream_infer.state.redis_store import RedisCustomerStore, RedisTerminalStore, connect
from stream_infer.state.sqlite_store import SqliteState


@pytest.fixture(params=["redis", "sqlite"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, redis_prefix: str
) -> Iterator[tuple[Any, Any, Any]]:
    if request.param == "redis":
        client = connect(redis_url)
        yield (
            RedisCustomerStore(client, redis_prefix),
            RedisTerminalStore(client, redis_prefix),
            RedisLabelCounts(client, redis_prefix),
        )
        client.close()
    else:
        db = SqliteState(tmp_path / "state.db")
        yield db, db, SqliteLabelCounts(tmp_path / "labels.db")
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
    terminals.publish({("T1", 100): row}, complete_through=92)
    terminals.publish({}, complete_through=90)  # a late processor never moves it back
    assert terminals.complete_through() == 92
    assert terminals.rows([("T1", 100), ("T2", 100)]) == {("T1", 100): row}
