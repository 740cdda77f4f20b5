"""librdkafka configurations for the worker's consumer and producer.

Follows confluent-kafka's at-least-once recipe: auto-commit on, but offsets are *stored* by the
application only after the records derived from them are acknowledged
(``enable.auto.offset.store=false``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_infer.config import Settings


def consumer_config(
    settings: Settings, stats_cb: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The scoring consumer: manual offset store, bounded prefetch, statistics for lag."""
    cfg = settings.kafka.client_config()
    cfg.update(
        {
            "group.id": settings.worker.group_id,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.kafka.session_timeout_ms,
            "heartbeat.interval.ms": max(100, settings.kafka.session_timeout_ms // 3),
            # Bounded prefetch: the client never buffers more than this per partition set.
            "queued.max.messages.kbytes": settings.worker.queued_max_messages_kbytes,
            "enable.partition.eof": False,
            # Tansu (and some brokers) hold a fetch until fetch.wait.max.ms even when data is
            # there; 500 ms (the default) would become our latency floor at low rates.
            "fetch.wait.max.ms": 10,
        }
    )
    if stats_cb is not None and settings.worker.statistics_interval_ms > 0:
        cfg["statistics.interval.ms"] = settings.worker.statistics_interval_ms
        cfg["stats_cb"] = stats_cb
    return cfg


def producer_config(settings: Settings, transactional_id: str | None = None) -> dict[str, Any]:
    """The score producer: idempotent, acks=all, small linger, bounded queue."""
    cfg = settings.kafka.client_config()
    cfg.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 200_000,
            "queue.buffering.max.kbytes": 262_144,
        }
    )
    if transactional_id:
        cfg["transactional.id"] = transactional_id
    return cfg
