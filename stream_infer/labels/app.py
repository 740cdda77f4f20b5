"""``stream-infer labels``: the faust-streaming adapter around the label aggregator.

faust's per-event cost is asyncio bookkeeping (DESIGN.md), so:
- the agent takes events in batches of raw bytes (``take_events``) and hands whole batches to
  the aggregator, which counts and publishes synchronously in a worker thread (off the event
  loop, so faust's heartbeats and fetches keep going);
- the consumer hands fetched messages to the agent without faust's two asyncio tasks per
  message (:mod:`stream_infer.labels.transport`): 1.5x the labels/s of faust's own hand-off
  in ``bench/labels.py`` (2.2x for an agent that does nothing);
- to go further, run more processes in one group: they split the partitions and share the
  partial store, which applies each batch by compare-and-set on the partition's offset.

A store outage (the partial store or the daily-row sink) stops progress, never the process:
the worker thread retries the batch with bounded exponential backoff (:class:`StoreRetry`)
until the store answers, while faust keeps heartbeating and fetching into its bounded buffers.
The agent takes batches with ``noack_take`` and acks a batch only once it is applied and its
dead letters are delivered (:mod:`stream_infer.labels.letters`), so nothing unapplied or
undelivered is committed: faust's ``take_events`` acks a batch when its generator is
closed, which a stop (faust cancels agents) or a crash does mid-batch. A stop or a rebalance
does not wait for the batch in flight (``stream_wait_empty`` off): it is simply not committed,
and compare-and-set keeps a partition that moved meanwhile from being counted twice.

``python -m bench.labels`` measures each option against a plain confluent-kafka loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import tenacity

from stream_infer.config import Settings
from stream_infer.errors import ConfigError, FatalError, RetryableError
from stream_infer.labels.aggregator import (
    BatchOutcome,
    LabelAggregator,
    LabelRecord,
    PartialStore,
    RowSink,
)
from stream_infer.labels.credentials import faust_brokers, faust_credentials
from stream_infer.labels.letters import DeadLetterSender, letters_of
from stream_infer.labels.metrics import LabelMetrics
from stream_infer.labels.stores import RedisLabelPartials, SqliteLabelPartials
from stream_infer.state.factory import open_state
from stream_infer.streamdef.spec import StreamDefinitions

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreRetry:
    """Repeats a store step until it succeeds or :meth:`stop` is called.

    Backoff grows exponentially (with jitter) from ``initial_s`` to at most ``max_s`` and never
    gives up on its own. Logs once when the store starts failing and once when it answers again.
    Thread-safe to stop from another thread; one step at a time.
    """

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._stopping = threading.Event()
        self._down_since: float | None = None
        self._failures = 0

    @property
    def store_down(self) -> bool:
        """True from a failed step until the next step that succeeds."""
        return self._down_since is not None

    def stop(self) -> None:
        """Make a running :meth:`call` give up: it wakes from its backoff and raises."""
        self._stopping.set()

    def call(self, step: Callable[[], T]) -> T:
        """``step()``'s result, retrying it on :class:`~stream_infer.errors.RetryableError`.

        Raises:
            RetryableError: the last failure, once :meth:`stop` was called (at most one more
                attempt, bounded by the store's socket timeout, runs after that).
            Exception: whatever else ``step`` raises, at once.
        """
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RetryableError),
            wait=tenacity.wait_exponential_jitter(initial=self._initial_s, max=self._max_s),
            stop=tenacity.stop_when_event_set(self._stopping),
            sleep=self._sleep,
            before_sleep=self._failed,
            reraise=True,
        )
        result = retrying(step)
        if self._down_since is not None:
            log.warning(
                "label store is back after %.1fs (%d failed attempts); resuming",
                time.monotonic() - self._down_since,
                self._failures,
            )
            self._down_since = None
            self._failures = 0
        return result

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)  # a stop cuts the backoff short

    def _failed(self, state: tenacity.RetryCallState) -> None:
        self._failures += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "label store unavailable (%s); retrying the batch (backoff up to %.1fs) until "
                "it answers, nothing is committed meanwhile",
                exc,
                self._max_s,
            )


def open_partials(settings: Settings) -> PartialStore:
    """The label partial store on the configured backend (Redis, else the embedded SQLite
    file)."""
    if settings.redis.enabled:
        from stream_infer.state.redis_client import open_redis

        cluster = settings.redis.mode == "cluster"
        client = open_redis(settings.redis)
        return RedisLabelPartials(client, settings.redis.key_prefix, cluster=cluster)
    return SqliteLabelPartials(settings.features.state_dir / "labels.db")


def load_repository(settings: Settings) -> StreamDefinitions:
    """The repository's definitions (``features.repo_dir``), read once at start.

    Raises:
        DefinitionError: the repository does not load or is refused.
        ConfigError: it has daily views but no label source.
    """
    from stream_infer.streamdef.feast_reader import load_definitions

    defs = load_definitions(settings.features.repo_dir)
    if defs.daily_views and defs.label_source is None:
        raise ConfigError(
            f"{settings.features.repo_dir}: daily views "
            f"{[v.name for v in defs.daily_views]} but no label source"
        )
    return defs


def labels_counted(settings: Settings) -> int:
    """How many labels the processors have counted so far (from their applied offsets; dead
    letters included, as they are consumed too)."""
    return sum(offset + 1 for offset in open_partials(settings).applied_offsets().values())


def build_aggregator(
    settings: Settings,
    partitions: int,
    defs: StreamDefinitions,
    extra_sinks: Sequence[RowSink] = (),
    metrics: LabelMetrics | None = None,
) -> LabelAggregator:
    """Partials and rows of ``defs``' daily views on the configured backend (see
    :func:`open_partials`); with ``metrics``, the rows each sink takes are counted and the
    daily-row store's publishes move the watermark gauge.

    Raises:
        ConfigError: ``defs`` has no label source.
    """
    stores = open_state(settings)
    sinks: list[RowSink] = [stores.terminals, *extra_sinks]
    if metrics is not None:
        sinks = [metrics.counting_rows(stores.terminals, "terminal_store", watermark=True)]
        sinks += [metrics.counting_rows(s, type(s).__name__) for s in extra_sinks]
    return LabelAggregator(
        open_partials(settings),
        sinks,
        partitions,
        defs=defs,
        max_future_s=settings.events.max_future_s,
        max_step_days=settings.labels.max_watermark_step_days,
    )


def topic_partitions(settings: Settings) -> int:
    """How many partitions the labels topic has (the watermark spans all of them)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka.client_config())
    meta = admin.list_topics(settings.topics.labels, timeout=15).topics[settings.topics.labels]
    return len(meta.partitions)


def create_app(
    settings: Settings, aggregator: LabelAggregator, metrics: LabelMetrics | None = None
) -> tuple[Any, dict[str, int]]:
    """The faust App with one agent over the labels topic, and its running totals
    (``counted``, ``dead_lettered``), also counted in ``metrics``."""
    import faust

    opts = settings.labels
    datadir = settings.features.state_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)  # faust refuses a missing data directory
    app = faust.App(
        f"{settings.worker.group_id}-labels",
        broker=faust_brokers(settings.kafka, opts.transport),
        broker_credentials=faust_credentials(settings.kafka),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_replication_factor=opts.internal_replication_factor
        or settings.topics.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(0.1, settings.kafka.session_timeout_ms / 3000),
        producer_acks=-1,
        # faust would otherwise wait, at a stop or a rebalance, for every in-flight message to
        # be acked: a batch in retry through a store outage would hold the stop (or the
        # rebalance) until the store is back. Nothing needs that wait: only applied batches
        # are acked, so a commit never covers an unapplied one, and compare-and-set refuses a
        # batch applied twice.
        stream_wait_empty=False,
    )
    if opts.transport == "kafka" and opts.lean_handoff:
        from stream_infer.labels.transport import use_lean_handoff

        use_lean_handoff(app)  # before app.topic(): that already reaches for the transport
    topic = app.topic(settings.topics.labels, value_serializer="raw", key_serializer="raw")
    stats = {"counted": 0, "dead_lettered": 0}

    async def on_assigned(_sender: Any, /, *args: Any, signal: Any, **_kwargs: Any) -> None:
        # Which labels partitions this process counts (scale-out: the group splits them).
        assigned = args[0] if args else set()
        mine = sorted(tp.partition for tp in assigned if tp.topic == settings.topics.labels)
        log.info("labels partitions assigned: %s", mine)

    app.on_partitions_assigned.connect(on_assigned)

    retry = StoreRetry(settings.worker.store_retry_initial_s, settings.worker.store_retry_max_s)
    metrics = metrics or LabelMetrics()
    metrics.watch_store(lambda: retry.store_down)

    from confluent_kafka import Producer

    from stream_infer.kafka.clients import producer_config

    sender = DeadLetterSender(
        Producer(producer_config(settings)),
        settings.topics.dead_letter,
        retry_initial_s=settings.worker.store_retry_initial_s,
        retry_max_s=settings.worker.store_retry_max_s,
    )
    stopping = threading.Event()

    async def on_shutdown(_sender: Any, /, *_args: Any, signal: Any, **_kwargs: Any) -> None:
        retry.stop()
        sender.stop()
        stopping.set()

    app.on_before_shutdown.connect(on_shutdown)

    def apply(events: Sequence[Any]) -> BatchOutcome:
        # Runs in the worker thread: building the records there keeps the loop free. Counting
        # and publishing retry separately: a batch counted before a publish failed is not
        # counted again (the aggregator would skip it and lose its dead letters).
        records = [
            LabelRecord(e.message.partition, e.message.offset, e.message.value, e.message.key)
            for e in events
        ]
        outcome = retry.call(metrics.counting_errors("count", lambda: aggregator.count(records)))
        retry.call(metrics.counting_errors("publish", lambda: aggregator.publish_ready(outcome)))
        # The batch is acked when this returns: its dead letters must be in Kafka by then.
        w = settings.worker
        letters = letters_of(
            outcome.dead_letters,
            settings.topics.labels,
            w.dead_letter_max_bytes,
            w.dead_letter_prefix_bytes,
        )
        sender.deliver(letters)
        if letters and opts.ack_barrier is not None:
            _hold(opts.ack_barrier, stopping)
        return outcome

    @app.agent(topic)
    async def count_labels(stream: Any) -> None:
        async for events in stream.noack_take(opts.batch_size, within=opts.within_s):
            try:
                outcome = await asyncio.to_thread(apply, events)
            except asyncio.CancelledError:
                # Stopping: the thread gives up its retries; the batch stays unacked.
                retry.stop()
                sender.stop()
                stopping.set()
                raise
            except FatalError as exc:
                # Refused credentials, say: faust would restart the agent on the same batch
                # for ever. Crash the app instead; the worker re-raises it and the CLI exits.
                log.error("label processor stops: %s", exc)
                await app.crash(exc)
                return
            metrics.batch_applied(outcome)
            stats["counted"] += outcome.counted
            stats["dead_lettered"] += len(outcome.dead_letters)
            for event in events:
                await stream.ack(event)

    return app, stats


def _hold(barrier: Path, stopping: threading.Event) -> None:
    """Tests only (``labels.ack_barrier``): create ``barrier`` and wait until it is removed,
    between a batch's delivered dead letters and its ack (a crash test kills us here)."""
    barrier.write_text("dead letters delivered; waiting to ack\n")
    while barrier.exists() and not stopping.wait(0.05):
        pass


def run(settings: Settings) -> None:
    """Run the label processor until interrupted."""
    if settings.labels.uvloop and importlib.util.find_spec("uvloop") is not None:
        import mode.loop

        mode.loop.use("uvloop")  # before faust creates its event loop
    defs = load_repository(settings)  # once, before any connection: a bad repo stops here
    partitions = topic_partitions(settings)
    sinks: list[RowSink] = []
    if settings.features.feast_online:
        from stream_infer.features.feast_sink import FeastTerminalSink

        redis = settings.redis if settings.redis.enabled else None
        sinks.append(FeastTerminalSink(settings.features.feast_repo_dir, redis))
    metrics = LabelMetrics()
    aggregator = build_aggregator(settings, partitions, defs, sinks, metrics)
    app, _stats = create_app(settings, aggregator, metrics)
    if settings.metrics.enabled:
        from stream_infer.metrics import serve

        serve(metrics.registry, settings.metrics.host, settings.labels.metrics_port)
    from faust import Worker

    # faust's own worker: signal handling, graceful stop, offset commits.
    Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()
