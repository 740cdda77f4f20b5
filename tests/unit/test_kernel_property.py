"""The batch window kernel equals the definition, event by event, on random streams.

The reference is :class:`stream_infer.features.definitions.CustomerHistory` fed one event at a
time in arrival order, never pruned or evicted. The stream under test goes through
:class:`FeatureComputer` in batches (the columnar kernel, its pool, pruning, and with a store:
eviction, reload and write-behind saves one batch late). Streams mix in-order events, late
events (up to the one-day prune margin behind the customer's newest), same-second ties and
re-delivered duplicates (the same transaction, time, offset and amount again, in the same batch
or a later one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.features.definitions import (
    SECONDS_PER_DAY,
    CustomerHistory,
    request_features,
    request_matrix,
)
from stream_infer.features.online import FeatureComputer, TxInput
from stream_infer.state.base import Entry

T0 = 1_700_000_000
DAY = SECONDS_PER_DAY


class DictStore:
    """A customer store in a dict (idempotent by transaction id, deletions after additions)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Entry]] = {}

    def load(self, customer_ids: Iterable[str]) -> dict[str, list[Entry]]:
        return {c: list(self.data.get(c, {}).values()) for c in customer_ids}

    def save(self, entries: Mapping[str, Sequence[Entry]]) -> None:
        for cid, items in entries.items():
            hist = self.data.setdefault(cid, {})
            for e in items:
                if not e.dropped:
                    hist[e.transaction_id] = e
            for e in items:
                if e.dropped:
                    hist.pop(e.transaction_id, None)

    def first_day(self) -> int | None:
        return None

    def record_first_day(self, day: int) -> None:
        pass


@dataclass
class Step:
    customer: int
    kind: str  # "next", "tie", "late", "again"
    gap_s: int
    amount: float


steps = st.builds(
    Step,
    customer=st.integers(0, 3),
    kind=st.sampled_from(["next", "next", "next", "tie", "late", "again"]),
    gap_s=st.one_of(st.integers(1, 3 * DAY), st.integers(1, 120)),
    amount=st.integers(0, 100_000).map(lambda c: c / 100),
)


def events_of(plan: Sequence[Step]) -> list[TxInput]:
    """The stream a plan describes (offsets unique per transaction, as Kafka's are)."""
    newest: dict[int, int] = {}
    out: list[TxInput] = []
    for n, step in enumerate(plan):
        cid = f"c{step.customer}"
        last = newest.get(step.customer)
        if step.kind == "again" and out:
            out.append(out[(n * 7919) % len(out)])  # a re-delivery of an earlier event
            continue
        if last is None:
            t = T0
        elif step.kind == "tie":
            t = last
        elif step.kind == "late":
            t = last - min(step.gap_s, DAY - 1)  # within the one-day prune margin
        else:
            t = last + step.gap_s
        newest[step.customer] = max(t, last if last is not None else t)
        out.append(TxInput(f"x{n}", cid, "T", t, step.amount, step.customer % 2, n))
    return out


def reference(txs: Sequence[TxInput]) -> npt.NDArray[np.float64]:
    hists: dict[str, CustomerHistory] = {}
    rows = []
    for tx in txs:
        hist = hists.setdefault(tx.customer_id, CustomerHistory())
        rows.append(
            hist.features_at(hist.add(tx.epoch_seconds, tx.offset, tx.amount, tx.transaction_id))
        )
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def batched(
    fc: FeatureComputer, txs: Sequence[TxInput], cuts: Sequence[int]
) -> npt.NDArray[np.float64]:
    """``txs`` through ``fc`` in batches ending at ``cuts``; each write set saved one batch late."""
    parts = []
    late: list[Mapping[str, Sequence[Entry]]] = []
    lo = 0
    for hi in [*sorted(set(cuts)), len(txs)]:
        if hi <= lo:
            continue
        matrix, _ = fc.compute(txs[lo:hi])
        parts.append(matrix[:, 3:9])
        late.append(fc.state.take_pending())
        if len(late) > 1:
            fc.state.save(late.pop(0))
        lo = hi
    for writes in late:
        fc.state.save(writes)
    return np.concatenate(parts) if parts else np.empty((0, 6))


def assert_same(got: npt.NDArray[np.float64], want: npt.NDArray[np.float64]) -> None:
    np.testing.assert_array_equal(got[:, 0::2], want[:, 0::2])  # counts: exact
    np.testing.assert_allclose(got[:, 1::2], want[:, 1::2], rtol=1e-9, atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    plan=st.lists(steps, min_size=1, max_size=120), cuts=st.lists(st.integers(0, 120), max_size=12)
)
def test_batched_windows_equal_the_definition_in_memory(plan: list[Step], cuts: list[int]) -> None:
    txs = events_of(plan)
    assert_same(batched(FeatureComputer(), txs, cuts), reference(txs))


@settings(max_examples=100, deadline=None)
@given(
    plan=st.lists(steps, min_size=1, max_size=120),
    cuts=st.lists(st.integers(0, 120), max_size=12),
    cache=st.integers(1, 4),
)
def test_batched_windows_equal_the_definition_through_eviction_and_reload(
    plan: list[Step], cuts: list[int], cache: int
) -> None:
    txs = events_of(plan)
    fc = FeatureComputer(
        store=DictStore(), write_behind=True, customer_cache_size=cache, drop_delay_s=0
    )
    assert_same(batched(fc, txs, cuts), reference(txs))


@settings(max_examples=50, deadline=None)
@given(plan=st.lists(steps, min_size=1, max_size=80))
def test_a_replay_of_the_whole_stream_changes_nothing(plan: list[Step]) -> None:
    txs = events_of(plan)
    fc = FeatureComputer(store=DictStore(), write_behind=True)
    first = batched(fc, txs, [len(txs) // 2])
    again = batched(fc, txs, [len(txs) // 3])  # every event re-delivered, batched otherwise
    final = reference([*txs, *txs])[len(txs) :]
    assert_same(first, reference(txs))
    assert_same(again, final)


@given(
    seconds=st.lists(st.integers(0, 32_503_679_999), min_size=1, max_size=50),
    amount=st.floats(0, 1e9),
)
def test_request_matrix_is_request_features(seconds: list[int], amount: float) -> None:
    got = request_matrix(np.array(seconds, dtype=np.int64), np.full(len(seconds), amount))
    want = np.array([request_features(s, amount) for s in seconds])
    np.testing.assert_array_equal(got, want)
