"""What a Kafka produce error means for the record that caused it.

librdkafka retries what can be retried (``message.timeout.ms`` bounds it), so an error that
reaches a delivery report is final for that record. Some errors are the record's own fault (too
large, invalid): those records are dead-lettered and the stream goes on. Every other error means
Kafka itself is failing (timed out, fenced, unauthorised): the worker stops without storing the
batch's offsets, and a restart re-processes it (docs/ARCHITECTURE.md, "Reliability").
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError

#: Refusals caused by the record itself: the same record would be refused again.
RECORD_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.POLICY_VIOLATION,
    }
)


def is_record_error(err: Any) -> bool:
    """True when ``err`` (a ``KafkaError``) blames the record, not the cluster."""
    code = err.code() if hasattr(err, "code") else None
    return code in RECORD_ERRORS


def describe(err: Any) -> str:
    """A short human text for a ``KafkaError`` (or anything else)."""
    if hasattr(err, "str") and hasattr(err, "name"):
        return f"{err.name()}: {err.str()}"
    return str(err)
