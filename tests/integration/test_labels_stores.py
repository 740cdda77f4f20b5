"""The Redis label-count store keeps the SQLite store's contract (compare-and-set by offset)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from stream_infer.labels.aggregator import PartitionUpdate
from stream_infer.labels.stores import RedisLabelCounts, SqliteLabelCounts


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        return SqliteLabelCounts(tmp_path / "labels.db")
    url = request.getfixturevalue("redis_url")
    return RedisLabelCounts(redis.Redis.from_url(url), request.getfixturevalue("redis_prefix"))


def test_updates_apply_once_and_stale_ones_are_refused(store: Any) -> None:
    assert store.applied_offsets() == {} and store.partition_days() == {}
    a = PartitionUpdate(0, -1, 9, {(20000, "T1"): (3, 1), (20001, "T1"): (1, 0)}, 20001)
    b = PartitionUpdate(1, -1, 4, {(20000, "T2"): (2, 2)}, 20000)
    assert store.apply([a, b]) == set()
    assert store.apply([a]) == {0}  # the same batch again: its offset moved on
    late = PartitionUpdate(0, 9, 12, {(20000, "T1"): (1, 1)}, 19999)  # an older label day
    stale = PartitionUpdate(1, 2, 6, {(20000, "T2"): (5, 5)}, 20002)
    assert store.apply([late, stale]) == {1}
    assert store.applied_offsets() == {0: 12, 1: 4}
    assert store.partition_days() == {0: 20001, 1: 20000}  # a partition's day never goes back
    assert store.counts([20000, 20001, 20002]) == {
        20000: {"T1": (4, 2), "T2": (2, 2)},
        20001: {"T1": (1, 0)},
    }
    assert store.apply([]) == set()
