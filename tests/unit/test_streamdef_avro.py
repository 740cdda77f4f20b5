"""The Avro decoder: bare bodies and the Confluent wire format (writer schemas by id from a
small in-process registry fake: no real schema registry runs in these tests), refusals naming
the field or the schema id, a registry outage raised as RetryableError, the batch equal to
``decode_one`` record by record over any bytes; and the registry adapter's error mapping."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import httpx
import numpy as np
import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.errors import ConfigError, DeadLetterError, DefinitionError, RetryableError
from stream_infer.kafka.schema_registry import ConfluentSchemaRegistry
from stream_infer.streamdef.decoded import FieldLimits
from stream_infer.streamdef.decoders import build_decoder
from stream_infer.streamdef.registry import UnknownSchemaError, frame
from stream_infer.streamdef.spec import FieldSpec, SourceSpec

from .test_streamdef_decoders import batch_outcomes, outcome

FIELDS = (
    FieldSpec("id", "string"),
    FieldSpec("ts", "int64"),
    FieldSpec("user", "string"),
    FieldSpec("amount", "float64"),
    FieldSpec("count", "int64"),
    FieldSpec("flag", "bool"),
)


def record_schema(ts_type: Any = None, **extra: Any) -> dict[str, Any]:
    ts = ts_type or {"type": "long", "logicalType": "timestamp-millis"}
    return {
        "type": "record",
        "name": "Event",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "ts", "type": ts},
            {"name": "user", "type": "string"},
            {"name": "amount", "type": "double"},
            {"name": "count", "type": "long"},
            {"name": "flag", "type": "boolean"},
            *extra.get("more", []),
        ],
    }


def avro_source(schema: dict[str, Any]) -> SourceSpec:
    return SourceSpec("events", "events", "user", "ts", "id", FIELDS, "avro", json.dumps(schema))


def encode(schema: dict[str, Any], event: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), event)
    return buf.getvalue()


SCHEMA = record_schema()
DECODER = build_decoder(avro_source(SCHEMA))
T0 = datetime(2026, 4, 1, 10, 11, 12, 999_000, tzinfo=UTC)
VALID = {"id": "e1", "ts": T0, "user": "u1", "amount": 12.5, "count": 3, "flag": True}


def test_valid_events_become_their_columns() -> None:
    values = [encode(SCHEMA, VALID), encode(SCHEMA, {**VALID, "ts": T0 - timedelta(days=400)})]
    out = DECODER.decode_batch(values)
    assert out.kept == [0, 1] and out.refused == []
    seconds = int(T0.timestamp())
    assert out.columns["ts"].tolist() == [seconds, seconds - 400 * 86_400]
    assert out.columns["ts"].dtype == np.int64
    assert out.columns["id"].tolist() == ["e1", "e1"] and out.columns["id"].dtype == object
    assert out.columns["amount"].tolist() == [12.5, 12.5]
    assert out.columns["flag"].dtype == np.bool_


@pytest.mark.parametrize(
    ("ts_type", "value", "seconds"),
    [
        ("long", 1_775_038_272, 1_775_038_272),
        ("int", 0, 0),
        ({"type": "long", "logicalType": "timestamp-micros"}, T0, int(T0.timestamp())),
        ({"type": "long", "logicalType": "timestamp-millis"}, 1_775_038_272_999, 1_775_038_272),
    ],
)
def test_timestamp_units(ts_type: Any, value: Any, seconds: int) -> None:
    schema = record_schema(ts_type)
    out = build_decoder(avro_source(schema)).decode_batch([encode(schema, {**VALID, "ts": value})])
    assert out.columns["ts"].tolist() == [seconds]


NULLABLE = record_schema(more=[])
NULLABLE["fields"][3] = {"name": "amount", "type": ["null", "double"]}
NULLABLE_DECODER = build_decoder(avro_source(NULLABLE))


@pytest.mark.parametrize(
    ("raw", "needles"),
    [
        (b"", ["empty message value"]),
        (None, ["empty message value"]),
        (b"\x02", ["not Avro"]),
        (encode(SCHEMA, VALID)[:-1], ["not Avro"]),
        (encode(SCHEMA, VALID) + b"\x00", ["not Avro", "1 bytes after the record"]),
        (encode(SCHEMA, {**VALID, "amount": float("nan")}), ["amount", "not a finite number"]),
        (encode(SCHEMA, {**VALID, "amount": float("-inf")}), ["amount", "not a finite number"]),
        (encode(SCHEMA, {**VALID, "user": ""}), ["user: empty string"]),
        (encode(SCHEMA, {**VALID, "ts": -1}), ["ts: date-time out of range"]),
        (encode(SCHEMA, {**VALID, "ts": 2**62}), ["ts: date-time out of range"]),
        (
            encode(SCHEMA, {**VALID, "ts": -1, "id": "", "amount": float("nan")}),
            ["id: empty string", "amount", "ts: date-time out of range"],
        ),
    ],
)
def test_bad_record_is_refused_naming_the_field(raw: bytes | None, needles: list[str]) -> None:
    reason = outcome(DECODER, raw)
    assert isinstance(reason, str), reason
    for needle in needles:
        assert needle in reason, (needle, reason)
    assert batch_outcomes(DECODER, [raw]) == [reason]


def test_nulls_in_a_nullable_field_are_refused_naming_it() -> None:
    values = [encode(NULLABLE, {**VALID, "amount": None}), encode(NULLABLE, VALID)]
    out = NULLABLE_DECODER.decode_batch(values)
    assert out.kept == [1] and out.columns["amount"].tolist() == [12.5]
    assert out.refused == [(0, "invalid events event: amount: null")]


def test_limits_and_the_wall_clock() -> None:
    decoder = build_decoder(
        avro_source(SCHEMA),
        limits={"amount": FieldLimits(ge=0, le=100), "user": FieldLimits(max_length=2)},
    )
    assert "amount: -1.0 is below 0" in str(
        outcome(decoder, encode(SCHEMA, {**VALID, "amount": -1.0}))
    )
    assert "user: longer than 2" in str(outcome(decoder, encode(SCHEMA, {**VALID, "user": "abc"})))
    seconds = int(T0.timestamp())
    ahead = str(outcome(decoder, encode(SCHEMA, VALID), max_epoch_s=seconds - 1))
    assert "ahead of the wall clock" in ahead
    assert isinstance(outcome(decoder, encode(SCHEMA, VALID), max_epoch_s=seconds), dict)


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"type": "string"}, "not an Avro record"),
        ({**SCHEMA, "fields": SCHEMA["fields"][:5]}, "no field flag"),
        (record_schema("string"), "ts"),
        (
            {**SCHEMA, "fields": [*SCHEMA["fields"][:3], {"name": "amount", "type": "string"}]},
            "amount",
        ),
    ],
)
def test_schema_not_giving_the_fields_is_refused_at_build(
    schema: dict[str, Any], needle: str
) -> None:
    with pytest.raises(DefinitionError, match=needle):
        build_decoder(avro_source(schema))


times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 30), timezones=st.just(UTC)
)
events = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=20),
        "ts": times.map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)),
        "user": st.text(min_size=1, max_size=20),
        "amount": st.floats(allow_nan=False, allow_infinity=False),
        "count": st.integers(-(2**63), 2**63 - 1),
        "flag": st.booleans(),
    }
)


@settings(max_examples=200, deadline=None)
@given(st.lists(events, max_size=20))
def test_valid_events_decode_to_the_values_encoded(batch: list[dict[str, Any]]) -> None:
    out = DECODER.decode_batch([encode(SCHEMA, e) for e in batch])
    assert out.refused == [] and out.kept == list(range(len(batch)))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert out.columns["ts"].tolist() == [(e["ts"] - epoch) // timedelta(seconds=1) for e in batch]
    for name in ("id", "user", "amount", "count", "flag"):
        assert out.columns[name].tolist() == [e[name] for e in batch]


any_event = st.fixed_dictionaries(
    {
        "id": st.text(max_size=5),
        "ts": st.integers(-(2**63), 2**63 - 1),
        "user": st.text(max_size=5),
        "amount": st.floats(),
        "count": st.integers(-(2**63), 2**63 - 1),
        "flag": st.booleans(),
    }
)
PLAIN = record_schema("long")
PLAIN_DECODER = build_decoder(avro_source(PLAIN))
records = st.one_of(
    st.binary(max_size=80),
    any_event.map(lambda e: encode(PLAIN, e)),
    st.tuples(any_event, st.integers(0, 40), st.binary(max_size=3)).map(
        lambda t: (b := encode(PLAIN, t[0]))[: t[1]] + t[2] + b[t[1] + 1 :]
    ),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(records, max_size=12), st.none() | st.integers(0, 2**35))
def test_any_batch_decodes_as_record_by_record(
    values: list[bytes | None], max_epoch_s: int | None
) -> None:
    got = batch_outcomes(PLAIN_DECODER, values, max_epoch_s=max_epoch_s)
    assert got == [outcome(PLAIN_DECODER, v, max_epoch_s=max_epoch_s) for v in values]


class FakeRegistry:
    """Schemas by id, counting lookups; ``down`` makes every lookup an outage."""

    def __init__(self, schemas: dict[int, dict[str, Any]]) -> None:
        self.schemas = schemas
        self.asked: list[int] = []
        self.down = False

    def schema_text(self, schema_id: int) -> str:
        self.asked.append(schema_id)
        if self.down:
            raise RetryableError("registry down")
        if schema_id not in self.schemas:
            raise UnknownSchemaError(f"unknown schema id {schema_id}")
        return json.dumps(self.schemas[schema_id])


#: A newer writer: an extra field, the time in microseconds.
WRITER_V2 = record_schema(
    {"type": "long", "logicalType": "timestamp-micros"},
    more=[{"name": "country", "type": "string", "default": ""}],
)


def test_wire_format_with_writer_schemas_by_id() -> None:
    registry = FakeRegistry({1: SCHEMA, 2: WRITER_V2})
    decoder = build_decoder(avro_source(SCHEMA), registry=registry)
    v1 = frame(1, encode(SCHEMA, VALID))
    v2 = frame(2, encode(WRITER_V2, {**VALID, "country": "FR"}))
    values = [v1, v2, v1, frame(9, encode(SCHEMA, VALID)), frame(9, b""), encode(SCHEMA, VALID)]
    values += [b"\x00\x00", b"\x01" + v1[1:]]
    out = decoder.decode_batch(values)
    assert out.kept == [0, 1, 2]
    assert out.columns["ts"].tolist() == [int(T0.timestamp())] * 3
    assert out.columns["amount"].tolist() == [12.5] * 3
    reasons = dict(out.refused)
    assert reasons[3] == reasons[4] == "unknown schema id 9"
    assert "Confluent wire format" in reasons[5] and "Confluent wire format" in reasons[6]
    assert "starts with byte 1" in reasons[7]
    assert sorted(registry.asked) == [1, 2, 9]  # each id asked once, the unknown one too
    assert batch_outcomes(decoder, values) == [outcome(decoder, v) for v in values]


def test_a_writer_the_reader_cannot_resolve_is_refused_naming_the_id() -> None:
    unrelated = {"type": "record", "name": "Event", "fields": [{"name": "x", "type": "long"}]}
    decoder = build_decoder(avro_source(SCHEMA), registry=FakeRegistry({4: unrelated}))
    reason = outcome(decoder, frame(4, encode(unrelated, {"x": 1})))
    assert isinstance(reason, str) and "schema id 4" in reason


def test_registry_outage_raises_retryable_and_recovers() -> None:
    registry = FakeRegistry({1: SCHEMA})
    decoder = build_decoder(avro_source(SCHEMA), registry=registry)
    values = [frame(1, encode(SCHEMA, VALID))]
    registry.down = True
    with pytest.raises(RetryableError):
        decoder.decode_batch(values)
    registry.down = False
    assert decoder.decode_batch(values).kept == [0]
    registry.down = True  # cached by id: an outage no longer matters for a known id
    assert decoder.decode_batch(values).kept == [0]


class FakeClient:
    """SchemaRegistryClient.get_schema answering with ``answer`` (raised if an exception)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def get_schema(self, schema_id: int) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class Registered:
    def __init__(self, text: str, kind: str = "AVRO", references: list[Any] | None = None):
        self.schema_str, self.schema_type, self.references = text, kind, references or []


@pytest.mark.parametrize(
    ("answer", "error", "needle"),
    [
        (SchemaRegistryError(404, 40403, "Schema not found"), UnknownSchemaError, "id 7"),
        (SchemaRegistryError(500, 50001, "boom"), RetryableError, "boom"),
        (SchemaRegistryError(401, 40101, "no"), ConfigError, "refused"),
        (httpx.ConnectError("refused"), RetryableError, "did not answer"),
        (httpx.ReadTimeout("slow"), RetryableError, "did not answer"),
        (Registered("{}", kind="PROTOBUF"), UnknownSchemaError, "PROTOBUF"),
        (Registered("{}", references=["x"]), UnknownSchemaError, "references"),
    ],
)
def test_adapter_maps_registry_failures(answer: Any, error: type[Exception], needle: str) -> None:
    registry = ConfluentSchemaRegistry("http://registry:8081", client=FakeClient(answer))
    with pytest.raises(error, match=needle):
        registry.schema_text(7)


def test_adapter_returns_the_schema_text() -> None:
    text = json.dumps(SCHEMA)
    assert (
        ConfluentSchemaRegistry("http://r", client=FakeClient(Registered(text))).schema_text(1)
        == text
    )


def test_adapter_builds_the_real_client_without_calling_it() -> None:
    registry = ConfluentSchemaRegistry("http://127.0.0.1:1", user="u", secret="s")
    assert registry is not None
    with pytest.raises(ConfigError):
        ConfluentSchemaRegistry("not a url")


def test_unknown_schema_is_a_dead_letter() -> None:
    assert issubclass(UnknownSchemaError, DeadLetterError)
