"""librdkafka configurations for the worker's consumer and producer.

Follows confluent-kafka's at-least-once recipe: auto-commit on, but offsets are *stored* by the
application only after the records derived from them are acknowledged
(``enable.auto.offset.store=false``).

Record sizes are one chain, set by ``kafka.message_max_bytes`` (1 MiB): every topic's
``max.message.bytes`` (topics/*.toml) equals it, the producer's ``message.max.bytes`` is it, the
consumer fetches a record of that size in one go, and a dead letter is at most
``worker.dead_letter_max_bytes`` (256 KiB), well below it, so a dead letter is never refused.
:func:`check_size_limits` refuses settings that break the chain, before any client exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from stream_infer.config import Settings
from stream_infer.dead_letters import check_limits
from stream_infer.errors import ConfigError

#: What librdkafka adds to a record's key, value and headers before comparing it with
#: ``message.max.bytes``: 36 bytes of framing plus 2-4 per header (measured, librdkafka 2.12).
#: A margin, not the exact figure.
RECORD_OVERHEAD_BYTES: Final = 512
#: librdkafka's defaults, kept unless a record of ``message_max_bytes`` needs more.
_FETCH_MAX_BYTES: Final = 52_428_800
_RECEIVE_MAX_BYTES: Final = 100_000_000


def check_size_limits(settings: Settings) -> None:
    """Refuse size settings under which a dead letter could be refused by Kafka.

    Raises:
        ConfigError: ``worker.dead_letter_max_bytes`` (plus a record's framing) is not below
            ``kafka.message_max_bytes``, or the dead-letter limits contradict each other.
    """
    limit = settings.kafka.message_max_bytes
    worker = settings.worker
    if worker.dead_letter_max_bytes + RECORD_OVERHEAD_BYTES > limit:
        raise ConfigError(
            f"worker.dead_letter_max_bytes={worker.dead_letter_max_bytes} must be at least "
            f"{RECORD_OVERHEAD_BYTES} bytes below kafka.message_max_bytes={limit}: a dead letter "
            "must always be small enough to produce"
        )
    check_limits(worker.dead_letter_max_bytes, worker.dead_letter_prefix_bytes)


def consumer_config(
    settings: Settings, stats_cb: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The scoring consumer: manual offset store, bounded prefetch, statistics for lag.

    Raises:
        ConfigError: the size settings are inconsistent (:func:`check_size_limits`).
    """
    check_size_limits(settings)
    limit = settings.kafka.message_max_bytes
    fetch_max = max(limit, _FETCH_MAX_BYTES)
    cfg = settings.kafka.client_config()
    cfg.update(
        {
            "group.id": settings.worker.group_id,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.kafka.session_timeout_ms,
            "max.poll.interval.ms": settings.worker.max_poll_interval_ms,
            "heartbeat.interval.ms": max(100, settings.kafka.session_timeout_ms // 3),
            # Bounded prefetch: the client never buffers more than this per partition set.
            "queued.max.messages.kbytes": settings.worker.queued_max_messages_kbytes,
            "enable.partition.eof": False,
            # Tansu (and some brokers) hold a fetch until fetch.wait.max.ms even when data is
            # there; 500 ms (the default) would become our latency floor at low rates.
            "fetch.wait.max.ms": 10,
            # A record of the topic's largest size comes whole in the first fetch.
            "max.partition.fetch.bytes": limit,
            "fetch.max.bytes": fetch_max,
            "receive.message.max.bytes": max(_RECEIVE_MAX_BYTES, fetch_max + 512),
        }
    )
    if settings.worker.instance_id:
        cfg["group.instance.id"] = settings.worker.instance_id
    if settings.worker.group_protocol == "consumer":
        # KIP-848: the broker owns the session timeout, heartbeats and the assignor; librdkafka
        # refuses to create a consumer that sets them.
        cfg["group.protocol"] = "consumer"
        for key in ("session.timeout.ms", "heartbeat.interval.ms"):
            del cfg[key]
    else:
        cfg["partition.assignment.strategy"] = settings.worker.assignment_strategy
    if settings.worker.processing_guarantee == "exactly-once":
        # Offsets travel inside the producer's transactions; the consumer never commits.
        cfg["enable.auto.commit"] = False
        cfg["isolation.level"] = settings.worker.input_isolation
    if stats_cb is not None and settings.worker.statistics_interval_ms > 0:
        cfg["statistics.interval.ms"] = settings.worker.statistics_interval_ms
        cfg["stats_cb"] = stats_cb
    return cfg


def transactional_id(settings: Settings) -> str:
    """This instance's ``transactional.id``: stable across its restarts, so a restarted
    instance fences the zombie it replaces (docs/ARCHITECTURE.md, "Exactly-once")."""
    import socket

    w = settings.worker
    return w.transactional_id or f"{w.group_id}-{w.instance_id or socket.gethostname()}"


def producer_config(settings: Settings, transactional_id: str | None = None) -> dict[str, Any]:
    """The score producer: idempotent, acks=all, small linger, bounded queue, and records up
    to ``kafka.message_max_bytes`` (a larger one is refused by ``produce`` itself).

    Raises:
        ConfigError: the size settings are inconsistent (:func:`check_size_limits`).
    """
    check_size_limits(settings)
    cfg = settings.kafka.client_config()
    cfg.update(
        {
            "message.max.bytes": settings.kafka.message_max_bytes,
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
