"""Decoding cost of the generated event decoders against today's hand-written one.

``python -m bench.streamdef_decode [--events 100000] [--repeats 3]``

The same ``--events`` fraud transactions (the shape loadgen replays: ids as strings, RFC 3339
UTC times, float amounts) go through, in batches of 512:

- ``wire``: ``stream_infer.wire.decode_batch``, the hand-written msgspec decoder of today;
- ``json``: the decoder generated for the fraud example's transaction schema (its JSON Schema
  with wire.py's bounds: amount in [0, 1e9], ids up to 128 characters);
- ``avro``: the Avro decoder on the same events as bare Avro bodies (tx_datetime a
  ``timestamp-millis``);
- ``avro-wire``: the same bodies in the Confluent wire format, writer schema by id from an
  in-process registry (fetched once, as a real one would be, then cached).

Each repeat runs the four in turn (so machine noise falls on all of them); the table gives the
median over repeats of CPU µs an event (``time.process_time``: the decoders are single-
threaded, and on a shared machine wall time charges other processes' work to us) and each
decoder's ratio to ``wire``. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import orjson

from bench.results_io import write_results
from stream_infer import wire
from stream_infer.streamdef.decoders import build_decoder
from stream_infer.streamdef.registry import frame
from stream_infer.streamdef.schemas import avro_fields, json_fields
from stream_infer.streamdef.spec import SourceSpec

BATCH = 512
_ID = {"type": "string", "maxLength": 128}
TRANSACTION_SCHEMA = {
    "type": "object",
    "properties": {
        "transaction_id": _ID,
        "tx_datetime": {"type": "string", "format": "date-time"},
        "customer_id": _ID,
        "terminal_id": _ID,
        "tx_amount": {"type": "number", "minimum": 0, "maximum": 1e9},
    },
    "required": ["transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount"],
}
AVRO_SCHEMA = {
    "type": "record",
    "name": "Transaction",
    "fields": [
        {"name": "transaction_id", "type": "string"},
        {"name": "tx_datetime", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "customer_id", "type": "string"},
        {"name": "terminal_id", "type": "string"},
        {"name": "tx_amount", "type": "double"},
    ],
}


def _source(fmt: str) -> SourceSpec:
    if fmt == "json":
        fields, text = json_fields(
            json.dumps(TRANSACTION_SCHEMA), source="transactions", timestamp_field="tx_datetime"
        )
    else:
        text = json.dumps(AVRO_SCHEMA)
        fields = avro_fields(text, source="transactions", timestamp_field="tx_datetime")
    return SourceSpec(
        "transactions",
        "transactions",
        "customer_id",
        "tx_datetime",
        "transaction_id",
        fields,
        "json" if fmt == "json" else "avro",
        text,
    )


class _Registry:
    """One schema under id 1, as a registry would answer."""

    def schema_text(self, schema_id: int) -> str:
        return json.dumps(AVRO_SCHEMA)


def _events(n: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    start = datetime(2026, 4, 1, tzinfo=UTC)
    return [
        {
            "transaction_id": str(i),
            "tx_datetime": start + timedelta(seconds=i * 13 + rng.randrange(13)),
            "customer_id": str(rng.randrange(5000)),
            "terminal_id": str(rng.randrange(10_000)),
            "tx_amount": round(rng.lognormvariate(3.5, 1.0), 2),
        }
        for i in range(n)
    ]


def _avro(events: list[dict[str, Any]]) -> list[bytes]:
    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    out = []
    for e in events:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, e)
        out.append(buf.getvalue())
    return out


def _cpu_us_per_event(decode: Callable[[Sequence[bytes]], Any], values: list[bytes]) -> float:
    batches = [values[i : i + BATCH] for i in range(0, len(values), BATCH)]
    start = time.process_time()
    for batch in batches:
        decode(batch)
    return (time.process_time() - start) / len(values) * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark, print the table and write it to bench/results/."""
    parser = argparse.ArgumentParser(prog="python -m bench.streamdef_decode")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    events = _events(args.events)
    as_json = [
        orjson.dumps({**e, "tx_datetime": e["tx_datetime"].isoformat().replace("+00:00", "Z")})
        for e in events
    ]
    bodies = _avro(events)
    framed = [frame(1, b) for b in bodies]
    json_decoder = build_decoder(_source("json"))
    avro_decoder = build_decoder(_source("avro"))
    wire_avro = build_decoder(_source("avro"), registry=_Registry())
    runs: dict[str, tuple[Callable[[Sequence[bytes]], Any], list[bytes]]] = {
        "wire": (wire.decode_batch, as_json),
        "json": (json_decoder.decode_batch, as_json),
        "avro": (avro_decoder.decode_batch, bodies),
        "avro-wire": (wire_avro.decode_batch, framed),
    }
    for name, (decode, values) in runs.items():  # every decoder keeps every event
        kept = decode(values[:BATCH]).kept
        assert len(kept) == min(BATCH, len(values)), name
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (decode, values) in runs.items():
            samples[name].append(_cpu_us_per_event(decode, values))
    medians = {name: statistics.median(s) for name, s in samples.items()}
    lines = [
        f"Decoding {args.events} fraud transactions in batches of {BATCH}, median of "
        f"{args.repeats} (CPU µs an event)",
        "",
        "| decoder | µs/event | x wire | samples |",
        "|---|---:|---:|---|",
    ]
    for name, median in medians.items():
        shown = ", ".join(f"{s:.3f}" for s in samples[name])
        lines.append(f"| {name} | {median:.3f} | {median / medians['wire']:.2f} | {shown} |")
    table = "\n".join(lines)
    print(table)
    path = write_results(
        "streamdef_decode_",
        {"events": args.events, "batch": BATCH, "samples_us": samples, "median_us": medians},
        table,
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
