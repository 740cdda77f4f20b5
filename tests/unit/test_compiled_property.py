"""The compiled feature computer equals the reference evaluator, event by event, on random
streams of the fraud example, through the entity state: batches cut anywhere, eviction and
reload from a store, write-behind saves one batch late, and a replay of the whole stream.

Streams mix in-order events, late events (up to the one-day prune margin behind the entity's
newest), same-second ties and re-delivered duplicates (the same event again, in the same batch
or a later one). The reference is :func:`stream_infer.streamdef.reference.stream_features`,
never pruned or evicted. (Random definitions are tests/unit/test_streamdef_kernel_property.py's.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.features.compiled import FeatureComputer
from stream_infer.state.entity_rows import EntityWriteSet, StoredEntry
from stream_infer.streamdef.reference import stream_features
from stream_infer.streamdef.spec import SECONDS_PER_DAY, SEQ_COLUMN

from .fraud_defs import fraud_defs

T0 = 1_700_000_000
DAY = SECONDS_PER_DAY
Tx = tuple[str, str, int, float, int, int]  # id, customer, time, amount, partition, seq


class DictStore:
    """An entity store in a dict (idempotent by event id, deletions after additions)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[Any, StoredEntry]] = {}

    def load(self, keys: Iterable[str]) -> dict[str, list[StoredEntry]]:
        return {k: list(self.data.get(k, {}).values()) for k in keys}

    def save(self, writes: EntityWriteSet) -> None:
        for key, eid, t, s, data in writes.added.json_rows():
            self.data.setdefault(key, {}).setdefault(eid, StoredEntry(eid, t, s, data))
        for key, eid in zip(writes.dropped.keys, writes.dropped.ids, strict=True):
            self.data.get(key, {}).pop(eid, None)

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


def events_of(plan: Sequence[Step]) -> list[Tx]:
    """The stream a plan describes (seqs unique per event, as Kafka's offsets are)."""
    newest: dict[int, int] = {}
    out: list[Tx] = []
    for n, step in enumerate(plan):
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
        out.append((f"x{n}", f"c{step.customer}", t, step.amount, step.customer % 2, n))
    return out


def columns(txs: Sequence[Tx]) -> dict[str, np.ndarray]:
    return {
        "transaction_id": np.array([t[0] for t in txs], dtype=object),
        "customer_id": np.array([t[1] for t in txs], dtype=object),
        "terminal_id": np.array(["T"] * len(txs), dtype=object),
        "tx_datetime": np.array([t[2] for t in txs], dtype=np.int64),
        "tx_amount": np.array([t[3] for t in txs], dtype=np.float64),
        SEQ_COLUMN: np.array([t[5] for t in txs], dtype=np.int64),
    }


def reference(txs: Sequence[Tx]) -> npt.NDArray[np.float64]:
    feats = stream_features(fraud_defs(), {k: v.tolist() for k, v in columns(txs).items()})
    return np.array([feats[n] for n in fraud_defs().stream_features()]).T.reshape(len(txs), -1)


def batched(fc: FeatureComputer, txs: Sequence[Tx], cuts: Sequence[int]) -> npt.NDArray[Any]:
    """``txs`` through ``fc`` in batches ending at ``cuts``; each write set saved one batch late."""
    defs = fraud_defs()
    at = [defs.inputs.index(n) for n in defs.stream_features()]
    parts = []
    late: list[EntityWriteSet] = []
    lo = 0
    for hi in [*sorted(set(cuts)), len(txs)]:
        if hi <= lo:
            continue
        batch = txs[lo:hi]
        matrix, _ = fc.compute(columns(batch), np.array([t[4] for t in batch], dtype=np.int64))
        parts.append(matrix[:, at])
        late.append(fc.state.take_pending())
        if len(late) > 1:
            fc.state.save(late.pop(0))
        lo = hi
    for writes in late:
        fc.state.save(writes)
    return np.concatenate(parts) if parts else np.empty((0, len(at)))


def assert_same(got: npt.NDArray[np.float64], want: npt.NDArray[np.float64]) -> None:
    np.testing.assert_array_equal(got[:, 0::2], want[:, 0::2])  # counts: exact
    np.testing.assert_allclose(got[:, 1::2], want[:, 1::2], rtol=1e-9, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    plan=st.lists(steps, min_size=1, max_size=120), cuts=st.lists(st.integers(0, 120), max_size=12)
)
def test_batched_features_equal_the_reference_in_memory(plan: list[Step], cuts: list[int]) -> None:
    txs = events_of(plan)
    assert_same(batched(FeatureComputer(fraud_defs()), txs, cuts), reference(txs))


@settings(max_examples=80, deadline=None)
@given(
    plan=st.lists(steps, min_size=1, max_size=120),
    cuts=st.lists(st.integers(0, 120), max_size=12),
    cache=st.integers(1, 4),
)
def test_batched_features_equal_the_reference_through_eviction_and_reload(
    plan: list[Step], cuts: list[int], cache: int
) -> None:
    txs = events_of(plan)
    fc = FeatureComputer(
        fraud_defs(), store=DictStore(), write_behind=True, entity_cache_size=cache, drop_delay_s=0
    )
    assert_same(batched(fc, txs, cuts), reference(txs))


@settings(max_examples=40, deadline=None)
@given(plan=st.lists(steps, min_size=1, max_size=80))
def test_a_replay_of_the_whole_stream_changes_nothing(plan: list[Step]) -> None:
    txs = events_of(plan)
    fc = FeatureComputer(fraud_defs(), store=DictStore(), write_behind=True)
    first = batched(fc, txs, [len(txs) // 2])
    again = batched(fc, txs, [len(txs) // 3])  # every event re-delivered, batched otherwise
    final = reference([*txs, *txs])[len(txs) :]
    assert_same(first, reference(txs))
    assert_same(again, final)
