"""Write-behind saves are group-committed: one store call for every write set taken and not yet
saved, each later save of one of them returning at once, a failure leaving all of them unsaved."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from stream_infer.errors import StoreUnavailableError
from stream_infer.features.compiled import FeatureComputer
from stream_infer.state.entity_rows import EntityWriteSet, StoredEntry
from stream_infer.streamdef.spec import SEQ_COLUMN

from .fraud_defs import fraud_defs

T0 = 1_700_000_000


class CountingStore:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, StoredEntry]] = {}
        self.saves = 0
        self.fail = False

    def load(self, keys: Iterable[str]) -> dict[str, list[StoredEntry]]:
        return {c: list(self.data.get(c, {}).values()) for c in keys}

    def save(self, writes: EntityWriteSet) -> None:
        if self.fail:
            raise StoreUnavailableError("down")
        self.saves += 1
        for key, eid, t, s, data in writes.added.json_rows():
            self.data.setdefault(key, {})[eid] = StoredEntry(eid, t, s, data)

    def first_day(self) -> int | None:
        return None

    def record_first_day(self, day: int) -> None:
        pass


def _events(rows: list[tuple[str, str, int, int]]) -> dict[str, np.ndarray]:
    """Event columns of (id, customer, time, seq) rows, amount 1.0 on terminal T."""
    return {
        "transaction_id": np.array([r[0] for r in rows], dtype=object),
        "customer_id": np.array([r[1] for r in rows], dtype=object),
        "terminal_id": np.array(["T"] * len(rows), dtype=object),
        "tx_datetime": np.array([r[2] for r in rows], dtype=np.int64),
        "tx_amount": np.ones(len(rows)),
        SEQ_COLUMN: np.array([r[3] for r in rows], dtype=np.int64),
    }


def _batch(i: int) -> dict[str, np.ndarray]:
    return _events([(f"x{i}-{k}", f"c{k}", T0 + 60 * i, 10 * i + k) for k in range(3)])


def test_one_store_call_saves_every_write_set_taken_so_far() -> None:
    store = CountingStore()
    fc = FeatureComputer(fraud_defs(), store=store, write_behind=True)
    taken = []
    for i in range(3):
        fc.compute(_batch(i))
        taken.append(fc.state.take_pending())
    assert fc.state.unsaved() == 9
    fc.state.save(taken[0])
    assert store.saves == 1 and sum(len(h) for h in store.data.values()) == 9
    assert fc.state.unsaved() == 0
    fc.state.save(taken[1])  # durable already: no second store call
    fc.state.save(taken[2])
    assert store.saves == 1


def test_a_failed_group_leaves_every_write_set_unsaved_for_the_retry() -> None:
    store = CountingStore()
    fc = FeatureComputer(fraud_defs(), store=store, write_behind=True, entity_cache_size=1)
    fc.compute(_batch(0))
    first = fc.state.take_pending()
    fc.compute(_batch(1))  # evicts customers with unsaved entries (kept aside)
    second = fc.state.take_pending()
    store.fail = True
    with pytest.raises(StoreUnavailableError):
        fc.state.save(first)
    assert fc.state.unsaved() == 6
    store.fail = False
    fc.state.save(first)  # the worker's retry of the same call
    fc.state.save(second)
    assert store.saves == 1 and fc.state.unsaved() == 0
    matrix, _ = fc.compute(_events([("y", "c0", T0 + 600, 99)]))
    assert matrix[0, 3] == 3.0  # c0's two saved entries and this one
