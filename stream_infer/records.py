"""What the pipeline hands a transport to produce, and how large Kafka counts it.

Transport-free: the Kafka worker ships these, the sidecar never sees them. The size here is what
librdkafka compares with ``message.max.bytes`` less its own fixed framing of a record
(:data:`stream_infer.kafka.clients.RECORD_OVERHEAD_BYTES` bounds that).
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce: scores keep the input's partition (co-partitioning)."""

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
