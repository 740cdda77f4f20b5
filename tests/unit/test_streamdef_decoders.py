"""The generated JSON decoder: valid events become exactly their columns, every bad record is
refused with a reason naming the field, no bytes make a batch raise, the batch equals
``decode_one`` record by record, and the fraud example's schema decides as ``wire.py`` does on
the malformed corpus of the integration test."""

from __future__ import annotations

import ast
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer import wire
from stream_infer.errors import DeadLetterError, DefinitionError
from stream_infer.streamdef.decoded import BatchDecoder, FieldLimits
from stream_infer.streamdef.decoders import build_decoder
from stream_infer.streamdef.schemas import json_fields
from stream_infer.streamdef.spec import SourceSpec
from tests.integration.test_malformed_corpus import _malformed, _wellformed
from tests.unit.test_wire import amounts as wire_amounts
from tests.unit.test_wire import datetimes as wire_datetimes
from tests.unit.test_wire import ids as wire_ids

EXAMPLE = Path(__file__).parents[2] / "examples" / "fraud" / "feature_repo" / "definitions.py"
SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "ts": {"type": "string", "format": "date-time"},
        "user": {"type": "string"},
        "amount": {"type": "number"},
        "count": {"type": "integer"},
        "flag": {"type": "boolean"},
    },
}
#: wire.py's bounds, which the example's JSON Schema does not state.
WIRE_LIMITS = {
    "tx_amount": FieldLimits(ge=0, le=1e9),
    **{f: FieldLimits(max_length=128) for f in ("transaction_id", "customer_id", "terminal_id")},
}


def json_source(schema: dict[str, Any], *, ts: str = "ts", key: str = "user") -> SourceSpec:
    """A JSON source read from ``schema`` by the repository reader's own schema parser."""
    fields, text = json_fields(json.dumps(schema), source="events", timestamp_field=ts)
    event_id = "transaction_id" if ts == "tx_datetime" else "id"
    return SourceSpec("events", "events", key, ts, event_id, fields, "json", text)


def example_schema() -> dict[str, Any]:
    """The fraud example's TRANSACTION_SCHEMA, read from its source (importing it needs feast)."""
    for node in ast.parse(EXAMPLE.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "TRANSACTION_SCHEMA" for t in node.targets
        ):
            value: dict[str, Any] = ast.literal_eval(node.value)
            return value
    raise AssertionError("no TRANSACTION_SCHEMA in the fraud example")


DECODER = build_decoder(json_source(SCHEMA))
VALID = {"id": "e1", "ts": "2026-04-01T10:11:12Z", "user": "u1", "amount": 12.5, "count": 3}
VALID["flag"] = True


def outcome(decoder: BatchDecoder, raw: bytes | None, **kw: Any) -> dict[str, Any] | str:
    """``decode_one``'s answer: the values, or the refusal's reason."""
    try:
        return decoder.decode_one(raw, **kw)
    except DeadLetterError as exc:
        assert exc.reason
        return exc.reason


def batch_outcomes(decoder: BatchDecoder, values: list[bytes | None], **kw: Any) -> list[Any]:
    """``decode_batch``'s answer per input, in ``outcome``'s terms; checks its bookkeeping."""
    out = decoder.decode_batch(values, **kw)
    assert sorted(out.kept + [i for i, _ in out.refused]) == list(range(len(values)))
    assert out.kept == sorted(out.kept) and out.refused == sorted(out.refused)
    assert all(len(col) == len(out.kept) for col in out.columns.values())
    answers: list[Any] = [None] * len(values)
    for i, reason in out.refused:
        answers[i] = reason
    for row, i in enumerate(out.kept):
        answers[i] = {name: col[row] for name, col in out.columns.items()}
    return answers


def test_valid_event_becomes_its_columns() -> None:
    other = {**VALID, "id": 7, "user": 42, "ts": "2026-04-01T12:11:12.999999+02:00", "x": [1]}
    out = DECODER.decode_batch([orjson.dumps(VALID), orjson.dumps(other)])
    assert out.kept == [0, 1] and out.refused == []
    cols = out.columns
    assert cols["id"].dtype == object and list(cols["id"]) == ["e1", "7"]
    assert list(cols["user"]) == ["u1", "42"]  # integer ids normalised to their text
    assert cols["ts"].dtype == np.int64
    assert cols["ts"].tolist() == [1_775_038_272, 1_775_038_272]
    assert cols["amount"].dtype == np.float64 and cols["amount"].tolist() == [12.5, 12.5]
    assert cols["count"].dtype == np.int64 and cols["flag"].dtype == np.bool_


def test_empty_batch_has_typed_empty_columns() -> None:
    out = DECODER.decode_batch([])
    assert {k: v.dtype for k, v in out.columns.items()} == {
        "id": np.dtype(object),
        "ts": np.dtype(np.int64),
        "user": np.dtype(object),
        "amount": np.dtype(np.float64),
        "count": np.dtype(np.int64),
        "flag": np.dtype(np.bool_),
    }


def _replace(field: str, raw: bytes) -> bytes:
    """VALID's JSON with ``field``'s value replaced by the literal ``raw``."""
    return orjson.dumps(VALID).replace(
        orjson.dumps({field: VALID[field]})[1:-1], f'"{field}":'.encode() + raw
    )


@pytest.mark.parametrize(
    ("raw", "needles"),
    [
        (b"", ["empty message value"]),
        (None, ["empty message value"]),
        (b"not json", ["not valid JSON"]),
        (b"[1, 2]", ["Expected `object`"]),
        (orjson.dumps({k: v for k, v in VALID.items() if k != "user"}), ["user: field required"]),
        (orjson.dumps({**VALID, "amount": "12.5"}), ["amount", "got `str`"]),
        (orjson.dumps({**VALID, "count": 1.5}), ["count", "int"]),
        (orjson.dumps({**VALID, "count": 2**63}), ["count"]),
        (orjson.dumps({**VALID, "flag": 1}), ["flag", "bool"]),
        (orjson.dumps({**VALID, "user": 1.5}), ["user"]),
        (orjson.dumps({**VALID, "user": ""}), ["user", "length >= 1"]),
        (orjson.dumps({**VALID, "id": None}), ["id"]),
        (_replace("amount", b"NaN"), ["not valid JSON", "amount: NaN or Infinity"]),
        (_replace("amount", b"-Infinity"), ["not valid JSON", "amount"]),
        (_replace("amount", b"1e400"), ["amount", "out of range"]),
        (orjson.dumps({**VALID, "ts": 1_775_000_000}), ["ts", "datetime"]),
        (orjson.dumps({**VALID, "ts": "1969-12-31T23:59:59Z"}), ["ts: date-time out of range"]),
        (orjson.dumps({**VALID, "ts": "3000-01-01T00:00:00Z"}), ["ts: date-time out of range"]),
        (orjson.dumps({**VALID, "ts": "2026-13-01T00:00:00Z"}), ["ts"]),
        (
            orjson.dumps({**VALID, "ts": "3000-01-01T00:00:00Z", "amount": "x", "user": []}),
            ["ts: date-time out of range", "amount: ", "user: "],
        ),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, ["nested too deeply"]),
    ],
)
def test_bad_record_is_refused_naming_the_field(raw: bytes | None, needles: list[str]) -> None:
    reason = outcome(DECODER, raw)
    assert isinstance(reason, str), reason
    for needle in needles:
        assert needle in reason, (needle, reason)
    assert batch_outcomes(DECODER, [raw]) == [reason]


def test_events_ahead_of_the_wall_clock_are_refused() -> None:
    now = 1_775_038_272  # VALID's time
    values = [orjson.dumps(VALID), orjson.dumps({**VALID, "ts": "2026-04-01T10:11:13Z"})]
    out = DECODER.decode_batch(values, max_epoch_s=now)
    assert out.kept == [0]
    [(index, reason)] = out.refused
    assert index == 1
    assert "ts: event from the future: 2026-04-01T10:11:13Z is ahead of the wall clock" in reason
    assert batch_outcomes(DECODER, values, max_epoch_s=now) == [
        outcome(DECODER, v, max_epoch_s=now) for v in values
    ]


@pytest.mark.parametrize("kind", ["integer", "number"])
def test_epoch_number_timestamps_when_the_schema_says_so(kind: str) -> None:
    schema = {**SCHEMA, "properties": {**SCHEMA["properties"], "ts": {"type": kind}}}
    decoder = build_decoder(json_source(schema))
    stamps = [1_775_038_272, 0] + ([1_775_038_272.9, -0.5] if kind == "number" else [])
    out = decoder.decode_batch([orjson.dumps({**VALID, "ts": t}) for t in stamps])
    assert out.columns["ts"].tolist() == [math.floor(t) for t in stamps if t >= 0]
    assert [i for i, _ in out.refused] == ([3] if kind == "number" else [])
    assert isinstance(outcome(decoder, orjson.dumps(VALID)), str)  # RFC 3339 text: refused
    assert "ts" in str(outcome(decoder, orjson.dumps({**VALID, "ts": 1e300})))


def test_limits_from_the_json_schema_and_explicit_ones() -> None:
    props = {**SCHEMA["properties"], "amount": {"type": "number", "minimum": 0, "maximum": 100}}
    props["user"] = {"type": "string", "maxLength": 3}
    decoder = build_decoder(json_source({**SCHEMA, "properties": props}))
    for changes, field in (({"amount": -1}, "amount"), ({"amount": 101}, "amount")):
        assert field in str(outcome(decoder, orjson.dumps({**VALID, **changes})))
    assert "user" in str(outcome(decoder, orjson.dumps({**VALID, "user": "abcd"})))
    assert isinstance(outcome(decoder, orjson.dumps({**VALID, "amount": 100})), dict)
    looser = build_decoder(json_source(SCHEMA), limits={"count": FieldLimits(ge=0, le=5)})
    assert "count" in str(outcome(looser, orjson.dumps({**VALID, "count": 6})))


def test_a_source_without_its_key_field_is_refused_at_build() -> None:
    with pytest.raises(DefinitionError, match="key_field 'nobody'"):
        build_decoder(json_source(SCHEMA, key="nobody"))


ids = st.one_of(st.text(min_size=1, max_size=20), st.integers(-(2**62), 2**62))
times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 30), timezones=st.just(UTC)
)
events = st.fixed_dictionaries(
    {
        "id": ids,
        "ts": times,
        "user": ids,
        "amount": st.floats(allow_nan=False, allow_infinity=False),
        "count": st.integers(-(2**63), 2**63 - 1),
        "flag": st.booleans(),
    }
)


def _epoch(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)


@settings(max_examples=200, deadline=None)
@given(st.lists(events, max_size=20))
def test_valid_events_decode_to_the_values_encoded(batch: list[dict[str, Any]]) -> None:
    out = DECODER.decode_batch([orjson.dumps(e) for e in batch])
    assert out.refused == [] and out.kept == list(range(len(batch)))
    assert out.columns["id"].tolist() == [str(e["id"]) for e in batch]
    assert out.columns["user"].tolist() == [str(e["user"]) for e in batch]
    assert out.columns["ts"].tolist() == [_epoch(e["ts"]) for e in batch]
    assert out.columns["amount"].tolist() == [e["amount"] for e in batch]
    assert out.columns["count"].tolist() == [e["count"] for e in batch]
    assert out.columns["flag"].tolist() == [e["flag"] for e in batch]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
records = st.one_of(
    st.binary(max_size=200),
    events.map(orjson.dumps),
    st.tuples(events, st.sampled_from(list(VALID)), json_values).map(
        lambda t: json.dumps({**t[0], "ts": t[0]["ts"].isoformat(), t[1]: t[2]}).encode()
    ),
    st.tuples(events, st.integers(0, 120), st.binary(max_size=4)).map(
        lambda t: (b := orjson.dumps(t[0]))[: t[1]] + t[2] + b[t[1] + 1 :]
    ),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(records, max_size=12), st.none() | st.integers(0, 2**35))
def test_any_batch_decodes_as_record_by_record(
    values: list[bytes | None], max_epoch_s: int | None
) -> None:
    got = batch_outcomes(DECODER, values, max_epoch_s=max_epoch_s)
    assert got == [outcome(DECODER, v, max_epoch_s=max_epoch_s) for v in values]


def _corpus() -> list[tuple[str, bytes | None]]:
    limit = 64 * 1024
    return [(s.name, s.value) for s in _malformed(limit) + _wellformed(limit)]


def _agreement(decoder: BatchDecoder) -> list[str]:
    """Names of the corpus records on which ``decoder`` and ``wire.decode`` differ (decision,
    or values when both keep it), checking the batch agrees with decode_one throughout."""
    corpus = _corpus()
    values = [v for _, v in corpus]
    ours = batch_outcomes(decoder, values)
    assert ours == [outcome(decoder, v) for v in values]
    differ = []
    for (name, raw), mine in zip(corpus, ours, strict=True):
        try:
            tx = wire.decode(raw)
        except DeadLetterError:
            if not isinstance(mine, str):
                differ.append(name)
            continue
        if not isinstance(mine, dict) or mine != {
            "transaction_id": str(tx.transaction_id),
            "tx_datetime": wire.epoch_seconds(tx.tx_datetime),
            "customer_id": str(tx.customer_id),
            "terminal_id": str(tx.terminal_id),
            "tx_amount": tx.tx_amount,
        }:
            differ.append(name)
    return differ


def test_fraud_schema_with_wire_limits_decides_the_corpus_as_wire_does() -> None:
    source = json_source(example_schema(), ts="tx_datetime", key="customer_id")
    assert _agreement(build_decoder(source, limits=WIRE_LIMITS)) == []


FRAUD = build_decoder(
    json_source(example_schema(), ts="tx_datetime", key="customer_id"), limits=WIRE_LIMITS
)


def test_fraud_schema_as_shipped_differs_from_wire_only_in_amount_bounds() -> None:
    # Differences stated: the example's JSON Schema has no minimum/maximum for tx_amount, so a
    # negative or absurd amount is an event to it; add "minimum": 0, "maximum": 1e9 to agree.
    source = json_source(example_schema(), ts="tx_datetime", key="customer_id")
    assert set(_agreement(build_decoder(source))) <= {"negative amount", "absurd amount"}


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "transaction_id": json_values | wire_ids,
            "tx_datetime": json_values | wire_datetimes,
            "customer_id": json_values | wire_ids,
            "terminal_id": json_values | wire_ids,
            "tx_amount": json_values | wire_amounts,
        },
    ),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
def test_fraud_schema_decides_any_transaction_as_wire_does(
    event: dict[str, Any], extra: dict[str, Any]
) -> None:
    raw = json.dumps({**extra, **event}).encode()
    mine = outcome(FRAUD, raw)
    try:
        tx = wire.decode(raw)
    except DeadLetterError:
        assert isinstance(mine, str), (raw, mine)
        return
    assert mine == {
        "transaction_id": str(tx.transaction_id),
        "tx_datetime": wire.epoch_seconds(tx.tx_datetime),
        "customer_id": str(tx.customer_id),
        "terminal_id": str(tx.terminal_id),
        "tx_amount": tx.tx_amount,
    }, raw


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2200-01-01T00:00:00.999999Z", 7_258_118_400),
        ("2900-01-01T00:00:00.999999Z", 29_348_006_400),
        ("2999-12-31T23:59:59.999999Z", 32_503_679_999),
    ],
)
def test_times_floor_exactly_where_a_double_would_round_up(text: str, seconds: int) -> None:
    # Past 2**33 s (the year 2242) a double cannot hold x.999999 s: wire.py's float floor says
    # the next second there (and refuses the last microsecond of 2999); this decoder is exact.
    event = {"transaction_id": "t", "customer_id": "c", "terminal_id": "T", "tx_amount": 1.0}
    values = [orjson.dumps({**event, "tx_datetime": text})]
    assert FRAUD.decode_batch(values).columns["tx_datetime"].tolist() == [seconds]
    assert FRAUD.decode_one(values[0])["tx_datetime"] == seconds
