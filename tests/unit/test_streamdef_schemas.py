"""Message schemas as written in a Feast repository (JSON Schema, Spark DDL, Avro) -> fields."""

from __future__ import annotations

import json

import pytest

from stream_infer.errors import DefinitionError
from stream_infer.streamdef.schemas import avro_fields, json_fields
from stream_infer.streamdef.spec import FieldSpec


def test_json_schema_kinds_and_the_timestamp_as_epoch_seconds() -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "ts": {"type": "string", "format": "date-time"},
            "amount": {"type": "number"},
            "n": {"type": "integer"},
            "ok": {"type": "boolean"},
        },
    }
    fields, text = json_fields(json.dumps(schema), source="s", timestamp_field="ts")
    assert fields == (
        FieldSpec("id", "string"),
        FieldSpec("ts", "int64"),
        FieldSpec("amount", "float64"),
        FieldSpec("n", "int64"),
        FieldSpec("ok", "bool"),
    )
    assert json.loads(text) == schema


def test_spark_ddl_is_rewritten_to_the_same_json_schema() -> None:
    fields, text = json_fields(
        "id STRING, ts TIMESTAMP, amount DECIMAL(10, 2), n BIGINT, ok BOOLEAN",
        source="s",
        timestamp_field="ts",
    )
    assert [f.kind for f in fields] == ["string", "int64", "float64", "int64", "bool"]
    assert json.loads(text) == {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "ts": {"type": "string", "format": "date-time"},
            "amount": {"type": "number"},
            "n": {"type": "integer"},
            "ok": {"type": "boolean"},
        },
        "required": ["id", "ts", "amount", "n", "ok"],
    }


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            "id STRING, tags ARRAY<STRING>, ts TIMESTAMP",
            "source s: 'tags ARRAY<STRING>' is neither",
        ),
        ("id STRING, ts TIMESTAMP, m MAP", "source s, field m: Spark type MAP is not supported"),
        (
            '{"type": "object", "properties": {"ts": {"type": "integer"}, "a": {"type": "array"}}}',
            "source s, field a: JSON type 'array' is not supported",
        ),
        ("id STRING", "source s: timestamp_field ts is not a field of its schema"),
    ],
)
def test_json_refusals_name_the_source_and_field(schema: str, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        json_fields(schema, source="s", timestamp_field="ts")
    assert str(info.value).startswith(message)


def avro(*fields: dict[str, object]) -> str:
    return json.dumps({"type": "record", "name": "E", "fields": list(fields)})


def test_avro_kinds_nullable_enum_and_timestamp_logical_types() -> None:
    fields = avro_fields(
        avro(
            {"name": "id", "type": "string"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "amount", "type": ["null", "double"]},
            {"name": "n", "type": "int"},
            {"name": "ok", "type": "boolean"},
            {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["a", "b"]}},
        ),
        source="s",
        timestamp_field="ts",
    )
    assert [f.kind for f in fields] == ["string", "int64", "float64", "int64", "bool", "string"]


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"name": "x", "type": ["null", "string", "long"]}, "source s, field x: Avro type"),
        ({"name": "x", "type": {"type": "array", "items": "long"}}, "source s, field x: Avro type"),
        (
            {"name": "x", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            "source s, field x: only the timestamp field (ts) may be a timestamp-micros",
        ),
    ],
)
def test_avro_refusals_name_the_source_and_field(field: dict[str, object], message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        avro_fields(avro({"name": "ts", "type": "long"}, field), source="s", timestamp_field="ts")
    assert str(info.value).startswith(message)
