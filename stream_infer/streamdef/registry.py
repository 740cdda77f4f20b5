"""What the Avro decoder needs of a schema registry: the writer's schema for an id.

The Confluent wire format frames each record as magic byte ``0``, a 4-byte big-endian schema
id, then the Avro body written with that schema. The adapter over
``confluent_kafka.schema_registry`` is :mod:`stream_infer.kafka.schema_registry` (an edge);
tests may give a small fake.
"""

from __future__ import annotations

from typing import Final, Protocol

from stream_infer.errors import DeadLetterError

#: The first byte of every record in the Confluent wire format.
MAGIC_BYTE: Final = 0
#: Magic byte plus schema id.
HEADER_BYTES: Final = 5


class UnknownSchemaError(DeadLetterError):
    """A record names a schema id the registry does not hold (or holds as a non-Avro
    schema): the record cannot be read, so it is dead-lettered."""


class SchemaRegistry(Protocol):
    """Writer schemas by id. Ids are immutable in a registry: callers may cache answers."""

    def schema_text(self, schema_id: int) -> str:
        """The Avro schema (JSON text) registered under ``schema_id``.

        Raises:
            UnknownSchemaError: no schema has this id, or it is not an Avro schema.
            RetryableError: the registry did not answer (down, timing out, 5xx).
            ConfigError: the registry refused us (401/403): retrying cannot help.
        """
        ...


def frame(schema_id: int, body: bytes) -> bytes:
    """``body`` in the Confluent wire format under ``schema_id`` (what producers write)."""
    return bytes([MAGIC_BYTE]) + schema_id.to_bytes(4, "big") + body
