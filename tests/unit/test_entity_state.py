"""Entity state over the compiled kernel: bounded LRU, write-behind across eviction, pruning
(amortised: at most PRUNE_AT entries past the reach per entity), the drop delay, retry after
failure, read-only callers. The fraud example's definitions; features held to the reference."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from stream_infer.errors import StoreUnavailableError
from stream_infer.features.compiled import FeatureComputer as _Computer
from stream_infer.state.entities import EntityState
from stream_infer.state.entity_rows import EntityRows, EntityWriteSet, StoredEntry
from stream_infer.state.sqlite_entities import SqliteEntityStore
from stream_infer.streamdef.kernel import PRUNE_AT
from stream_infer.streamdef.reference import stream_features
from stream_infer.streamdef.spec import SECONDS_PER_DAY, SEQ_COLUMN

from .fraud_defs import fraud_defs

T0 = 1_700_000_000
DAY = SECONDS_PER_DAY
KEEP_S = 30 * DAY + DAY  # the longest window plus the default margin: one day
Tx = dict[str, Any]


class MemoryStore:
    """An EntityStore in a dict; ``fail`` names calls that raise (once each) as a store would."""

    def __init__(self) -> None:
        self.data: dict[str, dict[Any, StoredEntry]] = {}
        self.fail: set[str] = set()
        self.loads: list[list[str]] = []
        self.first: int | None = None
        self.lock = threading.Lock()  # saved from a writer thread, as a real store is

    def _maybe_fail(self, call: str) -> None:
        if call in self.fail:
            self.fail.discard(call)
            raise StoreUnavailableError(f"{call}: store down")

    def load(self, keys: Iterable[str]) -> dict[str, list[StoredEntry]]:
        ids = list(keys)
        self._maybe_fail("load")
        with self.lock:
            self.loads.append(ids)
            return {c: list(self.data.get(c, {}).values()) for c in ids}

    def save(self, writes: EntityWriteSet) -> None:
        self._maybe_fail("save")
        with self.lock:
            for key, event_id, t, s, data in writes.added.json_rows():
                self.data.setdefault(key, {})[event_id] = StoredEntry(event_id, t, s, data)
            for key, event_id in zip(writes.dropped.keys, writes.dropped.ids, strict=True):
                hist = self.data.get(key, {})
                hist.pop(event_id, None)
                if not hist:
                    self.data.pop(key, None)

    def first_day(self) -> int | None:
        self._maybe_fail("first_day")
        return self.first

    def record_first_day(self, day: int) -> None:
        self._maybe_fail("record_first_day")
        self.first = day if self.first is None else min(self.first, day)

    def entries(self) -> int:
        return sum(len(h) for h in self.data.values())


def FeatureComputer(**kw: Any) -> _Computer:
    return _Computer(fraud_defs(), **kw)


def tx(n: int, customer: str, t: int, amount: float = 10.0, partition: int = 0) -> Tx:
    return {
        "transaction_id": f"x{n}",
        "customer_id": customer,
        "terminal_id": "T1",
        "tx_datetime": t,
        "tx_amount": amount,
        "partition": partition,
        SEQ_COLUMN: n,
    }


def columns(txs: Sequence[Tx]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {
        name: np.array([t[name] for t in txs], dtype=object)
        for name in ("transaction_id", "customer_id", "terminal_id")
    }
    out["tx_datetime"] = np.array([t["tx_datetime"] for t in txs], dtype=np.int64)
    out["tx_amount"] = np.array([t["tx_amount"] for t in txs], dtype=np.float64)
    out[SEQ_COLUMN] = np.array([t[SEQ_COLUMN] for t in txs], dtype=np.int64)
    return out


def compute(fc: _Computer, txs: Sequence[Tx]) -> tuple[npt.NDArray[np.float64], Any]:
    parts = np.array([t["partition"] for t in txs], dtype=np.int64)
    return fc.compute(columns(txs), parts)


def stream(customers: int, events: int, step_s: int = 3600, partitions: int = 1) -> list[Tx]:
    """Events in time order, customers in turn with varied amounts."""
    return [
        tx(
            i,
            f"c{i % customers}",
            T0 + i * step_s,
            1.0 + (i * 7) % 13,
            (i % customers) % partitions,
        )
        for i in range(events)
    ]


def reference(txs: Sequence[Tx]) -> npt.NDArray[np.float64]:
    """The stream features each event must get (the reference evaluator, nothing evicted)."""
    cols = {name: values.tolist() for name, values in columns(txs).items()}
    feats = stream_features(fraud_defs(), cols)
    return np.array([feats[name] for name in fraud_defs().stream_features()]).T


def customer_columns(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    inputs = fraud_defs().inputs
    return matrix[:, [inputs.index(n) for n in fraud_defs().stream_features()]]


def run(fc: _Computer, txs: Sequence[Tx], batch: int) -> npt.NDArray[np.float64]:
    """Batches through ``fc``, each batch's writes saved before the next (as the worker does)."""
    parts = []
    for i in range(0, len(txs), batch):
        matrix, _ = compute(fc, txs[i : i + batch])
        fc.state.save(fc.state.take_pending())
        parts.append(customer_columns(matrix))
    return np.concatenate(parts)


def test_memory_is_bounded_and_evicted_customers_reload_exactly() -> None:
    store = MemoryStore()
    fc = FeatureComputer(store=store, write_behind=True, entity_cache_size=4)
    txs = stream(customers=12, events=600, step_s=1800)
    got = run(fc, txs, batch=5)
    np.testing.assert_array_equal(got, reference(txs))
    assert fc.state.entities() <= 4
    assert fc.state.unsaved() == 0
    assert sum(len(ids) for ids in store.loads) > 12  # evicted customers were reloaded


def test_unsaved_entries_survive_eviction_and_reload() -> None:
    store = MemoryStore()
    fc = FeatureComputer(store=store, write_behind=True, entity_cache_size=2)
    first = [tx(0, "a", T0), tx(1, "a", T0 + 60)]
    compute(fc, first)
    writes = fc.state.take_pending()  # taken by the worker, not saved yet
    # Three other customers evict "a" from a cache of two.
    compute(fc, [tx(2, "b", T0 + 120), tx(3, "c", T0 + 180), tx(4, "d", T0 + 240)])
    assert store.data == {}
    matrix, _ = compute(fc, [tx(5, "a", T0 + 300)])
    assert matrix[0, 3] == 3.0  # the reloaded "a" still has both unsaved entries
    fc.state.save(writes)  # the save completes afterwards
    assert set(store.data["a"]) == {"x0", "x1"}


def test_write_behind_on_another_thread_never_changes_features() -> None:
    store = MemoryStore()
    fc = FeatureComputer(store=store, write_behind=True, entity_cache_size=3)
    txs = stream(customers=9, events=900, step_s=900)
    work: queue.Queue[EntityWriteSet | None] = queue.Queue(maxsize=8)

    def writer() -> None:
        while (writes := work.get()) is not None:
            fc.state.save(writes)

    thread = threading.Thread(target=writer)
    thread.start()
    parts = []
    for i in range(0, len(txs), 4):
        matrix, _ = compute(fc, txs[i : i + 4])
        work.put(fc.state.take_pending())
        parts.append(customer_columns(matrix))
    work.put(None)
    thread.join()
    # However the saves interleave with the reloads, every event gets its exact features.
    np.testing.assert_array_equal(np.concatenate(parts), reference(txs))
    assert fc.state.unsaved() == 0


def test_a_batch_larger_than_the_cache_keeps_its_histories() -> None:
    store = MemoryStore()
    fc = FeatureComputer(store=store, write_behind=True, entity_cache_size=3)
    # 8 customers twice each in one batch, a cache of 3: the second visit needs the first.
    txs = [tx(i, f"c{i % 8}", T0 + i, 5.0) for i in range(16)]
    matrix, _ = compute(fc, txs)
    assert matrix[8:, 3].tolist() == [2.0] * 8
    assert fc.state.entities() == 3


def test_drop_partitions_forgets_only_those_customers() -> None:
    store = MemoryStore()
    fc = FeatureComputer(store=store, write_behind=True)
    txs = stream(customers=6, events=12, partitions=2)
    run(fc, txs, batch=12)
    assert fc.state.entities() == 6
    fc.state.drop_partitions([1])
    assert fc.state.entities() == 3
    loads = len(store.loads)
    matrix, _ = compute(fc, [tx(99, "c1", T0 + 13 * 3600, partition=1)])
    assert store.loads[loads:] == [["c1"]]  # reloaded from the store
    assert matrix[0, 3] == 3.0


@pytest.mark.parametrize("call", ["load", "first_day", "record_first_day"])
def test_a_failed_store_read_changes_nothing_and_the_retry_is_exact(call: str) -> None:
    store = MemoryStore()
    txs = stream(customers=8, events=64)
    run(FeatureComputer(store=store, write_behind=True), txs[:32], batch=8)
    fc = FeatureComputer(store=store, write_behind=True, entity_cache_size=4)  # a restart
    batch = txs[32:40]
    if call == "record_first_day":  # an event from before the stream's first day
        batch = [*batch, tx(500, "early", T0 - 3 * DAY)]
    store.fail.add(call)
    with pytest.raises(StoreUnavailableError):
        compute(fc, batch)
    assert not fc.state.take_pending()
    assert fc.state.entities() == 0
    retried, _ = compute(fc, batch)
    np.testing.assert_array_equal(customer_columns(retried), reference([*txs[:32], *batch])[32:])
    assert store.first == (T0 - 3 * DAY if call == "record_first_day" else T0) // DAY


def test_a_failed_save_keeps_its_entries_for_the_retry() -> None:
    store = MemoryStore()
    fc = FeatureComputer(store=store)  # saves inside compute
    txs = stream(customers=3, events=9)
    compute(fc, txs[:6])
    store.fail.add("save")
    with pytest.raises(StoreUnavailableError):
        compute(fc, txs[6:])
    retried, _ = compute(fc, txs[6:])
    np.testing.assert_array_equal(customer_columns(retried), reference(txs)[6:])
    assert store.entries() == 9


def test_the_worker_retries_a_failed_write_behind_save() -> None:
    store = MemoryStore()
    fc = FeatureComputer(store=store, write_behind=True, entity_cache_size=2)
    compute(fc, [tx(0, "a", T0)])
    writes = fc.state.take_pending()
    store.fail.add("save")
    with pytest.raises(StoreUnavailableError):
        fc.state.save(writes)
    assert fc.state.unsaved() == 1
    fc.state.save(writes)
    assert fc.state.unsaved() == 0
    assert list(store.data["a"]) == ["x0"]


def test_store_keeps_only_what_a_window_can_reach() -> None:
    store = MemoryStore()
    fc = FeatureComputer(store=store, write_behind=True, entity_cache_size=2, drop_delay_s=0)
    txs = stream(customers=3, events=3 * 24 * 90, step_s=1200)  # 90 days, 24 a day each
    got = run(fc, txs, batch=64)
    np.testing.assert_array_equal(got, reference(txs))
    newest = txs[-1]["tx_datetime"]
    for cid, hist in store.data.items():
        times = [e.time for e in hist.values()]
        # A customer's newest is this close; pruning waits for PRUNE_AT entries out of reach.
        slack = PRUNE_AT * 3 * 1200
        assert min(times) > newest - KEEP_S - 3 * 1200 - slack, cid
        assert max(times) - min(times) <= KEEP_S + slack


def test_a_late_event_within_the_margin_gets_exact_features() -> None:
    store = MemoryStore()
    fc = FeatureComputer(store=store, write_behind=True, entity_cache_size=1, drop_delay_s=0)
    txs = [tx(i, "a", T0 + i * DAY // 4) for i in range(4 * 60)]  # 60 days, 4 a day
    late = tx(10_000, "a", txs[-1]["tx_datetime"] - DAY + 60)  # 23 h 59 min late
    run(fc, txs, batch=16)
    fc.state.drop_partitions([0])  # reload from the pruned store
    matrix, _ = compute(fc, [late])
    np.testing.assert_array_equal(customer_columns(matrix), reference([*txs, late])[-1:])


def test_saving_the_same_write_set_twice_changes_nothing(tmp_path: Path) -> None:
    db = SqliteEntityStore(tmp_path / "state.db")
    fc = FeatureComputer(store=db, write_behind=True, drop_delay_s=0)
    txs = stream(customers=2, events=2 * 4 * 40, step_s=DAY // 8)
    for i in range(0, len(txs), 32):
        compute(fc, txs[i : i + 32])
        writes = fc.state.take_pending()
        fc.state.save(writes)
        before = db.load(["c0", "c1"])
        fc.state.save(writes)  # a re-delivered write, dropped entries and all
        assert db.load(["c0", "c1"]) == before
    # 31 days of 4 a day per customer (plus the one on the boundary second, plus what waits
    # for the next amortised prune), never 40 days.
    assert db.entries() <= 2 * (4 * 31 + 1 + PRUNE_AT)
    db.close()


def test_entries_past_the_window_in_the_store_are_dropped_on_load() -> None:
    store = MemoryStore()
    width = 8  # the fraud example's row: tx_amount, its running sum, 6 features
    old = EntityRows(
        ["a"] * 5,
        [f"old{i}" for i in range(5)],
        np.array([T0 + i * 3600 for i in range(5)]),
        np.arange(5),
        np.ones((5, width)),
    )
    store.save(EntityWriteSet([0], old, EntityRows.empty(width)))
    fc = FeatureComputer(store=store, write_behind=True, drop_delay_s=0)
    matrix, _ = compute(fc, [tx(1, "a", T0 + 40 * DAY)])
    fc.state.save(fc.state.take_pending())
    assert list(store.data["a"]) == ["x1"]
    assert matrix[0, 3] == 1.0


def test_the_store_deletes_only_once_the_drop_delay_has_passed() -> None:
    store = MemoryStore()
    now = [0.0]
    fc = FeatureComputer(store=store, write_behind=True)
    fc.state = EntityState(fraud_defs(), store, drop_delay_s=10.0, clock=lambda: now[0])
    txs = [tx(i, "a", T0 + i * DAY // 4) for i in range(4 * 80)]  # 80 days, 4 a day
    run(fc, txs, batch=8)
    newest = txs[-1]["tx_datetime"]
    reach = sum(t["tx_datetime"] > newest - KEEP_S for t in txs)
    assert len(store.data["a"]) == len(txs)  # out of reach, but not due yet
    waiting = fc.state.drops_waiting()
    assert len(txs) - reach - PRUNE_AT < waiting <= len(txs) - reach
    now[0] = 10.0
    fc.state.save(fc.state.take_pending())
    assert len(store.data["a"]) == len(txs) - waiting
    assert fc.state.drops_waiting() == 0


def test_events_replayed_after_a_crash_get_their_first_features() -> None:
    # A replay faster than real time: the crashed worker saved state 60 days ahead of the
    # offsets it committed. The drops it recorded were not due yet, so the store still holds
    # what the re-delivered events were first scored with.
    store = MemoryStore()
    txs = stream(customers=3, events=3 * 4 * 60, step_s=DAY // 12)
    first = FeatureComputer(store=store, write_behind=True)
    run(first, txs, batch=32)
    restarted = FeatureComputer(store=store, write_behind=True, entity_cache_size=2)
    committed = 64
    got = run(restarted, txs[committed:], batch=32)
    np.testing.assert_array_equal(got, reference(txs)[committed:])


def test_read_only_reloads_every_call_and_writes_nothing() -> None:
    store = MemoryStore()
    writer = FeatureComputer(store=store, write_behind=True)
    run(writer, stream(customers=2, events=4), batch=4)
    reader = FeatureComputer(store=store, persist=False, cache=False)
    probe = [tx(50, "c0", T0 + 10 * 3600)]
    for _ in range(2):
        matrix, _ = compute(reader, probe)
        assert matrix[0, 3] == 3.0  # c0's two stored entries and the probe
    assert store.loads[-2:] == [["c0"], ["c0"]]
    assert not reader.state.take_pending()
    assert store.entries() == 4
