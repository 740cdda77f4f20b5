"""The sidecar's read-only windows (stream_infer.state.histories) equal the definitions'
per-event path over the stored history, ties, late events and re-sent duplicates included."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from stream_infer.features.definitions import CustomerHistory
from stream_infer.features.online import FeatureComputer, TxInput
from stream_infer.state.base import Entry
from stream_infer.state.histories import history_of
from stream_infer.state.sqlite_store import SqliteState

T0 = 1_775_000_000


def _events(rng: random.Random, n: int, first_offset: int) -> list[TxInput]:
    out = []
    for i in range(n):
        t = T0 + rng.choice([0, 0, 1, 3600, 86_400, 86_401, 7 * 86_400]) + i * 600
        out.append(
            TxInput(
                f"tx-{first_offset + i}",
                str(i % 5),
                "t",
                t,
                rng.uniform(1, 99),
                0,
                first_offset + i,
            )
        )
    return out


@pytest.mark.parametrize("seed", range(5))
def test_read_only_features_equal_the_definitions(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = SqliteState(tmp_path / "s.db")
    writer = FeatureComputer(None, store)
    history = _events(rng, 300, 0)
    for i in range(0, len(history), 50):
        writer.compute(history[i : i + 50])
    writer.state.flush()
    late = T0 + 150 * 600  # inside the stored history's span: a late event
    asks = [
        TxInput("new-1", "1", "t", T0 + 300 * 600 + 5, 10.0, 0, 1_000),
        TxInput("new-2", "1", "t", T0 + 300 * 600 + 5, 20.0, 0, 1_001),  # same second
        TxInput("new-3", "2", "t", late, 30.0, 0, 1_002),
        history[17],  # a re-sent duplicate: counted once
        TxInput("new-4", "nobody", "t", T0, 5.0, 0, 1_003),
    ]
    reader = FeatureComputer(None, store, persist=False, cache=False)
    got, _flags = reader.compute(asks)
    reference: dict[str, CustomerHistory] = {}
    for tx in history:
        hist = reference.setdefault(tx.customer_id, CustomerHistory())
        hist.add(tx.epoch_seconds, tx.offset, tx.amount, tx.transaction_id)
    for row, tx in zip(got, asks, strict=True):
        hist = reference.setdefault(tx.customer_id, CustomerHistory())
        want = hist.features_at(hist.add(tx.epoch_seconds, tx.offset, tx.amount, tx.transaction_id))
        assert tuple(row[3:9]) == pytest.approx(want, rel=1e-12), tx.transaction_id


def test_history_of_matches_adding_one_by_one() -> None:
    rng = random.Random(3)
    keys = [
        (f"tx-{rng.randrange(40)}", T0 + rng.randrange(5), rng.randrange(10)) for _ in range(200)
    ]
    # One event (id, second, offset) has one amount: a re-delivery is the same record.
    entries = [
        Entry(tid, t, seq, 1.0 + (int(tid[3:]) * 31 + t % 7 * 5 + seq) % 97 / 7)
        for tid, t, seq in keys
    ]
    entries.append(Entry("gone", T0 + 1, 3, 1.0, dropped=True))
    want = CustomerHistory()
    for e in sorted(entries, key=lambda e: (e.epoch_seconds, e.seq, e.transaction_id)):
        if not e.dropped:
            want.add(e.epoch_seconds, e.seq, e.amount, e.transaction_id)
    rng.shuffle(entries)
    got = history_of(entries)
    assert (got.times, got.seqs, got.ids) == (want.times, want.seqs, want.ids)
    assert got.cum == pytest.approx(want.cum, rel=1e-12)
