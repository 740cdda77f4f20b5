"""Held final counts give the rows of ``definitions.terminal_features``; each day loads once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.features.definitions import terminal_features
from stream_infer.labels.rows import FinalCounts

counts = st.dictionaries(
    st.sampled_from(["t0", "t1", "t2", "10", "x"]),
    st.dictionaries(
        st.integers(100, 170),
        st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))),
        max_size=40,
    ),
    max_size=5,
)


def expected(
    daily: dict[str, dict[int, tuple[int, int]]], days: list[int]
) -> dict[tuple[str, int], tuple[float, ...]]:
    return {
        (t, d): terminal_features(per, d)
        for t, per in daily.items()
        for d in days
        if any(x in per for x in range(d - 37, d - 7))
    }


def holder(daily: dict[str, dict[int, tuple[int, int]]], days: range) -> FinalCounts:
    by_day: dict[int, dict[str, tuple[int, int]]] = {}
    for t, per in daily.items():
        for d, c in per.items():
            by_day.setdefault(d, {})[t] = c
    held = FinalCounts()
    held.add(days, by_day)
    return held


@settings(max_examples=200, deadline=None)
@given(counts, st.integers(95, 220), st.integers(1, 20))
def test_rows_equal_terminal_features(
    daily: dict[str, dict[int, tuple[int, int]]], first: int, n_days: int
) -> None:
    days = list(range(first, first + n_days))
    held = holder(daily, range(first - 37, first + n_days))
    assert held.rows(days) == expected(daily, days)


def test_only_missing_days_are_loaded_and_old_ones_forgotten() -> None:
    daily = {"a": {100: (2, 1), 130: (1, 0)}}
    held = holder(daily, range(100, 131))
    assert held.missing(range(99, 133)) == [99, 131, 132]
    held.forget_before(120)
    assert held.missing(range(118, 122)) == [118, 119]
    assert len(held) == 11
    # Day 138 reads days 101..130: only day 130 is still needed, and held.
    assert held.rows([138]) == {("a", 138): terminal_features(daily["a"], 138)}


def test_no_counts_no_rows() -> None:
    assert FinalCounts().rows([]) == {}
    assert holder({}, range(0, 40)).rows([45]) == {}
