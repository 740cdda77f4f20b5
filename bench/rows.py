"""One benchmark row per child process: ``python -m bench.rows <row> <args-json>``.

Each row consumes ``events`` pre-loaded transactions from its own fresh topic and prints one
JSON line: events, seconds (first record in to last output acknowledged; group join excluded),
CPU seconds and the peak RSS of this process alone (``VmHWM``: see :mod:`bench.memory`), plus
what the row itself reports (the worker: its batches; exactly-once: transactions committed and
aborted).

``relay`` is no throughput row: the broker's two-hop latency floor (:mod:`bench.latency`). It
forwards each record unchanged, headers included, from ``source`` to ``sink`` with the worker's
own client settings, and prints ``assigned [...]`` once it owns partitions.

The worker rows differ only in what the harness passes: ``worker`` (the args' overrides of the
worker settings, e.g. exactly-once) and ``registry`` (one with a shadow version set).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from bench.memory import vm_hwm_mb
from stream_infer.config import Settings, load_settings
from stream_infer.features.definitions import (
    CustomerHistory,
    day_of,
    request_features,
)
from stream_infer.runtime import load_serving_model

#: What a row returns: events, seconds, and the row's own figures for its JSON line.
Timed = tuple[int, float, dict[str, Any]]


def _consumer(bootstrap: str, topic: str) -> Any:
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.offset.store": False,
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 10,
        }
    )
    c.subscribe([topic])
    return c


def _producer(bootstrap: str) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "enable.idempotence": True})


def transport(args: dict[str, Any]) -> Timed:
    """Consume, decode, re-encode, produce: no features, no model."""
    c, p = _consumer(args["bootstrap"], args["source"]), _producer(args["bootstrap"])
    n, target, t0 = 0, args["events"], 0.0
    while n < target:
        msgs = c.consume(512, 0.1)
        if not msgs:
            continue
        t0 = t0 or time.monotonic()
        for m in msgs:
            p.produce(
                args["sink"],
                orjson.dumps(orjson.loads(m.value())),
                m.key(),
                partition=m.partition(),
            )
        p.poll(0)
        c.store_offsets(message=msgs[-1])
        n += len(msgs)
    p.flush(60)
    return n, time.monotonic() - t0, {}


class _PerEventFeatures:
    """What a peer would write: a dict of customer histories, features per event."""

    def __init__(self) -> None:
        self.customers: dict[str, CustomerHistory] = {}

    def row(self, tx: dict[str, Any], seq: int) -> np.ndarray:
        from datetime import datetime

        t = int(datetime.fromisoformat(tx["tx_datetime"].replace("Z", "+00:00")).timestamp())
        hist = self.customers.setdefault(str(tx["customer_id"]), CustomerHistory())
        i = hist.add(t, seq, float(tx["tx_amount"]), str(tx["transaction_id"]))
        _ = day_of(t)
        return np.array(
            [[*request_features(t, float(tx["tx_amount"])), *hist.features_at(i), *(0.0,) * 6]],
            dtype=np.float32,
        )


def naive(args: dict[str, Any]) -> Timed:
    """A confluent-kafka loop calling the model once per event."""
    model = load_serving_model(_settings(args))
    feats = _PerEventFeatures()
    c, p = _consumer(args["bootstrap"], args["source"]), _producer(args["bootstrap"])
    n, target, t0 = 0, args["events"], 0.0
    while n < target:
        msgs = c.consume(512, 0.1)
        if not msgs:
            continue
        t0 = t0 or time.monotonic()
        for m in msgs:
            tx = orjson.loads(m.value())
            score = float(model.predict(feats.row(tx, m.offset()))[0])
            out = {"transaction_id": tx["transaction_id"], "score": score}
            p.produce(args["sink"], orjson.dumps(out), m.key(), partition=m.partition())
        p.poll(0)
        c.store_offsets(message=msgs[-1])
        n += len(msgs)
    p.flush(60)
    return n, time.monotonic() - t0, {}


def _mark(first: list[float]) -> None:
    if not first:
        first.append(time.monotonic())


def quix(args: dict[str, Any]) -> Timed:
    """A Quix Streams app as a Quix user writes it: per-event features and model call."""
    import logging

    from quixstreams import Application

    model = load_serving_model(_settings(args))
    feats = _PerEventFeatures()
    first: list[float] = []
    app = Application(
        broker_address=args["bootstrap"],
        consumer_group=f"quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        loglevel=logging.WARNING,
        use_changelog_topics=False,
        on_message_processed=lambda *_a: _mark(first),
    )
    source = app.topic(args["source"], value_deserializer="json")
    sink = app.topic(args["sink"], value_serializer="json")
    seq = iter(range(10**12))

    def score(tx: dict[str, Any]) -> dict[str, Any]:
        value = float(model.predict(feats.row(tx, next(seq)))[0])
        return {"transaction_id": tx["transaction_id"], "score": value}

    sdf = app.dataframe(source).apply(score)
    sdf.to_topic(sink)
    app.run(count=args["events"], collect=False)
    return args["events"], time.monotonic() - first[0], {}


def worker(args: dict[str, Any]) -> Timed:
    """The stream-infer worker, in this process, with the full feature pipeline."""
    from stream_infer.runtime import build_worker

    w = build_worker(_settings(args))
    started: list[float] = []
    handle = w._handle

    def timed(records: Any) -> None:
        if not started:
            started.append(time.monotonic())
        handle(records)

    w._handle = timed  # type: ignore[method-assign]
    stats = w.run(max_events=args["events"])
    seconds = time.monotonic() - started[0]
    extra: dict[str, Any] = {"batches": stats.batches}
    if w.txn is not None:
        extra.update(committed=w.txn.committed, aborted=w.txn.aborted)
    return stats.scored, seconds, extra


def relay(args: dict[str, Any]) -> Timed:
    """Forward records untouched (the worker's consumer and producer settings, no work)."""
    from confluent_kafka import Consumer, Producer

    from stream_infer.kafka.clients import consumer_config, producer_config

    settings = _settings(args)
    c, p = Consumer(consumer_config(settings)), Producer(producer_config(settings))

    def assigned(_c: Any, parts: list[Any]) -> None:
        print(f"assigned {[tp.partition for tp in parts]}", flush=True)

    p.list_topics(args["sink"], timeout=10)  # connected before the first record, as the worker
    c.subscribe([args["source"]], on_assign=assigned)
    n, target, t0 = 0, args["events"], 0.0
    while n < target:
        # The worker's own wait for a batch (batch.max_wait_ms) bounds this poll too.
        msgs = [m for m in c.consume(512, args["max_wait_ms"] / 1000) if m.error() is None]
        if not msgs:
            p.poll(0)
            continue
        t0 = t0 or time.monotonic()
        for m in msgs:
            p.produce(
                args["sink"], m.value(), m.key(), partition=m.partition(), headers=m.headers()
            )
        p.poll(0)
        c.store_offsets(message=msgs[-1])
        n += len(msgs)
    p.flush(60)
    c.close()
    return n, time.monotonic() - t0, {}


def _settings(args: dict[str, Any]) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": args["bootstrap"]},
        topics={
            "transactions": args["source"],
            "scores": args["sink"],
            "scores_shadow": args["shadow_sink"],
            "dead_letter": args["dead_letter"],
            "specs_dir": args["specs"],
        },
        model={"registry_dir": args["registry"]},
        worker={"group_id": f"bench-{uuid.uuid4().hex[:8]}", **args.get("worker", {})},
        features={"state_dir": args["state_dir"]},
        metrics={"enabled": False},
    )


ROWS: dict[str, Callable[[dict[str, Any]], Timed]] = {
    "transport": transport,
    "naive": naive,
    "quix": quix,
    "worker": worker,
    "worker_eos": worker,
    "worker_shadow": worker,
    "relay": relay,
}


def main() -> None:
    row, raw = sys.argv[1], sys.argv[2]
    args = orjson.loads(raw)
    cpu0 = time.process_time()
    events, seconds, extra = ROWS[row](args)
    print(
        orjson.dumps(
            {
                "row": row,
                "events": events,
                "seconds": seconds,
                "events_per_s": events / seconds,
                "cpu_s": time.process_time() - cpu0,
                "hwm_mb": vm_hwm_mb(),
                **extra,
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
