"""CachedDailyRows (a DailyRowSource over a daily-row store): each view's finality by its own
delay, empty rows (count/sum 0, others NaN) only when final, bounded waiting, one LRU over
every view, triage saying what rows would say of any key, and the feature computer giving
the same features and flags with and without triage."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.features.compiled import FeatureComputer, unavailable_flag
from stream_infer.state import daily_cache
from stream_infer.state.daily_cache import CachedDailyRows
from stream_infer.streamdef.daily_source import (
    ASK,
    FINAL_EMPTY,
    NOT_FINAL,
    DailyRow,
    Ints,
    empty_row,
)
from stream_infer.streamdef.spec import SECONDS_PER_DAY, SEQ_COLUMN, AggSpec, DailyView

from .streamdef_fixtures import fraud_definitions

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


def test_the_cache_evicts_the_least_recently_used_row() -> None:
    store = Store(complete=96)
    for key in "ABC":
        store.published[("scores", key, 100)] = ROW
    cache = CachedDailyRows(store, [SCORES], max_entries=2)
    cache.rows("scores", [("A", 100)])
    cache.rows("scores", [("B", 100)])
    cache.rows("scores", [("A", 100)])  # A is now the most recently used
    cache.rows("scores", [("C", 100)])  # evicts B, not A (the first in)
    reads = store.reads
    assert cache.rows("scores", [("A", 100), ("C", 100)]) == {("A", 100): ROW, ("C", 100): ROW}
    assert store.reads == reads
    assert cache.rows("scores", [("B", 100)]) == {("B", 100): ROW}
    assert store.reads == reads + 1


def test_a_batch_larger_than_the_cache_gets_all_its_rows() -> None:
    store = Store(complete=96)
    keys = [(f"K{i}", 100) for i in range(10)]
    for key in keys:
        store.published[("scores", *key)] = ROW
    got = CachedDailyRows(store, [SCORES], max_entries=3).rows("scores", keys)
    assert got == dict.fromkeys(keys, ROW)


def test_a_waiting_cache_never_calls_a_day_not_final() -> None:
    cache = CachedDailyRows(Store(complete=None), [SCORES], wait_ms=50)
    assert cache.triage("scores", np.array([100, 101]), None).tolist() == [ASK, ASK]


class AskAlways:
    """The same cache with no triage: every event's row looked up key by key."""

    def __init__(self, inner: CachedDailyRows) -> None:
        self.inner = inner

    def rows(
        self, view: str, keys: Iterable[tuple[str, int]], stream_start_day: int | None = None
    ) -> Mapping[tuple[str, int], DailyRow]:
        return self.inner.rows(view, keys, stream_start_day)

    def triage(self, view: str, days: Ints, stream_start_day: int | None = None) -> Ints:
        return np.full(len(days), ASK, dtype=np.int64)


def test_features_and_flags_are_the_same_with_and_without_triage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The watermark read afresh for every batch: both computers see the same one.
    monkeypatch.setattr(daily_cache, "_WATERMARK_TTL_S", 0.0)
    defs = fraud_definitions()
    (view,) = defs.daily_views
    daily = [j for j, name in enumerate(defs.inputs) if name.startswith("terminal_")]
    published: DailyRow = (5.0, 1.0, 10.0, 1.0, 30.0, 1.5)  # counts and fraud sums
    rng = np.random.default_rng(7)
    store = Store(complete=None)
    fast = FeatureComputer(defs, CachedDailyRows(store, [view]))
    slow = FeatureComputer(defs, AskAlways(CachedDailyRows(store, [view])))
    flags = set()
    for batch, day in enumerate(range(100, 116)):
        if day >= 106:  # labels arrive: some rows published, the watermark moves (or lags)
            store.complete = day - 8 if day % 2 else day - 9
            for t in range(0, 20, 3):
                store.published[(view.name, f"T{t}", day)] = published
        n = 64
        events = {
            "transaction_id": np.array([f"tx{batch}-{i}" for i in range(n)], dtype=object),
            "customer_id": np.array([f"C{c}" for c in rng.integers(0, 30, n)], dtype=object),
            "terminal_id": np.array([f"T{t}" for t in rng.integers(0, 20, n)], dtype=object),
            "tx_datetime": day * DAY + np.sort(rng.integers(0, DAY, n)),
            "tx_amount": rng.uniform(1, 100, n),
            SEQ_COLUMN: np.arange(batch * n, (batch + 1) * n, dtype=np.int64),
        }
        got, want = fast.compute(events), slow.compute(events)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1] == want[1]
        flags.update(got[1])
        hits = sum((view.name, t, day) in store.published for t in events["terminal_id"])
        # Days up to 107 read only days before the stream began (day 100): final and empty.
        final = day > 107 and day % 2 == 1
        assert bool(np.any(got[0][:, daily] != 0)) == (hits > 0 and final)
    assert flags == {(), (unavailable_flag(view),)}  # both kinds of day were seen
    assert unavailable_flag(view) == "terminal_features_unavailable"
