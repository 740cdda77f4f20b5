"""The decoder of a user's event source, generated once at start from its
:class:`~stream_infer.streamdef.spec.SourceSpec`: bytes of Kafka records to event columns.

``format == "json"``: :class:`~stream_infer.streamdef.json_decoder.JsonDecoder` (a msgspec
Struct generated from the fields); ``format == "avro"``:
:class:`~stream_infer.streamdef.avro_decoder.AvroDecoder` (fastavro), in the Confluent wire
format when a schema registry is given. Both keep the same promises
(:class:`~stream_infer.streamdef.decoded.BatchDecoder`): a batch never raises for bad input,
every refused record has a reason naming the field, and ``decode_one`` is the slow reference.
"""

from __future__ import annotations

from collections.abc import Mapping

from stream_infer.errors import DefinitionError
from stream_infer.streamdef.avro_decoder import AvroDecoder
from stream_infer.streamdef.decoded import BatchDecoder, DecodedEvents, FieldLimits
from stream_infer.streamdef.json_decoder import JsonDecoder
from stream_infer.streamdef.registry import SchemaRegistry, UnknownSchemaError
from stream_infer.streamdef.spec import SourceSpec

__all__ = [
    "BatchDecoder",
    "DecodedEvents",
    "FieldLimits",
    "SchemaRegistry",
    "UnknownSchemaError",
    "build_decoder",
]


def build_decoder(
    source: SourceSpec,
    *,
    registry: SchemaRegistry | None = None,
    limits: Mapping[str, FieldLimits] | None = None,
) -> BatchDecoder:
    """The decoder of ``source``'s records, built once (call it at start, not per batch).

    ``registry``: Avro records are then in the Confluent wire format, writer schemas fetched
    by id (a JSON source ignores it: its records are plain JSON). ``limits``: per-field bounds
    beyond the kinds (a JSON source also reads them from its JSON Schema: ``minimum``,
    ``maximum``, ``maxLength``; these win).

    Raises:
        DefinitionError: the source's schema does not give its fields' kinds (the message
            names the source and the field).
    """
    if source.format == "avro":
        return AvroDecoder(source, registry=registry, limits=limits)
    if source.format == "json":
        return JsonDecoder(source, limits=limits)
    raise DefinitionError(f"source {source.name}: unsupported format {source.format!r}")
