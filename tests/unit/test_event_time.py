"""Events from the future: refused by the stream's decoder (fast path against its per-event
reference), by the pipeline before they reach any state, and by the label decoder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer import wire
from stream_infer.errors import DeadLetterError
from stream_infer.event_time import REASON_KIND, FutureLimit
from stream_infer.features.compiled import FeatureComputer
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.registry import ModelRegistry
from stream_infer.model.session import load_model
from stream_infer.pipeline import ScoringPipeline, dead_letter_reason_kind

from .fakes import FakeRecord
from .fraud_defs import fraud_defs

NOW = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
HOUR = 3600.0


def _tx(i: int, when: str | int, customer: str = "c1", amount: float = 10.0) -> bytes:
    return orjson.dumps(
        {
            "transaction_id": f"t{i}",
            "tx_datetime": when,
            "customer_id": customer,
            "terminal_id": "T1",
            "tx_amount": amount,
        }
    )


def test_the_reason_says_how_far_ahead_and_which_setting() -> None:
    limit = FutureLimit(NOW, HOUR)
    when = datetime(2999, 1, 1, tzinfo=UTC).timestamp()
    assert limit.reason(when) == (
        "event from the future: tx_datetime 2999-01-01T00:00:00Z is 973 years ahead of the "
        "wall clock (events.max_future_s=3600)"
    )
    assert "2 hours ahead" in limit.reason(NOW + 2 * HOUR + 5)
    assert dead_letter_reason_kind(limit.reason(when)) == REASON_KIND
    assert limit.allows(NOW + HOUR) and not limit.allows(NOW + HOUR + 1)
    with pytest.raises(DeadLetterError, match="ahead of the wall clock"):
        limit.check(NOW + HOUR + 1)


def _reference(values: list[bytes | None], limit: FutureLimit) -> tuple[list[Any], list[Any]]:
    """The per-event definition: decode() each value, then hold its whole second to the
    limit."""
    kept: list[Any] = []
    refused: list[Any] = []
    for i, raw in enumerate(values):
        try:
            tx = wire.decode(raw)
        except DeadLetterError as exc:
            refused.append((i, exc.reason))
            continue
        sec = wire.epoch_seconds(tx.tx_datetime)
        if not limit.allows(sec):
            refused.append((i, limit.reason(sec)))
            continue
        kept.append((i, str(tx.transaction_id), sec, tx.tx_amount))
    return kept, refused


# Times around the limit (both sides, to the second), far past and far ahead, and some values
# that are bad for other reasons.
offsets = st.one_of(
    st.integers(min_value=-3 * int(HOUR), max_value=3 * int(HOUR)),
    st.sampled_from([int(HOUR) - 1, int(HOUR), int(HOUR) + 1]),
    st.integers(min_value=-(10**9), max_value=10**9),
)
values = st.one_of(
    offsets.map(lambda off: ("ok", off)),
    st.sampled_from([b"", b"{oops", b"{}", None]).map(lambda raw: ("raw", raw)),
    st.sampled_from(["2999-12-31T23:59:59Z", "3000-01-01T00:00:00Z", "1969-12-31T23:59:59Z"]).map(
        lambda when: ("at", when)
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=30), st.floats(min_value=1, max_value=7 * 86400))
def test_decode_batch_holds_the_limit_as_decode_one_by_one(
    batch: list[tuple[str, Any]], max_future_s: float
) -> None:
    limit = FutureLimit(NOW, max_future_s)
    raw: list[bytes | None] = []
    for i, (kind, x) in enumerate(batch):
        if kind == "ok":
            when = datetime.fromtimestamp(NOW + x, tz=UTC).isoformat()
            raw.append(_tx(i, when))
        elif kind == "at":
            raw.append(_tx(i, x))
        else:
            raw.append(x)
    out = wire.decode_batch(raw, limit)
    kept, refused = _reference(raw, limit)
    assert out.refused == refused
    got = list(zip(out.kept, out.transaction_ids, out.epoch_seconds, out.amounts, strict=True))
    assert got == kept


def test_without_a_limit_only_the_schema_range_holds() -> None:
    out = wire.decode_batch([_tx(0, "2999-12-31T23:59:59Z")])
    assert out.kept == [0] and not out.refused


@pytest.fixture
def pipeline(registry: ModelRegistry) -> ScoringPipeline:
    model = load_model(registry, "fraud", FEATURE_NAMES)
    return ScoringPipeline(
        model, FeatureComputer(fraud_defs()), emit_features=True, clock=lambda: NOW
    )


def _features(result: Any) -> list[dict[str, float]]:
    return [orjson.loads(o.value)["features"] for o in result.scores]


def test_a_future_event_is_a_dead_letter_and_moves_no_history(
    pipeline: ScoringPipeline, registry: ModelRegistry
) -> None:
    start = datetime(2025, 12, 31, tzinfo=UTC)
    runs = [
        [_tx(i, (start + timedelta(minutes=i)).isoformat()) for i in range(20)],
        [_tx(20, "2999-01-01T00:00:00Z")],
        [_tx(21 + i, (start + timedelta(minutes=20, seconds=i)).isoformat()) for i in range(5)],
    ]
    offset = 0
    results = []
    for run in runs:
        results.append(
            pipeline.process([FakeRecord(v, _offset=offset + j) for j, v in enumerate(run)])
        )
        offset += len(run)
    (letter, reason), *_ = results[1].dead_letters
    assert reason.endswith(
        "tx_datetime: event from the future: 2999-01-01T00:00:00Z is ahead of the wall clock "
        "(latest accepted 2026-01-01T01:00:00Z)"
    )
    assert orjson.loads(letter.value)["source_offset"] == 20
    assert not results[1].scores

    # The same stream without the record: every later event gets the same features.
    model = load_model(registry, "fraud", FEATURE_NAMES)
    clean = ScoringPipeline(
        model, FeatureComputer(fraud_defs()), emit_features=True, clock=lambda: NOW
    )
    clean.process([FakeRecord(v, _offset=j) for j, v in enumerate(runs[0])])
    want = clean.process([FakeRecord(v, _offset=21 + j) for j, v in enumerate(runs[2])])
    assert _features(results[2]) == _features(want)
    assert [f["customer_nb_tx_1d"] for f in _features(results[2])] == [21, 22, 23, 24, 25]


def test_replays_of_history_are_never_refused(pipeline: ScoringPipeline) -> None:
    result = pipeline.process([FakeRecord(_tx(0, "2018-04-01T00:00:31Z"))])
    assert len(result.scores) == 1 and not result.dead_letters
