"""Terminal rows (today's computer, read through the generic daily rows of the fraud view):
exactly the event's day, zeros only when final, bounded waiting."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.features.online import (
    ASK,
    FINAL_ZEROS,
    FLAG_TERMINAL_MISSING,
    NOT_FINAL,
    ZERO_ROW,
    FeatureComputer,
    Ints,
    TerminalRow,
    TxColumns,
    ask_all,
)
from stream_infer.state import daily_cache
from stream_infer.state.terminal_cache import TERMINAL_VIEW, CachedTerminalRows, terminal_row
from stream_infer.streamdef.daily_source import DailyRow

#: A published terminal_counts row (counts and fraud sums) and today's row it reads as.
PUBLISHED: DailyRow = (5.0, 1.0, 10.0, 1.0, 30.0, 1.5)
ROW: TerminalRow = (5.0, 0.2, 10.0, 0.1, 30.0, 0.05)


class Store:
    """A daily-row store of the fraud view; ``published`` holds today's rows' keys."""

    def __init__(self, complete: int | None) -> None:
        self.complete = complete
        self.published: dict[tuple[str, int], TerminalRow] = {}
        self.reads = 0

    def rows(
        self, view: str, keys: Iterable[tuple[str, int]]
    ) -> Mapping[tuple[str, int], DailyRow]:
        assert view == TERMINAL_VIEW.name
        self.reads += 1
        assert all(v == ROW for v in self.published.values())
        return {k: PUBLISHED for k in keys if k in self.published}

    def complete_through(self) -> int | None:
        return self.complete


def test_published_counts_read_as_todays_risks() -> None:
    assert terminal_row(PUBLISHED) == ROW
    assert terminal_row((0.0,) * 6) == ZERO_ROW


def test_final_day_rows_and_zero_rows() -> None:
    store = Store(complete=92)
    store.published[("A", 100)] = ROW
    rows = CachedTerminalRows(store).rows([("A", 100), ("B", 100), ("A", 101)])
    assert rows == {("A", 100): ROW, ("B", 100): ZERO_ROW}  # day 101 needs 93 complete


def test_rows_are_cached_once_final() -> None:
    store = Store(complete=92)
    store.published[("A", 100)] = ROW
    cache = CachedTerminalRows(store)
    cache.rows([("A", 100)])
    reads = store.reads
    assert cache.rows([("A", 100)]) == {("A", 100): ROW}
    assert store.reads == reads


def test_rows_before_the_stream_began_are_final_zeros() -> None:
    store = Store(complete=None)  # no label processed yet
    cache = CachedTerminalRows(store, wait_ms=10_000)
    # Day 100 reads days 63..92; the stream's data starts on day 93: nothing to wait for.
    assert cache.rows([("A", 100)], stream_start_day=93) == {("A", 100): ZERO_ROW}
    assert store.reads == 0
    short = CachedTerminalRows(store, wait_ms=20)
    assert short.rows([("A", 100)], stream_start_day=92) == {}  # day 92 may have labels
    assert short.misses == 1


def test_waits_for_the_label_processor_then_gives_up() -> None:
    store = Store(complete=91)
    cache = CachedTerminalRows(store, wait_ms=2_000)

    def publish() -> None:
        store.published[("A", 100)] = ROW
        store.complete = 92

    timer = threading.Timer(0.1, publish)
    timer.start()
    assert cache.rows([("A", 100)]) == {("A", 100): ROW}
    timer.join()
    short = CachedTerminalRows(Store(complete=50), wait_ms=50)
    assert short.rows([("A", 100)]) == {}


def test_the_cache_evicts_the_least_recently_used_row() -> None:
    store = Store(complete=92)
    for terminal in "ABC":
        store.published[(terminal, 100)] = ROW
    cache = CachedTerminalRows(store, max_entries=2)
    cache.rows([("A", 100)])
    cache.rows([("B", 100)])
    cache.rows([("A", 100)])  # A is now the most recently used
    cache.rows([("C", 100)])  # evicts B, not A (the first in)
    reads = store.reads
    assert cache.rows([("A", 100), ("C", 100)]) == {("A", 100): ROW, ("C", 100): ROW}
    assert store.reads == reads
    assert cache.rows([("B", 100)]) == {("B", 100): ROW}
    assert store.reads == reads + 1


def test_a_batch_larger_than_the_cache_gets_all_its_rows() -> None:
    store = Store(complete=92)
    keys = [(f"T{i}", 100) for i in range(10)]
    for key in keys:
        store.published[key] = ROW
    assert CachedTerminalRows(store, max_entries=3).rows(keys) == dict.fromkeys(keys, ROW)


@settings(max_examples=200, deadline=None)
@given(
    days=st.lists(st.integers(80, 120), min_size=1, max_size=40),
    start=st.one_of(st.none(), st.integers(70, 120)),
    complete=st.one_of(st.none(), st.integers(70, 120)),
)
def test_triage_says_what_rows_would_say_of_any_terminal(
    days: list[int], start: int | None, complete: int | None
) -> None:
    store = Store(complete=complete)
    for day in days:
        store.published[("A", day)] = ROW
    codes = CachedTerminalRows(store).triage(np.array(days, dtype=np.int64), start)
    for day, code in zip(days, codes.tolist(), strict=True):
        fresh = CachedTerminalRows(store)  # nothing cached: the rule alone decides
        got = fresh.rows([("A", day), ("Z", day)], stream_start_day=start)
        if code == FINAL_ZEROS:
            assert got == {("A", day): ZERO_ROW, ("Z", day): ZERO_ROW}
        elif code == NOT_FINAL:
            assert got == {}
        else:
            assert code == ASK and got == {("A", day): ROW, ("Z", day): ZERO_ROW}


def test_a_waiting_cache_never_calls_a_day_not_final() -> None:
    cache = CachedTerminalRows(Store(complete=None), wait_ms=50)
    assert cache.triage(np.array([100, 101]), None).tolist() == [ASK, ASK]


class AskAlways:
    """The same cache with no triage: every event's row looked up key by key."""

    def __init__(self, inner: CachedTerminalRows) -> None:
        self.inner = inner

    def rows(
        self, keys: Iterable[tuple[str, int]], stream_start_day: int | None = None
    ) -> Mapping[tuple[str, int], TerminalRow]:
        return self.inner.rows(keys, stream_start_day)

    def triage(self, days: Ints, stream_start_day: int | None = None) -> Ints:
        return ask_all(days)


def test_features_and_flags_are_the_same_with_and_without_triage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The watermark read afresh for every batch: both computers see the same one.
    monkeypatch.setattr(daily_cache, "_WATERMARK_TTL_S", 0.0)
    rng = np.random.default_rng(7)
    store = Store(complete=None)
    fast = FeatureComputer(CachedTerminalRows(store))
    slow = FeatureComputer(AskAlways(CachedTerminalRows(store)))
    flags = set()
    for batch, day in enumerate(range(100, 116)):
        if day >= 106:  # labels arrive: some rows published, the watermark moves (or lags)
            store.complete = day - 8 if day % 2 else day - 9
            for t in range(0, 20, 3):
                store.published[(f"T{t}", day)] = ROW
        n = 64
        cols = TxColumns(
            [f"tx{batch}-{i}" for i in range(n)],
            [f"C{c}" for c in rng.integers(0, 30, n)],
            [f"T{t}" for t in rng.integers(0, 20, n)],
            day * SECONDS_PER_DAY + np.sort(rng.integers(0, SECONDS_PER_DAY, n)),
            rng.uniform(1, 100, n),
            np.zeros(n, dtype=np.int64),
            np.arange(batch * n, (batch + 1) * n, dtype=np.int64),
        )
        got, want = fast.compute_columns(cols), slow.compute_columns(cols)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1] == want[1]
        flags.update(got[1])
        published = sum((t, day) in store.published for t in cols.terminal_ids)
        # Days up to 107 read only days before the stream began (day 100): final zeros.
        final = day > 107 and day % 2 == 1
        assert bool(np.any(got[0][:, 9:15] != 0)) == (published > 0 and final)
    assert flags == {(), (FLAG_TERMINAL_MISSING,)}  # both kinds of day were seen
