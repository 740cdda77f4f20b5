"""The reference evaluator on small streams computed by hand: each function, windows, ties,
late events, re-deliveries, empty daily windows, on-demand views and the service's order."""

from __future__ import annotations

import math
from typing import Any

import pytest

from stream_infer.streamdef import reference
from stream_infer.streamdef.ondemand import OnDemandError
from stream_infer.streamdef.spec import (
    SEQ_COLUMN,
    AggSpec,
    DailyView,
    FieldSpec,
    OnDemandView,
    StreamDefinitions,
)
from tests.unit.streamdef_fixtures import source, stream_only

SRC = source("events", "user", {"x": "float64"})
FUNCTIONS = ("count", "sum", "mean", "min", "max", "var", "stddev")


def defs_10s() -> StreamDefinitions:
    return stream_only(SRC, [AggSpec(f, "x", f, 10) for f in FUNCTIONS])  # type: ignore[arg-type]


def events(*rows: tuple[str, str, int, int, float]) -> dict[str, list[Any]]:
    """Rows of ``(id, user, ts, seq, x)``."""
    return {
        "id": [r[0] for r in rows],
        "user": [r[1] for r in rows],
        "ts": [r[2] for r in rows],
        SEQ_COLUMN: [r[3] for r in rows],
        "x": [r[4] for r in rows],
    }


def row(features: dict[str, list[float]], i: int) -> dict[str, float]:
    return {k: v[i] for k, v in features.items()}


def assert_row(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want)
    for k, v in want.items():
        assert (math.isnan(got[k]) and math.isnan(v)) or got[k] == pytest.approx(v, rel=1e-12), k


def test_each_function_over_a_window_that_includes_the_event_and_excludes_its_left_edge() -> None:
    got = reference.stream_features(
        defs_10s(),
        events(("a", "u", 100, 0, 1.0), ("b", "u", 105, 1, 3.0), ("c", "u", 110, 2, 8.0)),
    )
    nan = math.nan
    assert_row(
        row(got, 0),
        {"count": 1, "sum": 1, "mean": 1, "min": 1, "max": 1, "var": nan, "stddev": nan},
    )
    # (100, 110]: 100 is out, 105 and 110 are in; mean 5.5, var (2.5^2 + 2.5^2) / 1
    assert_row(
        row(got, 2),
        {"count": 2, "sum": 11, "mean": 5.5, "min": 3, "max": 8, "var": 12.5,
         "stddev": math.sqrt(12.5)},
    )  # fmt: skip


def test_entities_do_not_mix() -> None:
    got = reference.stream_features(
        defs_10s(), events(("a", "u", 100, 0, 1.0), ("b", "v", 101, 1, 5.0))
    )
    assert got["count"] == [1.0, 1.0]
    assert got["sum"] == [1.0, 5.0]


def test_ties_count_every_entry_of_the_second_at_or_before_the_event_by_seq() -> None:
    got = reference.stream_features(
        defs_10s(),
        events(
            ("a", "u", 100, 5, 1.0),
            ("b", "u", 100, 7, 2.0),
            ("c", "u", 100, 6, 4.0),  # arrives last, ordered between a and b
        ),
    )
    assert got["count"] == [1.0, 2.0, 2.0]  # c sees a (seq 5), not b (seq 7)
    assert got["sum"] == [1.0, 3.0, 5.0]


def test_a_late_event_sees_its_own_past_and_never_enters_an_earlier_window() -> None:
    got = reference.stream_features(
        defs_10s(),
        events(
            ("a", "u", 100, 0, 1.0),
            ("b", "u", 108, 1, 2.0),
            ("late", "u", 103, 2, 4.0),  # (93, 103]: a and itself
            ("c", "u", 111, 3, 8.0),  # (101, 111]: late, b and itself
        ),
    )
    assert got["count"] == [1.0, 2.0, 2.0, 3.0]
    assert got["sum"] == [1.0, 3.0, 5.0, 14.0]
    assert got["max"] == [1.0, 2.0, 4.0, 8.0]


def test_a_redelivery_gets_its_first_features_and_counts_once() -> None:
    got = reference.stream_features(
        defs_10s(),
        events(
            ("a", "u", 100, 0, 1.0),
            ("b", "u", 105, 1, 2.0),
            ("late", "u", 104, 2, 4.0),  # now in b's window, after b was evaluated
            ("b", "u", 105, 3, 2.0),  # re-delivered (a new offset): b's first features
            ("c", "u", 106, 4, 8.0),
        ),
    )
    assert got["count"] == [1.0, 2.0, 2.0, 2.0, 4.0]
    assert got["sum"] == [1.0, 3.0, 5.0, 3.0, 15.0]


def test_an_id_again_at_another_second_is_another_event() -> None:
    got = reference.stream_features(
        defs_10s(), events(("a", "u", 100, 0, 1.0), ("a", "u", 101, 1, 1.0))
    )
    assert got["count"] == [1.0, 2.0]


def daily_defs() -> StreamDefinitions:
    labels = source("labels", "shop", {"y": "float64"})
    events_src = source("events", "user", {"shop": "string"})
    view = DailyView(
        "shop_days",
        "labels",
        "shop",
        "shop",
        2,
        tuple(AggSpec(f"{f}_2d", "y", f, 2 * 86_400) for f in FUNCTIONS),  # type: ignore[arg-type]
    )
    return StreamDefinitions(events_src, labels, (), (view,), (), "svc", ())


def test_daily_windows_read_whole_days_behind_the_delay_with_labels_deduplicated() -> None:
    day = 86_400
    labels: dict[str, list[Any]] = {
        "id": ["l1", "l2", "l2", "l3", "l4", "l5"],
        "shop": ["s", "s", "s", "s", "s", "t"],
        "ts": [7 * day + 5, 8 * day, 8 * day, 9 * day + 1, 10 * day, 8 * day],
        "y": [1.0, 3.0, 100.0, 5.0, 7.0, 9.0],
    }
    ev: dict[str, list[Any]] = {"id": ["e"], "user": ["u"], "shop": ["s"], "ts": [11 * day + 3600]}
    got = reference.daily_features(daily_defs(), ev, labels)
    # day 11, delay 2, window 2 days: days 7 and 8 -> l1 and l2 (the duplicate l2 dropped)
    assert_row(
        {k: v[0] for k, v in got.items()},
        {"count_2d": 2, "sum_2d": 4, "mean_2d": 2, "min_2d": 1, "max_2d": 3, "var_2d": 2.0,
         "stddev_2d": math.sqrt(2.0)},
    )  # fmt: skip


def test_an_empty_daily_window_counts_zero_and_is_nan_otherwise() -> None:
    ev: dict[str, list[Any]] = {"id": ["e"], "user": ["u"], "shop": ["nobody"], "ts": [20 * 86_400]}
    got = reference.daily_features(daily_defs(), ev, {"id": [], "shop": [], "ts": [], "y": []})
    assert got["count_2d"] == [0.0]
    assert got["sum_2d"] == [0.0]
    for f in ("mean_2d", "min_2d", "max_2d", "var_2d", "stddev_2d"):
        assert math.isnan(got[f][0])


def odfv_defs(fn: Any) -> StreamDefinitions:
    base = stream_only(SRC, [AggSpec("total", "x", "sum", 10)])
    view = OnDemandView("twice", ("x", "total"), (FieldSpec("twice", "float64"),), fn)
    return StreamDefinitions(
        SRC, None, base.stream_views, (), (view,), "svc", ("twice", "x", "total")
    )


def test_feature_rows_run_on_demand_views_over_the_batch_in_the_service_order() -> None:
    calls: list[int] = []

    def twice(cols: dict[str, list[Any]]) -> dict[str, list[Any]]:
        calls.append(len(cols["x"]))
        return {"twice": [2 * t + x for t, x in zip(cols["total"], cols["x"], strict=True)]}

    got = reference.feature_rows(
        odfv_defs(twice), events(("a", "u", 100, 0, 1.0), ("b", "u", 101, 1, 2.0))
    )
    assert list(got) == ["twice", "x", "total"]
    assert got == {"twice": [3.0, 8.0], "x": [1.0, 2.0], "total": [1.0, 3.0]}
    assert calls == [2]  # once, with the whole batch


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda cols: {"twice": [1.0]}, "wrong columns"),
        (lambda cols: {"other": [1.0, 2.0]}, "wrong columns"),
    ],
)
def test_an_on_demand_view_returning_other_names_or_lengths_is_refused(
    fn: Any, message: str
) -> None:
    with pytest.raises(OnDemandError, match=message):
        reference.feature_rows(
            odfv_defs(fn), events(("a", "u", 100, 0, 1.0), ("b", "u", 101, 1, 2.0))
        )
