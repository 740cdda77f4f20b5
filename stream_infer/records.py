"""What the pipeline hands a transport to produce, how large Kafka counts it, and the score
records' bulk encoder.

Transport-free: the Kafka worker ships these, the sidecar never sees them. The size here is what
librdkafka compares with ``message.max.bytes`` less its own fixed framing of a record
(:data:`stream_infer.kafka.clients.RECORD_OVERHEAD_BYTES` bounds that).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from stream_infer.features.definitions import FEATURE_NAMES

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
    event_time: datetime
    scored_at: datetime
    latency_ms: float
    flags: list[str] | None = None
    features: Any = None


#: The feature names, in order, as one JSON object per row (names from the definitions).
FeatureValues: Any = msgspec.defstruct(
    "FeatureValues", [(name, float) for name in FEATURE_NAMES], gc=False
)
_ENCODER = msgspec.json.Encoder()


def encode_lines(records: Sequence[msgspec.Struct]) -> list[bytes]:
    """Each record's JSON, encoded in one call (JSON has no raw newline to split on wrongly)."""
    if not records:
        return []
    return _ENCODER.encode_lines(records).split(b"\n")[:-1]
