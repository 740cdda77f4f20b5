"""The DailyRowSource contract: finality and the stream's start by the view's delay, empty rows
by function, and InMemoryDailyRows' rows equal to the reference's daily features."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.streamdef.daily import day_partials
from stream_infer.streamdef.daily_source import (
    ASK,
    NOT_FINAL,
    InMemoryDailyRows,
    NoDailyRows,
    empty_row,
)
from stream_infer.streamdef.reference import daily_features
from stream_infer.streamdef.spec import SECONDS_PER_DAY, AggSpec, DailyView, StreamDefinitions
from tests.unit.streamdef_fixtures import source

DAY = SECONDS_PER_DAY
FUNCTIONS = ("count", "sum", "mean", "min", "max", "stddev", "var")


def _defs(delay: int) -> StreamDefinitions:
    events = source("events", "user", {"shop": "string"})
    labels = source("labels", "shop", {"score": "float64"})
    view = DailyView(
        "shop_scores",
        "labels",
        "shop",
        "shop",
        delay,
        tuple(
            AggSpec(f"score_{f}_{n}d", "score", f, n * DAY)  # type: ignore[arg-type]
            for n in (1, 3)
            for f in FUNCTIONS
        ),
    )
    feats = tuple(a.feature for a in view.aggregations)
    return StreamDefinitions(events, labels, (), (view,), (), "svc", feats)


def test_empty_row_is_zero_for_count_and_sum_nan_otherwise() -> None:
    row = empty_row(_defs(0).daily_views[0])
    for agg, value in zip(_defs(0).daily_views[0].aggregations, row, strict=True):
        if agg.function in ("count", "sum"):
            assert value == 0.0
        else:
            assert math.isnan(value)


def test_no_daily_rows_is_never_final() -> None:
    src = NoDailyRows()
    assert src.rows("v", [("a", 10)]) == {}
    assert src.triage("v", np.array([1, 2], dtype=np.int64)).tolist() == [NOT_FINAL] * 2


def test_finality_follows_the_views_delay_and_the_streams_start() -> None:
    view = _defs(3).daily_views[0]
    rows = InMemoryDailyRows([view], complete_through=None)
    assert rows.rows(view.name, [("a", 20)]) == {}
    # a row reading only days before the stream's first day is final and empty
    got = rows.rows(view.name, [("a", 20)], stream_start_day=17)
    assert got.keys() == {("a", 20)}
    assert np.array_equal(got[("a", 20)], empty_row(view), equal_nan=True)
    assert rows.rows(view.name, [("a", 20)], stream_start_day=16) == {}
    rows.set_complete_through(15)  # day 20 reads up to day 16: not all in
    assert rows.rows(view.name, [("a", 20)]) == {}
    rows.set_complete_through(16)
    assert rows.rows(view.name, [("a", 20)]).keys() == {("a", 20)}
    assert rows.triage(view.name, np.array([20], dtype=np.int64)).tolist() == [ASK]


@settings(max_examples=60, deadline=None)
@given(
    delay=st.integers(0, 2),
    labels=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.integers(0, 8),
            st.floats(-1e3, 1e3, allow_nan=False),
        ),
        max_size=40,
    ),
    events=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 12)), max_size=20),
)
def test_in_memory_rows_equal_the_reference(
    delay: int, labels: list[tuple[str, int, float]], events: list[tuple[str, int]]
) -> None:
    defs = _defs(delay)
    view = defs.daily_views[0]
    label_cols: dict[str, list[object]] = {
        "id": [f"t{i}" for i in range(len(labels))],
        "ts": [d * DAY + 7 for _, d, _ in labels],
        "shop": [k for k, _, _ in labels],
        "score": [v for _, _, v in labels],
    }
    event_cols: dict[str, list[object]] = {
        "user": ["u"] * len(events),
        "shop": [k for k, _ in events],
        "ts": [d * DAY + 5 for _, d in events],
    }
    expected = daily_features(defs, event_cols, label_cols)
    rows = InMemoryDailyRows([view], complete_through=100)
    rows.add_partials(day_partials(defs, label_cols))
    got = rows.rows(view.name, events)
    for i, key in enumerate(events):
        for j, agg in enumerate(view.aggregations):
            want = expected[agg.feature][i]
            if agg.function in ("sum", "mean", "stddev", "var"):
                # days sum separately, then merge: float sums agree to rounding only
                assert np.isclose(got[key][j], want, rtol=1e-9, atol=1e-9, equal_nan=True)
            else:
                assert np.array_equal(got[key][j], want, equal_nan=True)
