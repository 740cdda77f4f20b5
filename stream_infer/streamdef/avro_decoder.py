"""Avro events: fastavro's schemaless reader, one call a record; columns checked in bulk.

The reader schema is the source's ``schema_text`` (an Avro record), parsed once. Two framings:

- no schema registry: each record is a bare Avro body written with the repository's schema;
- a schema registry: each record is in the Confluent wire format (magic byte 0, 4-byte
  big-endian schema id, body); the writer's schema is fetched by id (cached per id) and
  resolved against the reader schema (Avro schema resolution, fastavro's). An unknown id
  dead-letters the record naming the id (remembered for a minute, so a stream of junk ids does
  not call the registry per record); a registry that does not answer raises RetryableError
  out of ``decode_batch``, the worker pauses and retries the batch.

The timestamp field is a ``long`` (or ``int``): epoch seconds, or ``timestamp-millis`` /
``timestamp-micros`` / ``timestamp-nanos`` (and their ``local-`` forms, taken as UTC), floored
to seconds. The logical type is stripped before parsing so fastavro hands over the raw number
(no datetime per record, no overflow for absurd values), and the unit is the writer's.
Kinds: float64 <- double, float, int, long; int64 <- int, long; bool <- boolean; string <-
string, enum. A field may be nullable (``["null", T]``); a null is refused naming it. Strings
must be non-empty, floats finite (Avro can carry NaN), bytes after the record refuse it (a
body written with another schema often parses partway).
"""

from __future__ import annotations

import copy
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

import fastavro
import numpy as np
from cachetools import TTLCache

from stream_infer.errors import DeadLetterError, DefinitionError
from stream_infer.streamdef.decoded import (
    DecodedEvents,
    FieldLimits,
    dtype_of,
    empty_columns,
    event_fields,
    reason_prefix,
    refuse_rows,
    time_reason,
    time_reasons,
)
from stream_infer.streamdef.registry import (
    HEADER_BYTES,
    MAGIC_BYTE,
    SchemaRegistry,
    UnknownSchemaError,
)
from stream_infer.streamdef.spec import FieldSpec, SourceSpec

_EMPTY: Final = "empty message value"
_ADDRESS: Final = re.compile(r" at 0x[0-9a-fA-F]+")
_UNITS: Final = {
    None: 1,
    "timestamp-millis": 1_000,
    "timestamp-micros": 1_000_000,
    "timestamp-nanos": 1_000_000_000,
    "local-timestamp-millis": 1_000,
    "local-timestamp-micros": 1_000_000,
    "local-timestamp-nanos": 1_000_000_000,
}
_ACCEPTS: Final = {
    "float64": {"double", "float", "int", "long"},
    "int64": {"int", "long"},
    "bool": {"boolean"},
    "string": {"string", "enum"},
}
#: Unknown or unusable schema ids are remembered this long (seconds) before asking again.
UNKNOWN_ID_TTL_S: Final = 60.0


def _branch(typ: Any) -> tuple[Any, bool]:
    """A field type without its null branch, and whether it had one."""
    if isinstance(typ, list):
        rest = [t for t in typ if t != "null"]
        return (rest[0] if len(rest) == 1 else rest), len(rest) < len(typ)
    return typ, False


def _base(typ: Any) -> str:
    if isinstance(typ, dict):
        return str(typ.get("type"))
    return str(typ) if isinstance(typ, str) else "union"


def _strip_time(schema: dict[str, Any], field: str) -> tuple[dict[str, Any], int]:
    """``schema`` with the timestamp field's logical type removed, and its unit's divisor
    to whole seconds (1 when the field is absent: schema resolution then decides)."""
    out = copy.deepcopy(schema)
    for f in out.get("fields", []):
        if f.get("name") != field:
            continue
        typ, nullable = _branch(f["type"])
        logical = typ.get("logicalType") if isinstance(typ, dict) else None
        if _base(typ) not in ("int", "long") or logical not in _UNITS:
            raise ValueError(f"{field}: a long (epoch seconds or timestamp-millis/micros/nanos)")
        bare = _base(typ)
        f["type"] = ["null", bare] if nullable else bare
        return out, _UNITS[logical]
    return out, 1


def _load(text: str) -> dict[str, Any]:
    schema = json.loads(text)
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError("not an Avro record schema")
    return schema


def _not_avro(schema_id: int | None) -> str:
    return "not Avro" if schema_id is None else f"not Avro (schema id {schema_id})"


@dataclass(frozen=True)
class _Writer:
    schema: Any  # fastavro's parsed schema
    divisor: int
    #: The parsed reader schema, or None when the writer's is the same (no resolution).
    reader: Any


class AvroDecoder:
    """The generated decoder of one Avro source (see the module docstring for the rules)."""

    def __init__(
        self,
        source: SourceSpec,
        *,
        registry: SchemaRegistry | None = None,
        limits: Mapping[str, FieldLimits] | None = None,
    ) -> None:
        """Raises:
        DefinitionError: the schema is not an Avro record, lacks a field, or a field's Avro type
            does not give the field's kind (the message names the field)."""
        self._source = source
        self._fields = event_fields(source)
        self._prefix = reason_prefix(source)
        self._limits = dict(limits or {})
        self._registry = registry
        ts = source.timestamp_field
        try:
            reader = _load(source.schema_text)
            stripped, divisor = _strip_time(reader, ts)
            self._reader = fastavro.parse_schema(stripped)
        except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
            raise DefinitionError(f"source {source.name}: Avro schema: {exc}") from exc
        self._stripped = json.dumps(stripped, sort_keys=True)
        types = {f.get("name"): f.get("type") for f in stripped.get("fields", [])}
        self._nullable: set[str] = set()
        for spec in self._fields:
            if spec.name not in types:
                raise DefinitionError(f"source {source.name}: Avro schema has no field {spec.name}")
            typ, nullable = _branch(types[spec.name])
            accepts = {"int", "long"} if spec.name == ts else _ACCEPTS[spec.kind]
            if _base(typ) not in accepts:
                raise DefinitionError(
                    f"source {source.name}: field {spec.name}: Avro type {types[spec.name]} "
                    f"does not give a {spec.kind}"
                )
            if nullable:
                self._nullable.add(spec.name)
        self._plain = _Writer(self._reader, divisor, None)
        self._writers: dict[int, _Writer] = {}
        self._unknown: TTLCache[int, str] = TTLCache(maxsize=4096, ttl=UNKNOWN_ID_TTL_S)
        names = [f.name for f in self._fields]
        self._row = itemgetter(*names) if len(names) > 1 else lambda r: (r[names[0]],)

    @property
    def source(self) -> SourceSpec:
        """The source this decoder reads."""
        return self._source

    def _writer(self, schema_id: int) -> _Writer:
        """The parsed writer schema of ``schema_id``, fetched once.

        Raises:
            UnknownSchemaError: unknown to the registry, or not a usable Avro record schema.
            RetryableError, ConfigError: as :meth:`SchemaRegistry.schema_text`.
        """
        known = self._writers.get(schema_id)
        if known is not None:
            return known
        if schema_id in self._unknown:
            raise UnknownSchemaError(self._unknown[schema_id])
        assert self._registry is not None
        try:
            text = self._registry.schema_text(schema_id)
            stripped, divisor = _strip_time(_load(text), self._source.timestamp_field)
            parsed = fastavro.parse_schema(stripped)
        except UnknownSchemaError as exc:
            self._unknown[schema_id] = exc.reason
            raise
        except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
            reason = f"schema id {schema_id}: not a usable Avro record schema: {exc}"
            self._unknown[schema_id] = reason
            raise UnknownSchemaError(reason) from exc
        same = json.dumps(stripped, sort_keys=True) == self._stripped
        writer = _Writer(parsed, divisor, None if same else self._reader)
        self._writers[schema_id] = writer
        return writer

    def _read(self, raw: bytes | None) -> tuple[dict[str, Any], int]:
        """One record and its timestamp divisor.

        Raises:
            DeadLetterError: empty, badly framed, unknown schema id, or not Avro.
            RetryableError, ConfigError: the registry's (see :meth:`_writer`).
        """
        if not raw:
            raise DeadLetterError(_EMPTY)
        fo = io.BytesIO(raw)
        schema_id = None
        if self._registry is None:
            writer = self._plain
        else:
            if len(raw) < HEADER_BYTES or raw[0] != MAGIC_BYTE:
                raise DeadLetterError(
                    "not in the Confluent wire format (magic byte 0, 4-byte schema id): "
                    + (f"starts with byte {raw[0]}" if raw[0] != MAGIC_BYTE else "too short")
                )
            schema_id = int.from_bytes(raw[1:HEADER_BYTES], "big")
            writer = self._writers.get(schema_id) or self._writer(schema_id)
            fo.seek(HEADER_BYTES)
        try:
            record = fastavro.schemaless_reader(fo, writer.schema, writer.reader)
        except EOFError as exc:
            raise DeadLetterError(f"{_not_avro(schema_id)}: the record ends early") from exc
        except Exception as exc:  # hostile bytes raise a dozen kinds of error in fastavro
            # Its messages may hold an object's repr (an address): the reason must not vary.
            text = _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")
            raise DeadLetterError(f"{_not_avro(schema_id)}: {text}") from exc
        left = len(raw) - fo.tell()
        if left:
            raise DeadLetterError(f"{_not_avro(schema_id)}: {left} bytes after the record")
        assert isinstance(record, dict)  # the reader schema is a record
        return record, writer.divisor

    def decode_batch(
        self, values: Sequence[bytes | None], *, max_epoch_s: int | None = None
    ) -> DecodedEvents:
        """One fastavro call a record, then columns and checks in bulk; never raises for bad
        input (each bad record is in ``refused``, the reason naming the field).

        Raises:
            RetryableError: the schema registry did not answer (nothing decided).
            ConfigError: the schema registry refused our credentials.
        """
        kept: list[int] = []
        records: list[dict[str, Any]] = []
        divisors: list[int] = []
        refused: list[tuple[int, str]] = []
        read = self._read
        for i, raw in enumerate(values):
            try:
                record, divisor = read(raw)
            except DeadLetterError as exc:
                refused.append((i, exc.reason))
                continue
            records.append(record)
            divisors.append(divisor)
            kept.append(i)
        if not records:
            return DecodedEvents(
                empty_columns(self._fields, self._source.timestamp_field), kept, refused
            )
        reasons: dict[int, list[str]] = {}
        columns = {}
        for spec, values_ in zip(
            self._fields, zip(*map(self._row, records), strict=True), strict=True
        ):
            columns[spec.name] = self._column(spec, list(values_), divisors, reasons)
        ts = self._source.timestamp_field
        time_reasons(columns[ts], ts, max_epoch_s, reasons)
        return refuse_rows(DecodedEvents(columns, kept, refused), reasons, self._prefix)

    def _column(
        self, spec: FieldSpec, values: list[Any], divisors: list[int], reasons: dict[int, list[str]]
    ) -> np.ndarray:
        """One field's column; rows with a bad value get their reason in ``reasons``. The masks
        only find them: the text is :func:`check_value`'s, as in :meth:`decode_one`."""
        original = values
        flagged: list[int] = []
        if spec.name in self._nullable and None in values:
            flagged = [j for j, v in enumerate(values) if v is None]
            filler = "" if spec.kind == "string" else 0
            values = [filler if v is None else v for v in values]
        lim = self._limits.get(spec.name) or FieldLimits()
        if spec.name == self._source.timestamp_field:
            raw = np.array(values, dtype=np.int64)
            col = raw // np.array(divisors, dtype=np.int64) if max(divisors) > 1 else raw
        elif spec.kind == "string":
            col = np.empty(len(values), dtype=object)
            col[:] = values
            bad = col == ""
            if lim.max_length is not None:
                bad |= np.fromiter(map(len, values), np.int64, len(values)) > lim.max_length
            flagged += np.flatnonzero(bad).tolist()
        else:
            col = np.array(values, dtype=dtype_of(spec.kind))
            if spec.kind != "bool":
                bad = ~np.isfinite(col) if spec.kind == "float64" else np.zeros(len(col), bool)
                if lim.ge is not None:
                    bad |= col < lim.ge
                if lim.le is not None:
                    bad |= col > lim.le
                flagged += np.flatnonzero(bad).tolist()
        timestamp = spec.name == self._source.timestamp_field
        for j in sorted(set(flagged)):
            why = check_value(spec, original[j], lim, timestamp=timestamp)
            if why is not None:
                reasons.setdefault(j, []).append(why)
        return col

    def decode_one(self, raw: bytes | None, *, max_epoch_s: int | None = None) -> dict[str, Any]:
        """One record's values, checked value by value in plain Python (the reference of
        :meth:`decode_batch`).

        Raises:
            DeadLetterError: the record is refused, with the reason :meth:`decode_batch` gives.
            RetryableError, ConfigError: the registry's.
        """
        record, divisor = self._read(raw)
        out: dict[str, Any] = {}
        problems: list[str] = []
        for spec in self._fields:
            value = record[spec.name]
            why = check_value(
                spec,
                value,
                self._limits.get(spec.name) or FieldLimits(),
                timestamp=spec.name == self._source.timestamp_field,
            )
            if why is not None:
                problems.append(why)
                continue
            if spec.name == self._source.timestamp_field:
                value //= divisor
            out[spec.name] = value
        ts = self._source.timestamp_field
        if ts in out:
            why = time_reason(ts, out[ts], max_epoch_s)
            if why is not None:
                problems.append(why)
        if problems:
            raise DeadLetterError(self._prefix + "; ".join(problems))
        return out


def check_value(spec: FieldSpec, value: Any, lim: FieldLimits, *, timestamp: bool) -> str | None:
    """Why one decoded Avro value is refused (naming its field), or None if it is not. A
    timestamp's range is :func:`~stream_infer.streamdef.decoded.time_reason`'s."""
    name = spec.name
    if value is None:
        return f"{name}: null"
    if timestamp or spec.kind == "bool":
        return None
    if spec.kind == "string":
        if value == "":
            return f"{name}: empty string"
        if lim.max_length is not None and len(value) > lim.max_length:
            return f"{name}: longer than {lim.max_length} characters"
        return None
    if spec.kind == "float64" and not math.isfinite(value):
        return f"{name}: {value} is not a finite number"
    if lim.ge is not None and value < lim.ge:
        return f"{name}: {value} is below {lim.ge}"
    if lim.le is not None and value > lim.le:
        return f"{name}: {value} is above {lim.le}"
    return None
