"""``stream-infer labels``: the faust-streaming adapter around the label aggregator.

faust's per-event cost is asyncio bookkeeping (DESIGN.md), so:
- the agent takes events in batches of raw bytes (``take_events``) and hands whole batches to
  the aggregator, which counts and publishes synchronously in a worker thread (off the event
  loop, so faust's heartbeats and fetches keep going);
- the consumer hands fetched messages to the agent without faust's two asyncio tasks per
  message (:mod:`stream_infer.labels.transport`): 1.5x the labels/s of faust's own hand-off
  in ``bench/labels.py`` (2.2x for an agent that does nothing);
- to go further, run more processes in one group: they split the partitions and share the
  count store, which applies each batch by compare-and-set on the partition's offset.

``python -m bench.labels`` measures each option against a plain confluent-kafka loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from stream_infer.config import Settings
from stream_infer.events import DeadLetter, encode
from stream_infer.labels.aggregator import (
    BatchOutcome,
    LabelAggregator,
    LabelCountStore,
    LabelRecord,
    RowSink,
)
from stream_infer.labels.stores import RedisLabelCounts, SqliteLabelCounts
from stream_infer.state.factory import open_state

log = logging.getLogger(__name__)


def open_counts(settings: Settings) -> LabelCountStore:
    """The label count store on the configured backend (Redis, else the embedded SQLite file)."""
    if settings.redis.url is not None:
        from stream_infer.state.redis_store import connect

        return RedisLabelCounts(
            connect(settings.redis.url.get_secret_value()), settings.redis.key_prefix
        )
    return SqliteLabelCounts(settings.features.state_dir / "labels.db")


def labels_counted(settings: Settings) -> int:
    """How many labels the processors have counted so far (from their applied offsets; dead
    letters included, as they are consumed too)."""
    return sum(offset + 1 for offset in open_counts(settings).applied_offsets().values())


def build_aggregator(
    settings: Settings, partitions: int, extra_sinks: Sequence[RowSink] = ()
) -> LabelAggregator:
    """Counts and rows on the configured backend (see :func:`open_counts`)."""
    stores = open_state(settings)
    return LabelAggregator(open_counts(settings), [stores.terminals, *extra_sinks], partitions)


def topic_partitions(settings: Settings) -> int:
    """How many partitions the labels topic has (the watermark spans all of them)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka.client_config())
    meta = admin.list_topics(settings.topics.labels, timeout=15).topics[settings.topics.labels]
    return len(meta.partitions)


def create_app(settings: Settings, aggregator: LabelAggregator) -> tuple[Any, dict[str, int]]:
    """The faust App with one agent over the labels topic, and its running totals
    (``counted``, ``dead_lettered``)."""
    import faust

    opts = settings.labels
    datadir = settings.features.state_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)  # faust refuses a missing data directory
    app = faust.App(
        f"{settings.worker.group_id}-labels",
        broker=f"{opts.transport}://{settings.kafka.bootstrap_servers}",
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(0.1, settings.kafka.session_timeout_ms / 3000),
        producer_acks=-1,
    )
    if opts.transport == "kafka" and opts.lean_handoff:
        from stream_infer.labels.transport import use_lean_handoff

        use_lean_handoff(app)  # before app.topic(): that already reaches for the transport
    topic = app.topic(settings.topics.labels, value_serializer="raw", key_serializer="raw")
    dlq = app.topic(settings.topics.dead_letter, value_serializer="raw", key_serializer="raw")
    stats = {"counted": 0, "dead_lettered": 0}

    async def on_assigned(_sender: Any, /, *args: Any, signal: Any, **_kwargs: Any) -> None:
        # Which labels partitions this process counts (scale-out: the group splits them).
        assigned = args[0] if args else set()
        mine = sorted(tp.partition for tp in assigned if tp.topic == settings.topics.labels)
        log.info("labels partitions assigned: %s", mine)

    app.on_partitions_assigned.connect(on_assigned)

    def process(events: Sequence[Any]) -> BatchOutcome:
        # Runs in the worker thread: building the records there keeps the loop free.
        records = [
            LabelRecord(e.message.partition, e.message.offset, e.message.value) for e in events
        ]
        return aggregator.process(records)

    @app.agent(topic)
    async def count_labels(stream: Any) -> None:
        async for events in stream.take_events(opts.batch_size, within=opts.within_s):
            outcome = await asyncio.to_thread(process, events)
            stats["counted"] += outcome.counted
            stats["dead_lettered"] += len(outcome.dead_letters)
            for rec, reason in outcome.dead_letters:
                letter = DeadLetter(
                    original=rec.value or b"",
                    reason=reason,
                    source_topic=settings.topics.labels,
                    source_partition=rec.partition,
                    source_offset=rec.offset,
                    failed_at=datetime.now(UTC),
                )
                await dlq.send(value=encode(letter))

    return app, stats


def run(settings: Settings) -> None:
    """Run the label processor until interrupted."""
    if settings.labels.uvloop and importlib.util.find_spec("uvloop") is not None:
        import mode.loop

        mode.loop.use("uvloop")  # before faust creates its event loop
    partitions = topic_partitions(settings)
    sinks: list[RowSink] = []
    if settings.features.feast_online:
        from stream_infer.features.feast_sink import FeastTerminalSink

        redis = settings.redis.url.get_secret_value() if settings.redis.url else None
        sinks.append(FeastTerminalSink(settings.features.repo_dir, redis))
    aggregator = build_aggregator(settings, partitions, sinks)
    app, _stats = create_app(settings, aggregator)
    from faust import Worker

    # faust's own worker: signal handling, graceful stop, offset commits.
    Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()
