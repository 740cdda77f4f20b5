"""The Kafka-native way workers and sidecars learn of a role change within a second.

A role change is written to the registry (the source of truth) and then announced on the
compacted ``model-control`` topic, keyed by model name. Every watcher's :class:`ControlListener`
reads that topic from its end and re-reads the registry on each announcement; its regular
registry poll stays as the fallback, so a lost announcement only delays a switch to the next
poll (docs/ARCHITECTURE.md, "Model lifecycle").
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import orjson

from stream_infer.config import Settings

log = logging.getLogger(__name__)


def announce(settings: Settings, name: str, revision: int, timeout_s: float = 5.0) -> bool:
    """Tell every watcher that ``name`` changed (best effort; False if not delivered).

    Never raises: the registry already holds the change, and polls will find it.
    """
    bootstrap = settings.resolved_bootstrap()
    if not bootstrap:
        return False
    from confluent_kafka import KafkaException, Producer

    config = settings.with_bootstrap(bootstrap).kafka.client_config()
    errors: list[object] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    try:
        producer = Producer(config | {"acks": "all", "message.timeout.ms": int(timeout_s * 1000)})
        value = orjson.dumps({"name": name, "revision": revision, "at": time.time()})
        producer.produce(
            settings.topics.model_control,
            value,
            name.encode(),
            on_delivery=delivered,
        )
        left = producer.flush(timeout_s)
    except (KafkaException, BufferError) as exc:
        log.warning("could not announce %s revision %d: %s", name, revision, exc)
        return False
    if left or errors:
        log.warning("announcement of %s revision %d not delivered: %s", name, revision, errors)
        return False
    return True


class ControlListener:
    """Calls ``on_change(name, revision)`` for each announcement, from a daemon thread."""

    def __init__(self, settings: Settings, on_change: Callable[[str, int], None]) -> None:
        self.settings = settings
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start listening; False (and nothing started) when no cluster is configured."""
        bootstrap = self.settings.resolved_bootstrap()
        if not bootstrap:
            return False
        from confluent_kafka import Consumer

        config = self.settings.with_bootstrap(bootstrap).kafka.client_config() | {
            # Each process sees every announcement: a group of its own, from the end.
            "group.id": f"stream-infer-control-{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
            "session.timeout.ms": self.settings.kafka.session_timeout_ms,
            "fetch.wait.max.ms": 100,
        }
        consumer = Consumer(config)
        name = self.settings.model.name

        def assigned(_consumer: object, _partitions: object) -> None:
            # Reading from the end misses what was announced before we joined: re-read once.
            self.on_change(name, -1)

        consumer.subscribe([self.settings.topics.model_control], on_assign=assigned)
        self._thread = threading.Thread(
            target=self._run, args=(consumer,), name="model-control", daemon=True
        )
        self._thread.start()
        return True

    def _run(self, consumer: object) -> None:
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.2)  # type: ignore[attr-defined]
                if msg is None or msg.error() is not None:
                    continue
                try:
                    body = orjson.loads(msg.value())
                    self.on_change(str(body["name"]), int(body["revision"]))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    log.warning("ignoring a malformed model-control record: %s", exc)
        finally:
            consumer.close()  # type: ignore[attr-defined]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
