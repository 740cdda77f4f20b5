"""Wire schemas (pydantic) and their orjson codecs.

Every event crossing Kafka or HTTP is one of these. Decoding never raises anything but
:class:`~stream_infer.errors.DeadLetterError`, whose reason says what was wrong, so a bad event
is dead-lettered and the worker keeps going.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    field_serializer,
    field_validator,
)

from stream_infer.errors import DeadLetterError

#: Header carrying the time (epoch ns) loadgen intended to send the event at.
INTENDED_SEND_HEADER = "x-intended-send-ns"


#: Event times must fall in [1970-01-01, 3000-01-01) UTC: card transactions, not history.
MIN_EPOCH_S = 0
MAX_EPOCH_S = 32_503_680_000


def _as_utc(value: datetime) -> datetime:
    # Naive timestamps are UTC by contract: the simulator and the handbook write them so.
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    seconds = aware.timestamp()
    if not MIN_EPOCH_S <= seconds < MAX_EPOCH_S:
        raise ValueError("date-time out of range (1970-01-01 to 2999-12-31 UTC)")
    return aware.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def _rfc3339(value: object) -> object:
    # Keep HTTP and Kafka in agreement: both take RFC 3339 date-times only (pydantic alone
    # would also take "1700000000" as a Unix time; the stream's msgspec decoder does not).
    if isinstance(value, datetime):
        return value
    if not (isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[13] == ":"):
        raise ValueError("expected an RFC 3339 date-time string, e.g. 2026-04-01T10:11:12Z")
    return value


def _id(value: object) -> object:
    # Ids are strings; integers are accepted and normalised (the simulator writes ints).
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError("expected a string or an integer id")
    return value


Identifier = Annotated[str, BeforeValidator(_id), StringConstraints(min_length=1, max_length=128)]
RfcDatetime = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_as_utc)]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Transaction(_Event):
    """A card transaction as published on the ``transactions`` topic (key: customer_id)."""

    transaction_id: Identifier
    tx_datetime: RfcDatetime
    customer_id: Identifier
    terminal_id: Identifier
    tx_amount: Annotated[float, Strict()] = Field(ge=0, allow_inf_nan=False, le=1e9)

    @property
    def epoch_seconds(self) -> int:
        """Event time in whole UTC seconds (the features' resolution)."""
        return int(self.tx_datetime.timestamp())


class Label(_Event):
    """A transaction's fraud label, published 7 days after it (key: terminal_id)."""

    transaction_id: Identifier
    tx_datetime: UtcDatetime
    terminal_id: Identifier
    tx_fraud: int = Field(ge=0, le=1)


class Score(_Event):
    """The model's verdict on one transaction (key: customer_id)."""

    transaction_id: str
    customer_id: str
    score: float
    is_fraud: bool
    model_name: str
    model_version: int
    event_time: datetime
    scored_at: datetime
    latency_ms: float
    features: dict[str, float] | None = None
    flags: list[str] = Field(default_factory=list)


class DeadLetter(_Event):
    """An event we could not process, with everything needed to find and replay it.

    ``original`` and ``original_key`` travel as base64. A letter is bounded in size
    (:mod:`stream_infer.dead_letters`): when ``original_truncated`` is true, ``original`` is only
    a prefix of the record's value, and the whole record is at source topic/partition/offset,
    identified by ``original_size`` and ``original_sha256``; ``original_key_truncated`` likewise
    for the key. Letters written before these fields existed decode with their defaults
    (size and digest unknown, nothing truncated).
    """

    original: bytes
    original_key: bytes | None = None
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    failed_at: datetime
    original_size: int | None = Field(default=None, ge=0)
    original_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    original_truncated: bool = False
    original_key_truncated: bool = False

    @field_validator("original", "original_key", mode="before")
    @classmethod
    def _from_b64(cls, value: object) -> object:
        # JSON carries base64 text; Python callers pass the bytes themselves.
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError as exc:
                raise ValueError(f"not base64: {exc}") from exc
        return value

    @field_serializer("original", "original_key")
    def _b64(self, value: bytes | None) -> str | None:
        return None if value is None else base64.b64encode(value).decode("ascii")


EventT = TypeVar("EventT", bound="_Event")


def _reason(kind: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<event>"
        parts.append(f"{loc}: {err['msg']}")
    return f"invalid {kind}: " + "; ".join(parts)


def _decode(model: type[EventT], kind: str, raw: bytes | None) -> EventT:
    if not raw:
        raise DeadLetterError("empty message value")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise DeadLetterError(f"not valid JSON: {errors[0]['msg']}") from exc
        raise DeadLetterError(_reason(kind, exc)) from exc


def decode_transaction(raw: bytes | None) -> Transaction:
    """Parse and validate one transaction.

    Raises:
        DeadLetterError: the bytes are empty, not JSON, or fail validation (reason says which).
    """
    return _decode(Transaction, "transaction", raw)


def decode_label(raw: bytes | None) -> Label:
    """Parse and validate one label.

    Raises:
        DeadLetterError: the bytes are empty, not JSON, or fail validation (reason says which).
    """
    return _decode(Label, "label", raw)


def encode(event: BaseModel) -> bytes:
    """Serialize any schema to compact JSON bytes."""
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))


def encode_dict(payload: dict[str, Any]) -> bytes:
    """Serialize a plain dict (hot path: skips pydantic's serializer)."""
    return orjson.dumps(payload)


def encode_score(payload: dict[str, Any]) -> bytes:
    """Serialize a score dict; naive datetimes are UTC by contract and written as such."""
    return orjson.dumps(payload, option=orjson.OPT_NAIVE_UTC)


def utc_from_epoch(seconds: float) -> datetime:
    """An aware UTC datetime for an epoch timestamp."""
    return datetime.fromtimestamp(seconds, tz=UTC)
