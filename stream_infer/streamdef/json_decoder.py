"""JSON events: a msgspec Struct generated from the source's fields, one decode call a record.

What a JSON event must be (documented in docs/ARCHITECTURE.md, "Decoding user events"):

- a JSON object; fields the source does not name are skipped unvalidated (msgspec's speed);
- ``float64``: a JSON number (an integer is taken as a float); always finite: the non-JSON
  literals ``NaN``/``Infinity`` make the record not JSON, and a number too large for a double
  is refused; ``int64``: a JSON integer within int64; ``bool``: ``true``/``false``;
- ``string``: a non-empty string, or an integer, normalised to its decimal text (ids are often
  written as numbers);
- the timestamp field, as its JSON Schema type says: ``"string"`` (the default) an RFC 3339
  date-time (naive = UTC; an epoch number is refused, as on the stream and HTTP today: a bare
  number does not say whether it counts seconds or milliseconds), ``"integer"``/``"number"``
  epoch seconds. Either way in [1970, 3000) UTC, and int64 epoch seconds, floored, exactly;
- per-field :class:`~stream_infer.streamdef.decoded.FieldLimits`: the JSON Schema's
  ``minimum``, ``maximum`` and ``maxLength``, or the ones given (which win).

A refused record's reason names every bad field (the rare slow path validates field by field).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Annotated, Any, Final

import msgspec
import numpy as np

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
from stream_infer.streamdef.spec import FieldSpec, SourceSpec

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_EMPTY: Final = "empty message value"
_TZINFO: Final = attrgetter("tzinfo")
_EXACT_BELOW: Final = 2.0**33
#: Epoch-number timestamps beyond this many seconds are refused before any arithmetic.
_EPOCH_NUMBER_BOUND: Final = 10**15


def _properties(source: SourceSpec) -> dict[str, dict[str, Any]]:
    """The JSON Schema's ``properties`` (empty when the source has no schema text).

    Raises:
        DefinitionError: the schema text is not a JSON object.
    """
    if not source.schema_text.strip():
        return {}
    try:
        schema = json.loads(source.schema_text)
    except ValueError as exc:
        raise DefinitionError(f"source {source.name}: JSON schema is not JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise DefinitionError(f"source {source.name}: JSON schema is not an object")
    props = schema.get("properties") or {}
    return {k: v for k, v in props.items() if isinstance(v, dict)}


def _schema_limits(prop: Mapping[str, Any]) -> FieldLimits:
    ge, le, length = prop.get("minimum"), prop.get("maximum"), prop.get("maxLength")
    return FieldLimits(
        ge if isinstance(ge, int | float) else None,
        le if isinstance(le, int | float) else None,
        length if isinstance(length, int) else None,
    )


def _field_type(spec: FieldSpec, lim: FieldLimits) -> Any:
    """The msgspec type a (non-timestamp) field's JSON value must match."""
    if spec.kind == "string":
        return Annotated[str, msgspec.Meta(min_length=1, max_length=lim.max_length)] | int
    if spec.kind == "float64":
        return Annotated[float, msgspec.Meta(ge=lim.ge, le=lim.le)]
    if spec.kind == "int64":
        low = _INT64_MIN if lim.ge is None else max(_INT64_MIN, math.ceil(lim.ge))
        high = _INT64_MAX if lim.le is None else min(_INT64_MAX, math.floor(lim.le))
        return Annotated[int, msgspec.Meta(ge=low, le=high)]
    return bool


def _time_type(prop: Mapping[str, Any]) -> Any:
    """The timestamp's type: by its JSON Schema type, epoch seconds (``integer``/``number``,
    bounded so the floor fits int64; the range check then says what is wrong) or an RFC 3339
    string (``string``, the default)."""
    if prop.get("type") == "integer":
        return Annotated[int, msgspec.Meta(ge=-_EPOCH_NUMBER_BOUND, le=_EPOCH_NUMBER_BOUND)]
    if prop.get("type") == "number":
        return Annotated[float, msgspec.Meta(ge=-_EPOCH_NUMBER_BOUND, le=_EPOCH_NUMBER_BOUND)]
    return datetime


def _seconds(value: Any) -> int:
    """One timestamp value as whole UTC epoch seconds (floor, exact)."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int((aware - _EPOCH) // _SECOND)
    floored: int = math.floor(value)
    return floored


def _epoch_seconds(times: list[datetime]) -> np.ndarray:
    """Whole UTC seconds (floor), exactly as :func:`_seconds` gives them, for a batch."""
    if None in map(_TZINFO, times):  # naive = UTC by contract (timestamp() would say local)
        times = [t if t.tzinfo is not None else t.replace(tzinfo=UTC) for t in times]
    stamps = np.fromiter(map(datetime.timestamp, times), np.float64, len(times))
    seconds = np.floor(stamps).astype(np.int64)
    # timestamp() rounds the exact time to a double once. Below 2**33 s (the year 2242) half a
    # double's spacing is under a microsecond, so x.999999 never rounds up to the next second
    # and the floor is exact; later times are recomputed in integers.
    for j in np.flatnonzero(stamps >= _EXACT_BELOW).tolist():
        seconds[j] = _seconds(times[j])
    return seconds


class JsonDecoder:
    """The generated decoder of one JSON source (see the module docstring for the rules)."""

    def __init__(
        self, source: SourceSpec, *, limits: Mapping[str, FieldLimits] | None = None
    ) -> None:
        self._source = source
        self._fields = event_fields(source)
        self._prefix = reason_prefix(source)
        props = _properties(source)
        explicit = limits or {}
        self._types = {
            f.name: _time_type(props.get(f.name, {}))
            if f.name == source.timestamp_field
            else _field_type(f, explicit.get(f.name) or _schema_limits(props.get(f.name, {})))
            for f in self._fields
        }
        # Attribute names f0..fn, renamed to the real ones: any field name works, keywords too.
        attrs = [f"f{i}" for i in range(len(self._fields))]
        struct = msgspec.defstruct(
            "Event",
            list(zip(attrs, self._types.values(), strict=True)),
            rename=dict(zip(attrs, (f.name for f in self._fields), strict=True)),
            frozen=True,
            gc=False,
        )
        self._decoder = msgspec.json.Decoder(struct)

    @property
    def source(self) -> SourceSpec:
        """The source this decoder reads."""
        return self._source

    def decode_batch(
        self, values: Sequence[bytes | None], *, max_epoch_s: int | None = None
    ) -> DecodedEvents:
        """Every record through the generated decoder, then columns in bulk; never raises for
        bad input (each bad record is in ``refused``, the reason naming the field)."""
        fast = self._decoder.decode
        kept: list[int] = []
        events: list[Any] = []
        refused: list[tuple[int, str]] = []
        for i, raw in enumerate(values):
            try:
                events.append(fast(raw or b""))  # empty fails here too: the reason says why
            except (msgspec.MsgspecError, RecursionError):
                refused.append((i, self.reason(raw)))
                continue
            kept.append(i)
        out = DecodedEvents(self._columns(events), kept, refused)
        late: dict[int, list[str]] = {}
        ts = self._source.timestamp_field
        time_reasons(out.columns[ts], ts, max_epoch_s, late)
        return refuse_rows(out, late, self._prefix)

    def _columns(self, events: list[Any]) -> dict[str, np.ndarray]:
        if not events:
            return empty_columns(self._fields, self._source.timestamp_field)
        rows = map(msgspec.structs.astuple, events)
        columns: dict[str, np.ndarray] = {}
        for spec, values in zip(self._fields, zip(*rows, strict=True), strict=True):
            if spec.name == self._source.timestamp_field:
                if self._types[spec.name] is datetime:
                    columns[spec.name] = _epoch_seconds(list(values))
                else:  # epoch numbers, bounded well inside float64's exact integers
                    columns[spec.name] = np.floor(np.array(values, np.float64)).astype(np.int64)
            elif spec.kind == "string":
                # str() of a str is itself: only integer ids are rewritten.
                col = np.empty(len(values), dtype=object)
                col[:] = list(map(str, values))
                columns[spec.name] = col
            else:
                columns[spec.name] = np.array(values, dtype=dtype_of(spec.kind))
        return columns

    def decode_one(self, raw: bytes | None, *, max_epoch_s: int | None = None) -> dict[str, Any]:
        """One record's values, in plain Python (the reference of :meth:`decode_batch`).

        Raises:
            DeadLetterError: the record is refused, with the reason :meth:`decode_batch` gives.
        """
        try:
            event = self._decoder.decode(raw or b"")
        except (msgspec.MsgspecError, RecursionError):
            raise DeadLetterError(self.reason(raw)) from None
        out: dict[str, Any] = {}
        for spec, value in zip(self._fields, msgspec.structs.astuple(event), strict=True):
            if spec.name == self._source.timestamp_field:
                seconds = _seconds(value)
                why = time_reason(spec.name, seconds, max_epoch_s)
                if why is not None:
                    raise DeadLetterError(self._prefix + why)
                out[spec.name] = seconds
            elif spec.kind == "string":
                out[spec.name] = str(value)
            else:
                out[spec.name] = value
        return out

    def reason(self, raw: bytes | None) -> str:
        """Why the generated decoder refuses ``raw`` (the slow path: bad records only)."""
        if not raw:
            return _EMPTY
        try:
            self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            return self._prefix + (self._field_reasons(raw) or str(exc))
        except msgspec.DecodeError as exc:
            return f"not valid JSON: {self._non_finite(raw) or exc}"
        except RecursionError:
            # msgspec recurses into (even ignored) nested values, bounded by the interpreter's
            # recursion limit, and unwinds cleanly when it is hit.
            return "not valid JSON: nested too deeply to decode"
        return self._prefix + "refused"  # not reached: only refused records come here

    def _field_reasons(self, raw: bytes) -> str | None:
        """Every bad field of a well-formed record, or None when that cannot be said."""
        try:
            value = msgspec.json.decode(raw)
        except (msgspec.MsgspecError, RecursionError):
            return None
        if not isinstance(value, dict):
            return None
        problems = []
        for name, typ in self._types.items():
            if name not in value:
                problems.append(f"{name}: field required")
                continue
            try:
                converted = msgspec.convert(value[name], typ)
            except msgspec.ValidationError as exc:
                problems.append(f"{name}: {exc}")
                continue
            if name == self._source.timestamp_field:
                why = time_reason(name, _seconds(converted), None)
                if why is not None:
                    problems.append(why)
        return "; ".join(problems) or None

    def _non_finite(self, raw: bytes) -> str | None:
        """Which field holds a ``NaN``/``Infinity`` literal, when that is what broke the JSON
        (Python's json module reads those literals; msgspec, rightly, does not)."""
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError, TypeError):
            return None
        if not isinstance(value, dict):
            return None
        bad = [
            name
            for name in self._types
            if isinstance(value.get(name), float) and not math.isfinite(value[name])
        ]
        if not bad:
            return None
        return "; ".join(f"{name}: NaN or Infinity is not a JSON number" for name in bad)
