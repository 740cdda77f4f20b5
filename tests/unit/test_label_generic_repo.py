"""Any repository's daily views, end to end through the label processor: a repository written
here has a daily view with count, min, max, mean and stddev of a float label column over 2 and
3 days, 1 day behind. Labels go through the aggregator (two partitions, random batches, a
re-delivered batch) into the SQLite partial and daily-row stores; every event's row read back
through CachedDailyRows once final equals streamdef.reference.daily_features: count, min and
max exactly, mean and stddev to a relative 1e-9 (float sums in another order, Welford then
Chan instead of two passes)."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.labels.aggregator import LabelAggregator, LabelRecord
from stream_infer.labels.stores import SqliteLabelPartials
from stream_infer.state.daily_cache import CachedDailyRows
from stream_infer.state.daily_sqlite import SqliteDailyRows
from stream_infer.streamdef.feast_reader import load_definitions
from stream_infer.streamdef.reference import daily_features
from stream_infer.streamdef.spec import SECONDS_PER_DAY, StreamDefinitions
from tests.unit.streamdef_repos import BASE, write_repo

DAY = SECONDS_PER_DAY
T0 = 19_800 * DAY  # 2024-03-18: in the past, so the wall clock never holds the watermark
RATINGS = """
RATING_SCHEMA = {
    "type": "object",
    "properties": {
        "event_id": {"type": "string"},
        "ts": {"type": "integer"},
        "shop_id": {"type": "string"},
        "rating": {"type": "number"},
    },
}
ratings = KafkaSource(
    name="ratings",
    kafka_bootstrap_servers="localhost:9092",
    topic="ratings",
    timestamp_field="ts",
    message_format=JsonFormat(schema_json=json.dumps(RATING_SCHEMA)),
    batch_source=FileSource(name="ratings_history", path="data/r.parquet", timestamp_field="ts"),
    tags={"stream_infer.event_id": "event_id"},
)
shop_ratings = StreamFeatureView(
    name="shop_ratings",
    source=ratings,
    entities=[shop],
    timestamp_field="ts",
    schema=[Field(name=n, dtype=Float64) for n in (
        "n_2d", "low_2d", "high_3d", "avg_3d", "sd_3d", "sd_2d")],
    aggregations=[
        Aggregation(column="rating", function="count", time_window=timedelta(days=2), name="n_2d"),
        Aggregation(column="rating", function="min", time_window=timedelta(days=2), name="low_2d"),
        Aggregation(column="rating", function="max", time_window=timedelta(days=3), name="high_3d"),
        Aggregation(column="rating", function="mean", time_window=timedelta(days=3), name="avg_3d"),
        Aggregation(column="rating", function="std", time_window=timedelta(days=3), name="sd_3d"),
        Aggregation(column="rating", function="std", time_window=timedelta(days=2), name="sd_2d"),
    ],
    tags={
        "stream_infer.kind": "daily",
        "stream_infer.delay_days": "1",
        "stream_infer.join_field": "shop_id",
    },
)
service = FeatureService(name="model_v1", features=[spending, shop_ratings])
"""
SHOPS = ("s0", "s1", "s2", "s3")


@pytest.fixture(scope="module")
def defs(tmp_path_factory: pytest.TempPathFactory) -> StreamDefinitions:
    base = BASE.replace('service = FeatureService(name="model_v1", features=[spending])\n', "")
    return load_definitions(write_repo(tmp_path_factory.mktemp("ratings") / "repo", base + RATINGS))


def test_the_repository_reads_as_one_daily_view(defs: StreamDefinitions) -> None:
    (view,) = defs.daily_views
    assert (view.name, view.delay_days, view.join_field) == ("shop_ratings", 1, "shop_id")
    assert [a.function for a in view.aggregations] == [
        "count",
        "min",
        "max",
        "mean",
        "stddev",
        "stddev",
    ]


labels_st = st.lists(
    st.tuples(
        st.sampled_from(SHOPS),
        st.integers(0, 9 * DAY),
        st.one_of(st.floats(-100, 100, allow_nan=False), st.sampled_from([0.5, 2.0, -3.25])),
    ),
    min_size=1,
    max_size=80,
)


def _records(
    labels: list[tuple[str, int, float]], rng: random.Random
) -> tuple[dict[str, list[Any]], dict[int, list[LabelRecord]]]:
    """The labels as columns (for the reference) and as records of two partitions, each in
    event-time order; a shop's labels spread over both (as after a repartition), so days
    merge partitions."""
    labels = sorted(labels, key=lambda x: x[1])
    cols: dict[str, list[Any]] = {"event_id": [], "ts": [], "shop_id": [], "rating": []}
    per_partition: dict[int, list[LabelRecord]] = {0: [], 1: []}
    ending = [(f"end{p}", 11 * DAY, shop, 0.0, p) for p, shop in ((0, "s0"), (1, "s1"))]
    # The last label of each partition a day after everything: the whole span is complete.
    for eid, t, shop, rating, p in [
        *((f"e{i}", t, s, r, rng.randint(0, 1)) for i, (s, t, r) in enumerate(labels)),
        *ending,
    ]:
        for name, value in zip(cols, (eid, T0 + t, shop, rating), strict=True):
            cols[name].append(value)
        raw = json.dumps({"event_id": eid, "ts": T0 + t, "shop_id": shop, "rating": rating})
        per_partition[p].append(LabelRecord(p, len(per_partition[p]), raw.encode()))
    return cols, per_partition


def _run(
    defs: StreamDefinitions,
    per_partition: dict[int, list[LabelRecord]],
    rng: random.Random,
    folder: Path,
) -> SqliteDailyRows:
    """Every record through one aggregator in random batches (some re-delivered)."""
    rows_store = SqliteDailyRows(folder / "state.db")
    agg = LabelAggregator(
        SqliteLabelPartials(folder / "labels.db"),
        [rows_store],
        partitions=2,
        defs=defs,
        max_step_days=10_000,
    )
    queues = {p: list(recs) for p, recs in per_partition.items()}
    while any(queues.values()):
        p = rng.choice([q for q in queues if queues[q]])
        n = rng.randint(1, 7)
        batch, queues[p] = queues[p][:n], queues[p][n:]
        agg.process(batch)
        if rng.random() < 0.2:
            assert agg.process(batch).counted == 0  # re-delivered: skipped
    assert rows_store.complete_through() == T0 // DAY + 10
    return rows_store


#: Every event day 0..12 of every shop (and one with no label): all final once day 10 is.
EVENTS: dict[str, list[Any]] = {
    "shop_id": [s for s in (*SHOPS, "never") for _d in range(13)],
    "ts": [T0 + d * DAY + 5 for _s in (*SHOPS, "never") for d in range(13)],
}
KEYS = [(s, t // DAY) for s, t in zip(EVENTS["shop_id"], EVENTS["ts"], strict=True)]


@settings(max_examples=30, deadline=None)
@given(labels=labels_st, seed=st.integers(0, 2**32 - 1))
def test_published_rows_equal_the_reference(
    defs: StreamDefinitions, labels: list[tuple[str, int, float]], seed: int
) -> None:
    (view,) = defs.daily_views
    rng = random.Random(seed)
    cols, per_partition = _records(labels, rng)
    with tempfile.TemporaryDirectory() as folder:
        rows_store = _run(defs, per_partition, rng, Path(folder))
        want = daily_features(defs, EVENTS, cols)
        got = CachedDailyRows(rows_store, defs.daily_views).rows(view.name, KEYS)
        rows_store.close()
    assert set(got) == set(KEYS)  # all final
    for i, key in enumerate(KEYS):
        for j, agg_spec in enumerate(view.aggregations):
            a, b = got[key][j], want[agg_spec.feature][i]
            if agg_spec.function in ("count", "min", "max"):
                assert np.array_equal(a, b, equal_nan=True), (key, agg_spec.feature, a, b)
            else:
                assert np.isclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True), (key, agg_spec)


@settings(max_examples=15, deadline=None)
@given(labels=labels_st, seeds=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)))
def test_rows_are_the_same_bits_whatever_the_batches(
    defs: StreamDefinitions, labels: list[tuple[str, int, float]], seeds: tuple[int, int]
) -> None:
    (view,) = defs.daily_views
    _cols, per_partition = _records(labels, random.Random(seeds[0]))
    got = []
    for seed in seeds:  # the same records on the same partitions, batched differently
        with tempfile.TemporaryDirectory() as folder:
            rows_store = _run(defs, per_partition, random.Random(seed), Path(folder))
            got.append(repr(dict(rows_store.rows(view.name, KEYS))))
            rows_store.close()
    assert got[0] == got[1]
