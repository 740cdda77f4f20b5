"""A Kafka source's message schema, as written in a Feast repository, read into field kinds.

Forms accepted (``source`` names the Feast source in every error):

- ``JsonFormat(schema_json=...)`` as a **JSON Schema** object: ``{"type": "object",
  "properties": {name: {"type": ...}}, "required": [...]}``; ``"number"`` is float64,
  ``"integer"`` int64, ``"boolean"`` bool, ``"string"`` string.
- ``JsonFormat(schema_json=...)`` as the **Spark DDL** string Feast's own Spark engine reads
  (``"transaction_id STRING, tx_amount DOUBLE, tx_datetime TIMESTAMP"``): it is rewritten to the
  equivalent JSON Schema (every field required; ``TIMESTAMP`` an RFC 3339 date-time string), so
  :attr:`~stream_infer.streamdef.spec.SourceSpec.schema_text` is always a JSON Schema.
- ``AvroFormat(schema_json=...)``: an Avro record of primitive fields (``string`` and ``enum``
  are string, ``double`` and ``float`` float64, ``int`` and ``long`` int64, ``boolean`` bool),
  each possibly nullable (``["null", T]``: a null value is dead-lettered by the decoder); the
  timestamp field may carry a ``timestamp-*`` or ``local-timestamp-*`` logical type.

The source's timestamp field is int64 (whole UTC epoch seconds) whatever its wire type: the
decoders convert it. Nested records, arrays, maps and other unions are refused.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from stream_infer.errors import DefinitionError
from stream_infer.streamdef.spec import FieldSpec, ValueKind

_JSON_KINDS: Final[dict[str, ValueKind]] = {
    "number": "float64",
    "integer": "int64",
    "boolean": "bool",
    "string": "string",
}
_DDL_TYPES: Final[dict[str, dict[str, str]]] = {
    "string": {"type": "string"},
    "varchar": {"type": "string"},
    "double": {"type": "number"},
    "float": {"type": "number"},
    "decimal": {"type": "number"},
    "int": {"type": "integer"},
    "integer": {"type": "integer"},
    "bigint": {"type": "integer"},
    "long": {"type": "integer"},
    "smallint": {"type": "integer"},
    "tinyint": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "timestamp": {"type": "string", "format": "date-time"},
}
_AVRO_KINDS: Final[dict[str, ValueKind]] = {
    "string": "string",
    "double": "float64",
    "float": "float64",
    "int": "int64",
    "long": "int64",
    "boolean": "bool",
}
_AVRO_TIMESTAMPS: Final = frozenset(
    f"{local}timestamp-{unit}" for local in ("", "local-") for unit in ("millis", "micros", "nanos")
)
_DDL_FIELD: Final = re.compile(
    r"^\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s+([A-Za-z]+)(\(\s*\d+(\s*,\s*\d+)?\s*\))?\s*$"
)


def json_fields(
    schema_json: str, *, source: str, timestamp_field: str
) -> tuple[tuple[FieldSpec, ...], str]:
    """The fields of a ``JsonFormat`` schema and its JSON Schema text.

    Raises:
        DefinitionError: neither a JSON Schema object nor a Spark DDL string; a field of a
            type not listed in the module docstring; no ``timestamp_field``.
    """
    text = schema_json.strip()
    schema = _json_schema(text, source) if text.startswith("{") else _ddl_schema(text, source)
    properties = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(properties, dict) or not properties:
        raise DefinitionError(
            f"source {source}: the JSON schema must be an object with properties "
            '({"type": "object", "properties": {...}})'
        )
    fields: list[FieldSpec] = []
    for name, prop in properties.items():
        kind_name = prop.get("type") if isinstance(prop, dict) else None
        if name == timestamp_field and kind_name in ("string", "number", "integer"):
            fields.append(FieldSpec(name, "int64"))
            continue
        if not isinstance(kind_name, str) or kind_name not in _JSON_KINDS:
            raise DefinitionError(
                f"source {source}, field {name}: JSON type {kind_name!r} is not supported "
                f"(use one of {', '.join(_JSON_KINDS)}; no null, arrays or objects)"
            )
        fields.append(FieldSpec(name, _JSON_KINDS[kind_name]))
    _require_timestamp(fields, source, timestamp_field)
    return tuple(fields), json.dumps(schema)


def avro_fields(schema_json: str, *, source: str, timestamp_field: str) -> tuple[FieldSpec, ...]:
    """The fields of an ``AvroFormat`` record schema.

    Raises:
        DefinitionError: not an Avro record; a field of a type not listed in the module
            docstring; a timestamp logical type on another field; no ``timestamp_field``.
    """
    try:
        schema = json.loads(schema_json)
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"source {source}: the Avro schema is not JSON ({exc})") from exc
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise DefinitionError(f"source {source}: the Avro schema must be a record")
    fields: list[FieldSpec] = []
    for entry in schema.get("fields", []):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise DefinitionError(f"source {source}: an Avro field has no name")
        avro_type: Any = entry["type"]
        if isinstance(avro_type, list) and len(avro_type) == 2 and "null" in avro_type:
            avro_type = next(t for t in avro_type if t != "null")  # nullable T
        logical = None
        if isinstance(avro_type, dict) and avro_type.get("type") == "enum":
            avro_type = "string"
        elif isinstance(avro_type, dict):
            logical = avro_type.get("logicalType")
            avro_type = avro_type.get("type")
        if logical in _AVRO_TIMESTAMPS and name != timestamp_field:
            raise DefinitionError(
                f"source {source}, field {name}: only the timestamp field "
                f"({timestamp_field}) may be a {logical}"
            )
        if not isinstance(avro_type, str) or avro_type not in _AVRO_KINDS:
            raise DefinitionError(
                f"source {source}, field {name}: Avro type {json.dumps(entry['type'])} is not "
                f"supported (use one of {', '.join(_AVRO_KINDS)}, enum, or one of them nullable)"
            )
        kind: ValueKind = "int64" if name == timestamp_field else _AVRO_KINDS[avro_type]
        fields.append(FieldSpec(name, kind))
    _require_timestamp(fields, source, timestamp_field)
    return tuple(fields)


def _json_schema(text: str, source: str) -> dict[str, Any]:
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"source {source}: the JSON schema is not JSON ({exc})") from exc
    if not isinstance(schema, dict):
        raise DefinitionError(f"source {source}: the JSON schema must be an object")
    return schema


def _ddl_schema(text: str, source: str) -> dict[str, Any]:
    properties: dict[str, dict[str, str]] = {}
    # Split on commas outside parentheses: DECIMAL(10, 2) is one field.
    for part in re.split(r",(?![^()]*\))", text):
        match = _DDL_FIELD.match(part)
        if match is None:
            raise DefinitionError(
                f"source {source}: {part.strip()!r} is neither a JSON Schema nor a Spark DDL "
                "field ('name TYPE')"
            )
        name, type_name = match.group(1), match.group(2).lower()
        if type_name not in _DDL_TYPES:
            raise DefinitionError(
                f"source {source}, field {name}: Spark type {type_name.upper()} is not supported "
                f"(use one of {', '.join(t.upper() for t in _DDL_TYPES)})"
            )
        properties[name] = dict(_DDL_TYPES[type_name])
    return {"type": "object", "properties": properties, "required": list(properties)}


def _require_timestamp(fields: list[FieldSpec], source: str, timestamp_field: str) -> None:
    if not any(f.name == timestamp_field for f in fields):
        raise DefinitionError(
            f"source {source}: timestamp_field {timestamp_field} is not a field of its schema"
        )
