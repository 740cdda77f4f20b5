"""CachedDailyRows (a DailyRowSource over a daily-row store): each view's finality by its own
delay, empty rows (count/sum 0, others NaN) only when final, bounded waiting, one LRU over
every view, and triage saying what rows would say of any key."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.state.daily_cache import CachedDailyRows
from stream_infer.streamdef.daily_source import ASK, FINAL_EMPTY, NOT_FINAL, DailyRow, empty_row
from stream_infer.streamdef.spec import SECONDS_PER_DAY, AggSpec, DailyView

DAY = SECONDS_PER_DAY
SCORES = DailyView(
    "scores",
    "labels",
    "shop",
    "shop",
    3,
    (
        AggSpec("n_2d", "score", "count", 2 * DAY),
        AggSpec("low_2d", "score", "min", 2 * DAY),
        AggSpec("sd_5d", "score", "stddev", 5 * DAY),
    ),
)
COUNTS = DailyView("counts", "labels", "shop", "shop", 0, (AggSpec("n_1d", "x", "sum", DAY),))
ROW: DailyRow = (4.0, -1.5, 0.25)


class Store:
    def __init__(self, complete: int | None) -> None:
        self.complete = complete
        self.published: dict[tuple[str, str, int], DailyRow] = {}
        self.reads = 0

    def rows(
        self, view: str, keys: Iterable[tuple[str, int]]
    ) -> Mapping[tuple[str, int], DailyRow]:
        self.reads += 1
        return {k: self.published[(view, *k)] for k in keys if (view, *k) in self.published}

    def complete_through(self) -> int | None:
        return self.complete


def same(a: Mapping[tuple[str, int], DailyRow], b: Mapping[tuple[str, int], DailyRow]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def test_final_rows_and_empty_rows_follow_each_views_delay() -> None:
    store = Store(complete=96)
    store.published[("scores", "A", 100)] = ROW
    cache = CachedDailyRows(store, [SCORES, COUNTS])
    got = cache.rows("scores", [("A", 100), ("B", 100), ("A", 101)])
    assert same(got, {("A", 100): ROW, ("B", 100): empty_row(SCORES)})  # 101 needs 97
    (n, low, sd) = got[("B", 100)]
    assert n == 0.0 and math.isnan(low) and math.isnan(sd)
    # delay 0: day 97 reads day 96 and before, final; day 98 is not
    assert cache.rows("counts", [("A", 97), ("A", 98)]) == {("A", 97): (0.0,)}


def test_rows_are_cached_once_final_per_view() -> None:
    store = Store(complete=96)
    store.published[("scores", "A", 100)] = ROW
    cache = CachedDailyRows(store, [SCORES, COUNTS])
    cache.rows("scores", [("A", 100)])
    reads = store.reads
    assert cache.rows("scores", [("A", 100)]) == {("A", 100): ROW}
    assert store.reads == reads
    cache.rows("counts", [("A", 90)])  # another view's row of the same key: its own entry
    assert store.reads == reads + 1


def test_rows_before_the_stream_began_are_final_and_empty() -> None:
    store = Store(complete=None)
    cache = CachedDailyRows(store, [SCORES], wait_ms=10_000)
    # Day 100 reads days 92..96; the stream starts on day 97: nothing to wait for.
    assert same(cache.rows("scores", [("A", 100)], 97), {("A", 100): empty_row(SCORES)})
    assert store.reads == 0
    short = CachedDailyRows(store, [SCORES], wait_ms=20)
    assert short.rows("scores", [("A", 100)], 96) == {}
    assert short.misses == 1


def test_waits_for_the_label_processor_then_gives_up() -> None:
    store = Store(complete=95)
    cache = CachedDailyRows(store, [SCORES], wait_ms=2_000)

    def publish() -> None:
        store.published[("scores", "A", 100)] = ROW
        store.complete = 96

    timer = threading.Timer(0.1, publish)
    timer.start()
    assert cache.rows("scores", [("A", 100)]) == {("A", 100): ROW}
    timer.join()
    assert CachedDailyRows(Store(50), [SCORES], wait_ms=50).rows("scores", [("A", 100)]) == {}


def test_one_lru_over_every_view() -> None:
    store = Store(complete=96)
    store.published[("scores", "A", 100)] = ROW
    store.published[("counts", "A", 90)] = (2.0,)
    cache = CachedDailyRows(store, [SCORES, COUNTS], max_entries=1)
    cache.rows("scores", [("A", 100)])
    cache.rows("counts", [("A", 90)])  # evicts the scores row
    reads = store.reads
    assert cache.rows("scores", [("A", 100)]) == {("A", 100): ROW}
    assert store.reads == reads + 1


@settings(max_examples=200, deadline=None)
@given(
    view=st.sampled_from([SCORES, COUNTS]),
    days=st.lists(st.integers(80, 120), min_size=1, max_size=30),
    start=st.one_of(st.none(), st.integers(70, 120)),
    complete=st.one_of(st.none(), st.integers(70, 120)),
)
def test_triage_says_what_rows_would_say_of_any_key(
    view: DailyView, days: list[int], start: int | None, complete: int | None
) -> None:
    store = Store(complete=complete)
    row = ROW[: len(view.aggregations)]
    for day in days:
        store.published[(view.name, "A", day)] = row
    codes = CachedDailyRows(store, [view]).triage(view.name, np.array(days, dtype=np.int64), start)
    for day, code in zip(days, codes.tolist(), strict=True):
        fresh = CachedDailyRows(store, [view])  # nothing cached: the rule alone decides
        got = fresh.rows(view.name, [("A", day), ("Z", day)], stream_start_day=start)
        empty = empty_row(view)
        if code == FINAL_EMPTY:
            assert same(got, {("A", day): empty, ("Z", day): empty})
        elif code == NOT_FINAL:
            assert got == {}
        else:
            assert code == ASK and same(got, {("A", day): row, ("Z", day): empty})
