"""Write-behind saves are group-committed: one store call for every write set taken and not yet
saved, each later save of one of them returning at once, a failure leaving all of them unsaved."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pytest

from stream_infer.errors import StoreUnavailableError
from stream_infer.features.online import FeatureComputer, TxInput
from stream_infer.state.base import Entry

T0 = 1_700_000_000


class CountingStore:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Entry]] = {}
        self.saves = 0
        self.fail = False

    def load(self, customer_ids: Iterable[str]) -> dict[str, list[Entry]]:
        return {c: list(self.data.get(c, {}).values()) for c in customer_ids}

    def save(self, entries: Mapping[str, Sequence[Entry]]) -> None:
        if self.fail:
            raise StoreUnavailableError("down")
        self.saves += 1
        for cid, items in entries.items():
            for e in items:
                if not e.dropped:
                    self.data.setdefault(cid, {})[e.transaction_id] = e

    def first_day(self) -> int | None:
        return None

    def record_first_day(self, day: int) -> None:
        pass


def _batch(i: int) -> list[TxInput]:
    return [TxInput(f"x{i}-{k}", f"c{k}", "T", T0 + 60 * i, 1.0, 0, 10 * i + k) for k in range(3)]


def test_one_store_call_saves_every_write_set_taken_so_far() -> None:
    store = CountingStore()
    fc = FeatureComputer(store=store, write_behind=True)
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
    fc = FeatureComputer(store=store, write_behind=True, customer_cache_size=1)
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
    matrix, _ = fc.compute([TxInput("y", "c0", "T", T0 + 600, 1.0, 0, 99)])
    assert matrix[0, 3] == 3.0  # c0's two saved entries and this one
