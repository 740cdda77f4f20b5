"""What the pipeline hands a transport to produce, how large Kafka counts it, and the score
records' bulk encoder.

Transport-free: the Kafka worker ships these, the sidecar never sees them. The size here is what
librdkafka compares with ``message.max.bytes`` less its own fixed framing of a record
(:data:`stream_infer.kafka.clients.RECORD_OVERHEAD_BYTES` bounds that).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

import msgspec

Headers = list[tuple[str, bytes]]


class OutRecord(NamedTuple):
    """A record to produce: scores keep the input's partition (co-partitioning).

    A named tuple, not a dataclass: one is built per event on the hot path.
    """

    value: bytes
    key: bytes | None
    partition: int | None
    headers: Headers | None

    def size(self) -> int:
        """Bytes of value, key and header names and values: the record's payload."""
        return record_size(self.value, self.key, self.headers)


def record_size(value: bytes | None, key: bytes | None, headers: Headers | None) -> int:
    """Bytes of ``value``, ``key`` and every header's name (UTF-8) and value."""
    size = len(value or b"") + len(key or b"")
    for name, data in headers or ():
        size += len(name.encode("utf-8", "surrogatepass")) + len(data or b"")
    return size


class ScoreRecord(msgspec.Struct, omit_defaults=True, gc=False):
    """A ``scores`` record as written (:class:`stream_infer.events.Score` reads it)."""

    transaction_id: str
    customer_id: str
    score: float
    is_fraud: bool
    model_name: str
    model_version: int
    model_semver: str
    model_role: str
    #: The event's time: an RFC 3339 UTC string (``...Z``) or a datetime (encoded the same).
    event_time: Any
    scored_at: datetime
    latency_ms: float
    flags: list[str] | None = None
    features: Any = None


@cache
def feature_values(names: tuple[str, ...]) -> Any:
    """A struct of the feature names, in order: one JSON object per row (the service's inputs)."""
    return msgspec.defstruct("FeatureValues", [(name, float) for name in names], gc=False)


_ENCODER = msgspec.json.Encoder()


def encode_lines(records: Sequence[msgspec.Struct]) -> list[bytes]:
    """Each record's JSON, encoded in one call (JSON has no raw newline to split on wrongly)."""
    if not records:
        return []
    return _ENCODER.encode_lines(records).split(b"\n")[:-1]
