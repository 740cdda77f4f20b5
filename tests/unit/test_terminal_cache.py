"""Terminal rows: exactly the event's day, zeros only when final, bounded waiting."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from stream_infer.features.online import ZERO_ROW, TerminalRow
from stream_infer.state.terminal_cache import CachedTerminalRows

ROW: TerminalRow = (5.0, 0.2, 9.0, 0.1, 30.0, 0.05)


class Store:
    def __init__(self, complete: int | None) -> None:
        self.complete = complete
        self.published: dict[tuple[str, int], TerminalRow] = {}
        self.reads = 0

    def rows(self, keys: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], TerminalRow]:
        self.reads += 1
        return {k: self.published[k] for k in keys if k in self.published}

    def complete_through(self) -> int | None:
        return self.complete


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
