"""Held final partials give the fraud view's rows of today's math (counts and fraud sums,
risk via the ODFV equal to ``definitions.terminal_features``); each day loads once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.labels.partials import Partial, fold
from stream_infer.labels.rows import FinalPartials

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
