"""Held final partials give the fraud view's rows of today's math (counts and fraud sums,
risk via the ODFV equal to ``definitions.terminal_features``), and any view's rows are
``streamdef.daily.view_row``'s bit for bit; each day loads once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.labels.partials import Partial, aggregates, fold
from stream_infer.labels.rows import FinalPartials
from stream_infer.streamdef.daily import view_row
from stream_infer.streamdef.spec import SECONDS_PER_DAY, AggSpec, DailyView

from .label_fixtures import DEFS, VIEW, counts_row

(TERMINALS,) = DEFS.daily_views

counts = st.dictionaries(
    st.sampled_from(["t0", "t1", "t2", "10", "x"]),
    st.dictionaries(
        st.integers(100, 170),
        st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))),
        max_size=40,
    ),
    max_size=5,
)


def partial(n: int, frauds: int) -> Partial:
    p = None
    for i in range(n):
        p = fold(p, (1.0 if i < frauds else 0.0,))
    assert p is not None
    return p


def expected(
    daily: dict[str, dict[int, tuple[int, int]]], days: list[int]
) -> dict[tuple[str, int], tuple[float, ...]]:
    return {
        (t, d): counts_row(per, d)
        for t, per in daily.items()
        for d in days
        if any(x in per for x in range(d - 37, d - 7))
    }


def holder(daily: dict[str, dict[int, tuple[int, int]]], days: range) -> FinalPartials:
    by_day: dict[int, dict[tuple[str, str], dict[int, Partial]]] = {}
    for t, per in daily.items():
        for d, (n, f) in per.items():
            # split across two partitions when there are two labels or more: merged on read
            parts = (
                {0: partial(n, f)}
                if n < 2
                else {0: partial(1, min(f, 1)), 3: partial(n - 1, f - min(f, 1))}
            )
            by_day.setdefault(d, {})[(VIEW, t)] = parts
    held = FinalPartials(DEFS.daily_views)
    held.add(days, by_day)
    return held


@settings(max_examples=200, deadline=None)
@given(counts, st.integers(95, 220), st.integers(1, 20))
def test_rows_equal_todays_terminal_rows(
    daily: dict[str, dict[int, tuple[int, int]]], first: int, n_days: int
) -> None:
    days = list(range(first, first + n_days))
    held = holder(daily, range(first - 37, first + n_days))
    assert held.rows(TERMINALS, days) == expected(daily, days)


def test_only_missing_days_are_loaded_and_old_ones_forgotten() -> None:
    daily = {"a": {100: (2, 1), 130: (1, 0)}}
    held = holder(daily, range(100, 131))
    assert held.missing(range(99, 133)) == [99, 131, 132]
    held.forget_before(120)
    assert held.missing(range(118, 122)) == [118, 119]
    assert len(held) == 11
    # Day 138 reads days 101..130: only day 130 is still needed, and held.
    assert held.rows(TERMINALS, [138]) == {("a", 138): counts_row(daily["a"], 138)}


def test_no_partials_no_rows() -> None:
    assert FinalPartials(DEFS.daily_views).rows(TERMINALS, []) == {}
    assert holder({}, range(0, 40)).rows(TERMINALS, [45]) == {}


ALL = DailyView(
    "all",
    "labels",
    "k",
    "k",
    2,
    tuple(
        AggSpec(f"{c}_{f}_{n}d", c, f, n * SECONDS_PER_DAY)
        for c in ("a", "b")
        for n in (1, 4)
        for f in ("count", "sum", "mean", "min", "max", "stddev", "var")
    ),
)
values = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([0.0, -0.0, 1.0]))


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.integers(100, 112),
        st.lists(st.tuples(values, values), min_size=1, max_size=4),
        max_size=10,
    ),
    st.lists(st.integers(100, 120), min_size=1, max_size=8),
)
def test_rows_are_view_row_bit_for_bit(
    labelled: dict[int, list[tuple[float, float]]], days: list[int]
) -> None:
    daily: dict[int, Partial] = {}
    for d, labels in labelled.items():
        p = None
        for x in labels:
            p = fold(p, x)
        assert p is not None
        daily[d] = p
    held = FinalPartials([ALL])
    held.add(range(90, 121), {d: {("all", "K"): {0: p}} for d, p in daily.items()})
    got = held.rows(ALL, sorted(set(days)))
    per_day = {d: aggregates(ALL, p) for d, p in daily.items()}
    for d in sorted(set(days)):
        if any(d - ALL.horizon_days <= x < d - ALL.delay_days for x in daily):
            assert repr(got[("K", d)]) == repr(tuple(view_row(ALL, per_day, d)))
        else:
            assert ("K", d) not in got
