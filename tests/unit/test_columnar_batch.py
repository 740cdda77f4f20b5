"""The columnar batch path decodes and encodes exactly what the per-record path did."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer import wire
from stream_infer.errors import DeadLetterError
from stream_infer.events import Score
from stream_infer.features.compiled import FeatureComputer
from stream_infer.features.definitions import FEATURE_NAMES, SECONDS_PER_DAY, terminal_features
from stream_infer.model.registry import ModelRegistry
from stream_infer.model.session import load_model
from stream_infer.pipeline import ScoringPipeline
from stream_infer.state.entity_rows import EntityWriteSet, StoredEntry
from stream_infer.streamdef.daily import DayAggregate
from stream_infer.streamdef.daily_source import InMemoryDailyRows
from stream_infer.streamdef.spec import SEQ_COLUMN

from .fakes import FakeRecord
from .fraud_defs import fraud_defs

FLAG_TERMINAL_MISSING = "terminal_features_unavailable"


class EarlyStart:
    """An entity store holding nothing but a stream start long before the events (so every
    daily row is the label processor's to give)."""

    def load(self, keys: Any) -> dict[str, list[StoredEntry]]:
        return {k: [] for k in keys}

    def save(self, writes: EntityWriteSet) -> None:
        pass

    def first_day(self) -> int | None:
        return 0

    def record_first_day(self, day: int) -> None:
        pass


fields = st.fixed_dictionaries(
    {
        "transaction_id": st.one_of(st.text(max_size=5), st.integers(-5, 5)),
        "tx_datetime": st.one_of(
            st.datetimes().map(lambda d: d.isoformat() + "Z"),
            st.datetimes().map(lambda d: d.isoformat()),
            st.sampled_from(["soon", "3000-01-01T00:00:00Z", "2026-04-01T10:00:00+02:00"]),
        ),
        "customer_id": st.one_of(st.text(max_size=3), st.integers(0, 3)),
        "terminal_id": st.one_of(st.text(max_size=3), st.integers(0, 3)),
        "tx_amount": st.one_of(st.floats(-1, 2e9), st.sampled_from([1e9, "1"])),
    }
)
values = st.one_of(
    fields.map(orjson.dumps),
    st.binary(max_size=40),
    st.none(),
    st.sampled_from([b"", b"{}", b"[]", b'{"tx_amount": NaN}']),
)


def _one(raw: bytes | None) -> Any:
    try:
        tx = wire.decode(raw)
    except DeadLetterError as exc:
        return exc.reason
    return (str(tx.transaction_id), str(tx.customer_id), str(tx.terminal_id), tx.tx_amount)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=12))
def test_decode_batch_decides_as_decode_does_record_by_record(batch: list[bytes | None]) -> None:
    got = wire.decode_batch(batch)
    want = [_one(raw) for raw in batch]
    refused = dict(got.refused)
    assert sorted([*got.kept, *refused]) == list(range(len(batch)))
    for i, reason in refused.items():
        assert reason == want[i]
    for j, i in enumerate(got.kept):
        row = (
            got.transaction_ids[j],
            got.customer_ids[j],
            got.terminal_ids[j],
            got.amounts[j],
        )
        assert row == want[i]
        assert got.epoch_seconds[j] == wire.epoch_seconds(wire.decode(batch[i]).tx_datetime)
        assert got.times[j].tzinfo is not None


def _tx(i: int, when: str) -> bytes:
    return orjson.dumps(
        {
            "transaction_id": f"t{i}",
            "tx_datetime": when,
            "customer_id": "c1",
            "terminal_id": "T1",
            "tx_amount": 10.0 + i,
        }
    )


def test_score_records_keep_the_schema_field_order_and_times(registry: ModelRegistry) -> None:
    model = load_model(registry, "fraud", FEATURE_NAMES)
    records = [
        FakeRecord(_tx(0, "2026-04-10T10:00:00Z"), b"c1", _offset=0),
        FakeRecord(_tx(1, "2026-04-10T12:00:01+02:00"), b"c1", _offset=1),
        FakeRecord(_tx(2, "2026-04-10T10:00:02"), b"c1", _offset=2),  # naive = UTC
    ]
    for emit in (False, True):
        pipe = ScoringPipeline(model, FeatureComputer(fraud_defs()), emit_features=emit)
        out = pipe.process(records)
        payloads = [orjson.loads(o.value) for o in out.scores]
        keys = [
            "transaction_id",
            "customer_id",
            "score",
            "is_fraud",
            "model_name",
            "model_version",
            "model_semver",
            "model_role",
            "event_time",
            "scored_at",
            "latency_ms",
            "flags",
        ]
        assert all(list(p) == keys + (["features"] if emit else []) for p in payloads)
        scores = [Score.model_validate_json(o.value) for o in out.scores]
        assert [s.event_time for s in scores] == [
            datetime(2026, 4, 10, 10, 0, s, tzinfo=UTC) for s in (0, 1, 2)
        ]
        if emit:
            assert list(payloads[0]["features"]) == list(FEATURE_NAMES)
            assert [p["features"]["customer_nb_tx_1d"] for p in payloads] == [1.0, 2.0, 3.0]
            assert payloads[2]["features"]["tx_amount"] == 12.0


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 30)), min_size=1, max_size=40),
    complete=st.integers(0, 30),
    cut=st.integers(0, 40),
)
def test_terminal_rows_are_joined_per_event_day(
    events: list[tuple[int, int]], complete: int, cut: int
) -> None:
    base = 20_000
    defs = fraud_defs()
    rows = InMemoryDailyRows(defs.daily_views, complete_through=base + complete)
    counts = {
        f"T{t}": {
            base + d: (abs(d) + t + 1, min((d + t) % 3, abs(d) + t + 1)) for d in range(-40, 31)
        }
        for t in range(4)
    }
    for terminal, by_day in counts.items():
        for day, (n, fraud) in by_day.items():
            labels = [1.0] * fraud + [0.0] * (n - fraud)
            rows.add("terminal_counts", terminal, day, {"tx_fraud": DayAggregate.of(labels)})
    n = len(events)
    cols = {
        "transaction_id": np.array([f"x{i}" for i in range(n)], dtype=object),
        "customer_id": np.array([f"c{i}" for i in range(n)], dtype=object),
        "terminal_id": np.array([f"T{t}" for t, _ in events], dtype=object),
        "tx_datetime": np.array(
            [(base + d) * SECONDS_PER_DAY + i for i, (_, d) in enumerate(events)], dtype=np.int64
        ),
        "tx_amount": np.ones(n),
        SEQ_COLUMN: np.arange(n, dtype=np.int64),
    }
    fc = FeatureComputer(defs, rows, EarlyStart(), write_behind=True)
    parts = [{k: v[:cut] for k, v in cols.items()}, {k: v[cut:] for k, v in cols.items()}]
    got = [fc.compute(part) for part in parts if len(part[SEQ_COLUMN])]
    matrix = np.concatenate([m for m, _ in got])
    flags = [f for _, fl in got for f in fl]
    for i, (t, d) in enumerate(events):
        day = base + d
        if day - 8 <= base + complete:
            want = terminal_features(counts[f"T{t}"], day)
            assert flags[i] == ()
        else:
            want = (0.0,) * 6
            assert flags[i] == (FLAG_TERMINAL_MISSING,)
        assert matrix[i, 9:15].tolist() == list(want)
