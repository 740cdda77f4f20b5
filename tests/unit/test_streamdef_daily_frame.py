"""The vectorised daily features (training sets) equal ``DailyRows`` and the reference.

Random definitions (1-2 daily views over 1-2 label columns, any function, windows of 1-10
days, delays of 0-7 days, string or int join keys) and random label and event streams
(re-delivered labels, days outside every window, keys without labels). Contract: count, min and
max exactly; sum and mean to 1e-12 relative; var and stddev to 1e-9 relative; an empty window
gives count and sum 0, the others NaN (NaN where the reference has NaN, nowhere else).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.streamdef import reference
from stream_infer.streamdef.daily import DailyRows, day_partials
from stream_infer.streamdef.daily_frame import DENSE_LIMIT, daily_feature_matrix
from stream_infer.streamdef.spec import (
    AGG_FUNCTIONS,
    AggSpec,
    DailyView,
    StreamDefinitions,
    ValueKind,
)
from tests.unit.streamdef_fixtures import source

DAY = 86_400
T0 = 1_700_000_000 // DAY * DAY
Case = tuple[StreamDefinitions, dict[str, npt.NDArray[Any]], dict[str, npt.NDArray[Any]]]

values = st.one_of(
    st.integers(-400, 400).map(lambda v: v / 4),  # on a grid: exact sums
    st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
    st.sampled_from([1e6 + 1e-3, 1e6 - 1e-3, 1e6]),  # nearly equal: the variance's hard case
)


@st.composite
def daily_case(draw: st.DrawFn) -> Case:
    int_keys = draw(st.booleans())
    key_kind: ValueKind = "int64" if int_keys else "string"
    labels_src = source("labels", "shop", {"y": "float64", "z": "float64"})
    events_src = source("events", "user", {"shop": key_kind, "shop2": key_kind})
    views = []
    for v in range(draw(st.integers(1, 2))):
        aggs = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(AGG_FUNCTIONS), st.sampled_from(["y", "z"]), st.integers(1, 10)
                ),
                min_size=1,
                max_size=5,
            )
        )
        views.append(
            DailyView(
                f"view{v}",
                "labels",
                "shop",
                f"shop{'' if v == 0 else 2}",
                draw(st.integers(0, 7)),
                tuple(AggSpec(f"v{v}_{i}", c, fn, n * DAY) for i, (fn, c, n) in enumerate(aggs)),
            )
        )
    defs = StreamDefinitions(events_src, labels_src, (), tuple(views), (), "svc", ())
    records = draw(
        st.lists(
            st.tuples(st.integers(0, 30), st.integers(0, 3), st.integers(0, 12 * DAY), values,
                      values),
            max_size=80,
        )
    )  # fmt: skip

    def key(i: int) -> Any:
        return i if int_keys else f"s{i}"

    labels: dict[str, npt.NDArray[Any]] = {
        "id": np.array([f"l{r[0]}" for r in records], dtype=object),
        "shop": np.array([key(r[1]) for r in records], dtype=np.int64 if int_keys else object),
        "ts": np.array([T0 + r[2] for r in records], dtype=np.int64),
        "y": np.array([r[3] for r in records], dtype=np.float64),
        "z": np.array([r[4] for r in records], dtype=np.float64),
    }
    evs = draw(
        st.lists(
            st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(-DAY, 24 * DAY)),
            min_size=1,
            max_size=40,
        )
    )
    kind = np.int64 if int_keys else object
    events: dict[str, npt.NDArray[Any]] = {
        "id": np.array([f"e{i}" for i in range(len(evs))], dtype=object),
        "user": np.array(["u"] * len(evs), dtype=object),
        "shop": np.array([key(e[0]) for e in evs], dtype=kind),
        "shop2": np.array([key(e[1]) for e in evs], dtype=kind),
        "ts": np.array([T0 + e[2] for e in evs], dtype=np.int64),
    }
    return defs, labels, events


def assert_contract(
    defs: StreamDefinitions, got: npt.NDArray[np.float64], want: dict[str, Any]
) -> None:
    aggs = [a for v in defs.daily_views for a in v.aggregations]
    assert got.shape == (len(want[aggs[0].feature]), len(aggs))
    for j, agg in enumerate(aggs):
        ref = np.asarray(want[agg.feature], dtype=np.float64)
        if agg.function in ("count", "min", "max"):
            np.testing.assert_array_equal(got[:, j], ref, err_msg=str(agg))
        elif agg.function in ("sum", "mean"):
            np.testing.assert_allclose(got[:, j], ref, rtol=1e-12, atol=0, err_msg=str(agg))
        else:
            np.testing.assert_allclose(got[:, j], ref, rtol=1e-9, atol=0, err_msg=str(agg))
        if agg.function in ("count", "sum"):
            assert not np.isnan(got[:, j]).any()


@settings(max_examples=300, deadline=None)
@given(case=daily_case(), dense_limit=st.sampled_from([DENSE_LIMIT, 0]))
def test_the_daily_matrix_equals_daily_rows(case: Case, dense_limit: int) -> None:
    """With the day partials in a table and, ``dense_limit`` 0, found by a sorted search."""
    defs, labels, events = case
    lists = {name: col.tolist() for name, col in labels.items()}
    rows = DailyRows(defs).evaluate(events, day_partials(defs, lists))
    want = {name: rows[:, j] for j, name in enumerate(defs.daily_features())}
    got = daily_feature_matrix(defs, events, labels, dense_limit=dense_limit)
    assert_contract(defs, got, want)


@settings(max_examples=100, deadline=None)
@given(case=daily_case())
def test_the_daily_matrix_equals_the_reference(case: Case) -> None:
    defs, labels, events = case
    lists = {name: col.tolist() for name, col in labels.items()}
    want = reference.daily_features(defs, {k: v.tolist() for k, v in events.items()}, lists)
    assert_contract(defs, daily_feature_matrix(defs, events, labels), want)


def test_no_labels_give_zero_counts_and_sums_and_nan_elsewhere() -> None:
    view = DailyView(
        "v",
        "labels",
        "shop",
        "shop",
        1,
        tuple(AggSpec(f"f_{fn}", "y", fn, 3 * DAY) for fn in AGG_FUNCTIONS),
    )
    defs = StreamDefinitions(
        source("events", "user", {"shop": "string"}),
        source("labels", "shop", {"y": "float64"}),
        (),
        (view,),
        (),
        "svc",
        (),
    )
    events = {"shop": np.array(["a", "b"], dtype=object), "ts": np.array([T0, T0 + DAY])}
    got = daily_feature_matrix(defs, events, None)
    zero = [fn in ("count", "sum") for fn in AGG_FUNCTIONS]
    np.testing.assert_array_equal(got[:, zero], 0.0)
    assert np.isnan(got[:, [not z for z in zero]]).all()
