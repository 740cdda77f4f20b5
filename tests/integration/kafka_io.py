"""Test-side Kafka I/O: produce events, read a topic back until a condition holds."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import orjson
from confluent_kafka import Consumer, Producer

from stream_infer.config import Settings
from stream_infer.runtime import apply_topics, build_worker
from stream_infer.worker import ScoringWorker


def make_transactions(n: int, customers: int = 50, start: datetime | None = None) -> list[dict]:
    start = start or datetime(2026, 4, 1, tzinfo=UTC)
    return [
        {
            "transaction_id": f"tx-{i}",
            "tx_datetime": (start + timedelta(seconds=37 * i)).isoformat(),
            "customer_id": str(i % customers),
            "terminal_id": str(i % 97),
            "tx_amount": round(5 + (i * 7919) % 20000 / 100, 2),
        }
        for i in range(n)
    ]


def produce(
    settings: Settings, topic: str, events: Iterable[dict | bytes], key_field: str = "customer_id"
) -> int:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 5})
    errors: list[object] = []
    n = 0
    for ev in events:
        if isinstance(ev, bytes):
            producer.produce(topic, ev, b"bad", on_delivery=lambda e, _m: e and errors.append(e))
        else:
            key = str(ev.get(key_field, "")).encode()
            producer.produce(
                topic, orjson.dumps(ev), key, on_delivery=lambda e, _m: e and errors.append(e)
            )
        n += 1
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors
    return n


def read_topic(
    settings: Settings,
    topic: str,
    until: Callable[[list], bool],
    timeout_s: float = 60.0,
    idle_s: float | None = None,
    isolation: str = "read_uncommitted",
) -> list:
    """Read ``topic`` from the start until ``until(records)`` or the timeout; returns messages."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None:
                    out.append(msg)
                    last = time.monotonic()
            if until(out) and (idle_s is None or time.monotonic() - last > idle_s):
                break
    finally:
        consumer.close()
    return out


def setup_topics(settings: Settings) -> None:
    apply_topics(settings)


@contextmanager
def worker_thread(settings: Settings) -> Iterator[ScoringWorker]:
    """A real worker (``runtime.build_worker``) running in a thread; stopped and joined after."""
    worker = build_worker(settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive(), "worker did not stop"


def produce_paced(settings: Settings, events: list[dict], per_second: int) -> threading.Thread:
    """Produce ``events`` to the input topic at about ``per_second`` in a background thread
    (started; join it), so a stream is still running when a test acts on it."""

    def run() -> None:
        step = max(1, per_second // 10)
        for i in range(0, len(events), step):
            started = time.monotonic()
            produce(settings, settings.topics.transactions, events[i : i + step])
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
