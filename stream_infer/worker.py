"""The scoring worker: the Kafka adapter around :class:`~stream_infer.pipeline.ScoringPipeline`.

Loop: consume a batch (at most ``max_batch_size`` records or ``max_wait_ms``), score it, produce
each score to the input's partition of the scores topic (and bad records to the dead-letter
topic), and store the batch's offsets only once every record it produced is acknowledged, in
batch order (at-least-once). Auto-commit then commits what was stored. In-flight batches are
bounded; when the bound is hit the worker pauses its partitions until deliveries catch up.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from stream_infer.config import Settings
from stream_infer.errors import DeliveryError, FatalError, StateWriteError
from stream_infer.kafka.stats import consumer_lag
from stream_infer.metrics import WorkerMetrics
from stream_infer.pipeline import BatchResult, OutRecord, ScoringPipeline, dead_letter_reason_kind

log = logging.getLogger(__name__)


class ConsumerLike(Protocol):
    """The slice of ``confluent_kafka.Consumer`` the worker uses."""

    def subscribe(self, topics: list[str], **callbacks: Any) -> None: ...
    def consume(self, num_messages: int, timeout: float) -> list[Any]: ...
    def store_offsets(self, *, offsets: list[Any]) -> None: ...
    def commit(self, *, asynchronous: bool) -> Any: ...
    def pause(self, partitions: list[Any]) -> None: ...
    def resume(self, partitions: list[Any]) -> None: ...
    def assignment(self) -> list[Any]: ...
    def close(self) -> None: ...


class ProducerLike(Protocol):
    """The slice of ``confluent_kafka.Producer`` the worker uses."""

    def produce(self, topic: str, value: bytes, key: bytes | None, **kwargs: Any) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


class FeatureSink(Protocol):
    """Where a batch's computed features also go (e.g. Feast's online store); best effort."""

    def offer(
        self,
        customer_ids: Sequence[str],
        epoch_seconds: Sequence[int],
        features: npt.NDArray[np.float64],
    ) -> None: ...

    def close(self) -> None: ...


class _InFlight:
    """One consumed batch whose produced records are not all acknowledged yet, or whose
    feature-state write is not durable yet."""

    __slots__ = ("error", "offsets", "pending", "state")

    def __init__(self, offsets: dict[tuple[str, int], int]) -> None:
        self.offsets = offsets
        self.pending = 0
        self.error: Any = None
        self.state: Future[None] | None = None

    def done(self) -> bool:
        return self.pending <= 0 and (self.state is None or self.state.done())

    def ack(self, err: Any, _msg: Any) -> None:
        # Delivery callback: record, never raise (confluent-kafka calls it inside poll()).
        if err is not None and self.error is None:
            self.error = err
        self.pending -= 1


@dataclass
class WorkerStats:
    """Running totals, for the demo's summary and for tests."""

    consumed: int = 0
    scored: int = 0
    dead_lettered: int = 0
    batches: int = 0


class ScoringWorker:
    """Consumes transactions, scores them, produces scores; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        pipeline: ScoringPipeline,
        consumer: ConsumerLike,
        producer: ProducerLike,
        metrics: WorkerMetrics | None = None,
        *,
        feature_sink: FeatureSink | None = None,
        topic_partition: Callable[[str, int, int], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics or WorkerMetrics()
        self.feature_sink = feature_sink
        self.stats = WorkerStats()
        self._inflight: deque[_InFlight] = deque()
        self._stopping = False
        # One writer thread: state writes stay in batch order and overlap with the next batch
        # (sqlite3 and redis-py release the GIL while they wait on I/O).
        self._state_writer = ThreadPoolExecutor(1, thread_name_prefix="state-writer")
        if topic_partition is None:
            from confluent_kafka import TopicPartition

            topic_partition = TopicPartition
        self._tp = topic_partition

    # -- lifecycle -----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its current batch, drain, commit and return."""
        self._stopping = True

    def on_stats(self, stats_json: str) -> None:
        """librdkafka statistics callback: consumer lag per partition."""
        self.metrics.set_lag(consumer_lag(stats_json))

    def run(self, max_events: int | None = None) -> WorkerStats:
        """Process until :meth:`stop` (or ``max_events`` consumed); drain and commit on exit.

        Raises:
            DeliveryError: Kafka failed a produced record; offsets past it were not stored, so
                a restart re-processes from there (nothing lost).
        """
        topics = self.settings.topics
        self.consumer.subscribe(
            [topics.transactions],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        batch_size = self.settings.batch.max_batch_size
        wait_s = self.settings.batch.max_wait_ms / 1000.0
        try:
            while not self._stopping:
                if len(self._inflight) >= self.settings.worker.max_in_flight_batches:
                    self._relieve_backpressure()
                records = self.consumer.consume(batch_size, max(wait_s, 0.001))
                if records:
                    self._handle(records)
                self.producer.poll(0)
                self._complete()
                if max_events is not None and self.stats.consumed >= max_events:
                    break
        finally:
            self._shutdown()
        return self.stats

    # -- the batch -----------------------------------------------------------------------
    def _handle(self, records: Sequence[Any]) -> None:
        good = []
        for rec in records:
            err = rec.error()
            if err is None:
                good.append(rec)
            elif err.fatal():
                raise FatalError(f"consumer error: {err}")
            else:
                log.warning("consumer error (librdkafka retries): %s", err)
        if not good:
            return
        offsets: dict[tuple[str, int], int] = {}
        for rec in good:
            offsets[(rec.topic(), rec.partition())] = rec.offset() + 1
        result = self.pipeline.process(good)
        batch = _InFlight(offsets)
        if result.state_writes:
            batch.state = self._state_writer.submit(
                self.pipeline.features.state.save, result.state_writes
            )
        self._inflight.append(batch)
        if self.feature_sink is not None and result.features is not None:
            self.feature_sink.offer(result.customer_ids, result.epoch_seconds, result.features)
        topics = self.settings.topics
        for out in result.scores:
            self._produce(topics.scores, out, batch)
        for out, _reason in result.dead_letters:
            self._produce(topics.dead_letter, out, batch)
        self._record(len(good), result)

    def _produce(self, topic: str, out: OutRecord, batch: _InFlight) -> None:
        kwargs: dict[str, Any] = {"on_delivery": batch.ack}
        if out.partition is not None:
            kwargs["partition"] = out.partition
        if out.headers:
            kwargs["headers"] = out.headers
        while True:
            try:
                self.producer.produce(topic, out.value, out.key, **kwargs)
                batch.pending += 1
                return
            except BufferError:
                # Producer queue full: serve delivery reports until there is room.
                self.producer.poll(0.05)

    def _record(self, consumed: int, result: BatchResult) -> None:
        m = self.metrics
        self.stats.consumed += consumed
        self.stats.scored += len(result.scores)
        self.stats.dead_lettered += len(result.dead_letters)
        self.stats.batches += 1
        m.consumed.inc(consumed)
        m.scored.inc(len(result.scores))
        m.batch_size.observe(consumed)
        if result.scores:
            m.features_seconds.observe(result.features_s)
            m.inference_seconds.observe(result.inference_s)
            m.observe_latencies(result.latencies_s)
        for _out, reason in result.dead_letters:
            m.dead_lettered.labels(dead_letter_reason_kind(reason)).inc()
        m.count_flags(result.flags)
        m.in_flight_batches.set(len(self._inflight))

    def _complete(self) -> None:
        """Store offsets of leading batches whose records are all acknowledged."""
        inflight = self._inflight
        while inflight and inflight[0].done():
            batch = inflight.popleft()
            if batch.error is not None:
                self.metrics.delivery_errors.inc()
                raise DeliveryError(f"Kafka failed a produced record: {batch.error}")
            if batch.state is not None and batch.state.exception() is not None:
                raise StateWriteError(
                    f"feature state write failed: {batch.state.exception()}"
                ) from batch.state.exception()
            self.consumer.store_offsets(
                offsets=[self._tp(t, p, o) for (t, p), o in batch.offsets.items()]
            )
        self.metrics.in_flight_batches.set(len(inflight))

    def _relieve_backpressure(self) -> None:
        """Wait for acknowledgements until at most half the in-flight limit is pending.

        A short wait just serves delivery reports: pausing drops the client's prefetched
        records (bounded anyway by ``queued.max.messages.kbytes``) and re-fetching them costs a
        broker round trip. If deliveries stall longer than ``pause_after_s``, the partitions
        are paused so nothing more is fetched until they recover.
        """
        low_water = self.settings.worker.max_in_flight_batches // 2
        deadline = time.monotonic() + self.settings.worker.pause_after_s
        while len(self._inflight) > low_water and not self._stopping:
            if time.monotonic() > deadline:
                self._pause_until(low_water)
                return
            self.producer.poll(0.005)
            self._complete()

    def _pause_until(self, low_water: int) -> None:
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(assignment)
        self.metrics.paused.set(1)
        try:
            while len(self._inflight) > low_water and not self._stopping:
                self.producer.poll(0.1)
                self._complete()
        finally:
            if assignment:
                self.consumer.resume(assignment)
            self.metrics.paused.set(0)

    def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._inflight and time.monotonic() < deadline:
            self.producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
            head = self._inflight[0].state
            if head is not None and not head.done():
                wait([head], timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            self._complete()
        if self._inflight:
            log.error("drain timed out with %d batches unacknowledged", len(self._inflight))

    def _commit(self) -> None:
        from confluent_kafka import KafkaException

        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            # _NO_OFFSET: nothing stored since the last commit; anything else is logged here,
            # where we decide it is safe to continue (uncommitted work is re-delivered).
            if "NO_OFFSET" not in str(exc):
                log.warning("commit failed (records will be re-delivered): %s", exc)

    # -- rebalance -----------------------------------------------------------------------
    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        log.info("assigned %s", [p.partition for p in partitions])

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        # Finish what we started on these partitions and commit, so the next owner starts
        # exactly after the last acknowledged score.
        log.info("revoked %s", [p.partition for p in partitions])
        self._drain(self.settings.worker.drain_timeout_s)
        self._commit()
        self._forget(partitions)

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        log.warning("lost %s (no commit possible)", [p.partition for p in partitions])
        self._forget(partitions)

    def _forget(self, partitions: list[Any]) -> None:
        ids = [p.partition for p in partitions]
        self.pipeline.features.state.drop_partitions(ids)
        self.metrics.forget_partitions(self.settings.topics.transactions, ids)

    def _shutdown(self) -> None:
        try:
            # A delivery error was already raised to the caller once; commit what is safe.
            with contextlib.suppress(DeliveryError, StateWriteError):
                self._drain(self.settings.worker.drain_timeout_s)
            self._commit()
        finally:
            self._state_writer.shutdown(wait=True)
            if self.feature_sink is not None:
                self.feature_sink.close()
            self.consumer.close()
