"""What every event decoder hands the pipeline, and the checks all of them share.

A decoded batch is the design's "event columns" (one numpy array per source field, in input
order: float64, int64, bool, or object arrays of ``str``; the source's timestamp field as int64
epoch seconds, floored, UTC) plus which input records were kept and which were refused, with a
reason naming the field. Decoders differ in how bytes become values; the time bounds and the
bookkeeping of refusals are here, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import numpy as np

from stream_infer.errors import DefinitionError
from stream_infer.event_time import REASON_KIND
from stream_infer.events import MAX_EPOCH_S, MIN_EPOCH_S
from stream_infer.streamdef.spec import FieldSpec, SourceSpec, ValueKind

_DTYPES: Final[dict[ValueKind, Any]] = {
    "float64": np.float64,
    "int64": np.int64,
    "bool": np.bool_,
    "string": object,
}
_RANGE: Final = "date-time out of range (1970-01-01 to 2999-12-31 UTC)"


@dataclass(frozen=True)
class FieldLimits:
    """Bounds a field's values must keep, beyond its kind: ``ge``/``le`` for numbers,
    ``max_length`` for strings. Strings are never empty, floats always finite, whatever the
    limits. (A JSON source's come from its JSON Schema: ``minimum``, ``maximum``,
    ``maxLength``.)"""

    ge: float | None = None
    le: float | None = None
    max_length: int | None = None


@dataclass
class DecodedEvents:
    """One decoded batch: ``columns`` for the records kept (``kept``: their input indexes, in
    order) and ``refused``: (input index, reason) of every other record, by index."""

    columns: dict[str, np.ndarray]
    kept: list[int]
    refused: list[tuple[int, str]]

    def __len__(self) -> int:
        return len(self.kept)


class BatchDecoder(Protocol):
    """Bytes of one source's records to event columns, built once for the source."""

    @property
    def source(self) -> SourceSpec:
        """The source this decoder reads."""
        ...

    def decode_batch(
        self, values: Sequence[bytes | None], *, max_epoch_s: int | None = None
    ) -> DecodedEvents:
        """Decode a batch; never raises for bad input (each bad record is in ``refused``,
        the reason naming the field). ``max_epoch_s``: events later than this are refused
        as ahead of the wall clock.

        Raises:
            RetryableError: a dependency (the schema registry) did not answer; nothing was
                decided, the same batch may be given again.
        """
        ...

    def decode_one(self, raw: bytes | None, *, max_epoch_s: int | None = None) -> dict[str, Any]:
        """One record's field values (timestamp as epoch seconds): the slow reference of
        :meth:`decode_batch`, record by record in plain Python.

        Raises:
            DeadLetterError: the record is refused (the same reason :meth:`decode_batch` gives).
            RetryableError: as :meth:`decode_batch`.
        """
        ...


def event_fields(source: SourceSpec) -> tuple[FieldSpec, ...]:
    """The fields a decoder produces: the source's, plus its timestamp field (int64) if the
    source does not list it.

    Raises:
        DefinitionError: the key or event id field is not one of the source's fields.
    """
    names = {f.name for f in source.fields}
    for role, name in (("key_field", source.key_field), ("event_id_field", source.event_id_field)):
        if name not in names:
            raise DefinitionError(f"source {source.name}: {role} {name!r} is not one of its fields")
    if source.timestamp_field in names:
        return source.fields
    return (*source.fields, FieldSpec(source.timestamp_field, "int64"))


def reason_prefix(source: SourceSpec) -> str:
    """How every reason for an invalid (but well-formed) record starts."""
    return f"invalid {source.name} event: "


def time_reason(field: str, seconds: int, max_epoch_s: int | None) -> str | None:
    """Why an event at epoch ``seconds`` is refused (naming ``field``), or None if it is not."""
    if not MIN_EPOCH_S <= seconds < MAX_EPOCH_S:
        return f"{field}: {_RANGE}"
    if max_epoch_s is not None and seconds > max_epoch_s:
        return (
            f"{field}: {REASON_KIND}: {_iso(seconds)} is ahead of the wall clock "
            f"(latest accepted {_iso(max_epoch_s)})"
        )
    return None


def _iso(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return f"epoch second {seconds}"


def empty_columns(fields: Iterable[FieldSpec], timestamp_field: str) -> dict[str, np.ndarray]:
    """Zero-length columns of the right dtypes."""
    return {
        f.name: np.empty(0, np.int64 if f.name == timestamp_field else _DTYPES[f.kind])
        for f in fields
    }


def dtype_of(kind: ValueKind) -> Any:
    """The numpy dtype of a column of ``kind``."""
    return _DTYPES[kind]


def refuse_rows(
    events: DecodedEvents, reasons: Mapping[int, list[str]], prefix: str
) -> DecodedEvents:
    """``events`` without the rows (positions in ``events.kept``) that ``reasons`` names, each
    refused with its reasons joined, prefixed by ``prefix``."""
    if not reasons:
        return events
    keep = np.ones(len(events.kept), dtype=bool)
    bad = sorted(reasons)
    keep[bad] = False
    refused = events.refused + [(events.kept[j], prefix + "; ".join(reasons[j])) for j in bad]
    refused.sort()
    return DecodedEvents(
        {name: col[keep] for name, col in events.columns.items()},
        [i for i, k in zip(events.kept, keep.tolist(), strict=True) if k],
        refused,
    )


def time_reasons(
    seconds: np.ndarray, field: str, max_epoch_s: int | None, into: dict[int, list[str]]
) -> None:
    """Add to ``into`` (row position -> reasons) every row whose time :func:`time_reason`
    refuses, with one vectorised test for the batch."""
    high = MAX_EPOCH_S if max_epoch_s is None else min(MAX_EPOCH_S, max_epoch_s + 1)
    ok = (seconds >= MIN_EPOCH_S) & (seconds < high)
    if ok.all():
        return
    for j in np.flatnonzero(~ok).tolist():
        reason = time_reason(field, int(seconds[j]), max_epoch_s)
        if reason is not None:
            into.setdefault(j, []).append(reason)
