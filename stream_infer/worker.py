"""The scoring worker: the Kafka adapter around :class:`~stream_infer.pipeline.ScoringPipeline`.

Loop: consume a batch (at most ``max_batch_size`` records or ``max_wait_ms``), score it, produce
each score to the input's partition of the scores topic (and bad records to the dead-letter
topic), and make the batch's offsets safe only once every record it produced is acknowledged and
its feature-state write is durable, in batch order (:mod:`stream_infer.inflight`). At-least-once
stores them for auto-commit; exactly-once commits them with the output in one Kafka transaction
(:mod:`stream_infer.kafka.transactions`). What each failure means (docs/ARCHITECTURE.md,
"Reliability"):

- a record Kafka refuses as such (too large, invalid) is dead-lettered, and the stream goes on;
- Kafka failing (timed out, fenced) or a state write that can never finish stops the worker
  with no offset stored at or past the failed batch; a restart re-processes from there;
- a store outage pauses the partitions, retries with bounded backoff, and resumes by itself;
- a model that fails a batch twice stops the worker (:class:`~stream_infer.errors.ModelError`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from stream_infer.config import Settings
from stream_infer.errors import (
    DeliveryError,
    FatalError,
    KafkaAccessError,
    ModelError,
    StoreUnavailableError,
    StreamInferError,
)
from stream_infer.inflight import Batch, Ledger, Offsets
from stream_infer.kafka.delivery import describe, is_record_error
from stream_infer.kafka.startup import access_failure
from stream_infer.kafka.stats import consumer_lag
from stream_infer.kafka.transactions import Transactions
from stream_infer.metrics import WorkerMetrics
from stream_infer.model.live import LiveModels
from stream_infer.pipeline import BatchResult, OutRecord, ScoringPipeline, dead_letter_reason_kind
from stream_infer.state.entity_rows import EntityWriteSet
from stream_infer.store_guard import StoreGuard
from stream_infer.worker_io import ConsumerLike, FeatureSink, Pauses, ProducerLike

log = logging.getLogger(__name__)
__all__ = ["ConsumerLike", "FeatureSink", "ProducerLike", "ScoringWorker", "WorkerStats"]


_CONNECT_TIMEOUT_S = 10.0
#: (topic, record or None if unknown, the input it came from or None for a dead letter)
Produced = tuple[str, OutRecord | None, Any]


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
        transactions: Transactions | None = None,
        models: LiveModels | None = None,
        store_probe: Callable[[], object] | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics or WorkerMetrics()
        self.feature_sink = feature_sink
        self.stats = WorkerStats()
        self.ledger = Ledger()
        self.txn = transactions
        self.models = models
        self.error: StreamInferError | None = None
        self._stopping = False
        self._last_client_error: str | None = None
        self._store_probe = store_probe
        self._held: list[Any] = []
        self._pauses = Pauses(consumer, self.metrics)
        self.store = StoreGuard(settings.worker, self.metrics, self._pauses)
        # One writer thread: state writes stay in batch order and overlap with the next batch
        # (sqlite3 and redis-py release the GIL while they wait on I/O).
        self._state_writer = ThreadPoolExecutor(1, thread_name_prefix="state-writer")
        if topic_partition is None:
            from confluent_kafka import TopicPartition

            topic_partition = TopicPartition
        self._tp = topic_partition
        pipeline.on_model_error = self._model_error

    def _model_error(self, served: Any, exc: BaseException) -> None:
        self.metrics.model_errors.labels(str(served.version)).inc()
        if self.models is not None:
            self.models.model_error(served, 1)

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
            DeliveryError: Kafka failed a produced record; no offset at or past its batch was
                stored, so a restart re-processes from there (nothing lost).
            StateWriteError, ModelError, FatalError: likewise, for the reasons they name.
        """
        self.consumer.subscribe(
            [self.settings.topics.transactions],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        if self.txn is not None:
            self.txn.init()
        self._connect_producer()
        batch_size = self.settings.batch.max_batch_size
        wait_s = max(self.settings.batch.max_wait_ms / 1000.0, 0.001)
        # Not ready yet: that waits for the group to hand this worker its partitions and
        # for the store to answer (_on_assign); the model was warmed before run().
        try:
            while not self._stopping:
                self._service()
                if len(self.ledger) >= self.settings.worker.max_in_flight_batches:
                    self._relieve_backpressure()
                if self.store.write_failing.is_set():
                    self._wait_for_store()
                    continue
                records = self.consumer.consume(batch_size, wait_s)
                if records:
                    self._handle(records)
                if max_events is not None and self.stats.consumed >= max_events:
                    break
        finally:
            self._shutdown()
        if self.error is not None:
            raise self.error
        return self.stats

    def _connect_producer(self) -> None:
        """Connect the producer and learn the scores topic's leaders before the first batch,
        so the first scores after a start or restart do not wait for metadata (measured:
        hundreds of ms on the first second's scores). Best effort: produce() retries the
        lookup itself."""
        from confluent_kafka import KafkaException

        try:
            self.producer.list_topics(self.settings.topics.scores, timeout=_CONNECT_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("producer metadata not ready (the first batch will wait): %s", exc)

    def on_client_error(self, err: Any) -> None:
        """librdkafka ``error_cb`` of the consumer and producer: a refusal no retry cures
        (authentication, TLS, a missing ACL) stops the worker, named; anything else is
        librdkafka's to retry, logged once per change of error."""
        refusal = access_failure(err)
        if refusal is not None:
            self._fail(KafkaAccessError(f"Kafka refused us: {refusal}"))
            return
        name = err.name() if hasattr(err, "name") else str(err)
        if name != self._last_client_error:
            self._last_client_error = name
            log.warning("Kafka client error (librdkafka retries): %s", err)

    def _fail(self, error: StreamInferError) -> None:
        if self.error is None:
            log.error("stopping: %s", error)
            self.error = error
        self._stopping = True

    # -- the batch -----------------------------------------------------------------------
    def _handle(self, records: Sequence[Any]) -> None:
        good = []
        for rec in records:
            err = rec.error()
            if err is None:
                good.append(rec)
            elif err.fatal():
                self._fail(FatalError(f"consumer error: {err}"))
                return
            elif (refusal := access_failure(err)) is not None:
                self._fail(KafkaAccessError(f"consumer: Kafka refused us: {refusal}"))
                return
            else:
                log.warning("consumer error (librdkafka retries): %s", err)
        if not good:
            return
        self._held = good
        if self.models is not None:
            self.models.before_batch(self.pipeline)
        try:
            result = self._process_held()
        except ModelError as exc:
            self._fail(exc)
            return
        except StoreUnavailableError:
            return  # stopping during an outage: nothing produced, nothing stored
        good, self._held = self._held, []
        if result is None:
            return
        if self.models is not None:
            self.models.after_batch(result.routed)
        first: Offsets = {}
        following: Offsets = {}
        for rec in good:
            tp = (rec.topic(), rec.partition())
            first.setdefault(tp, rec.offset())
            following[tp] = rec.offset() + 1
        if self.txn is not None:
            self.txn.begin()
            self.txn.add(first, following)
        batch = self.ledger.open(following)
        if result.state_writes:
            batch.state = self._state_writer.submit(self._save, result.state_writes)
        if self.feature_sink is not None and result.features is not None:
            self.feature_sink.offer(result.customer_ids, result.epoch_seconds, result.features)
        topics = self.settings.topics
        self._produce(batch, topics.scores, result.scores, result.sources)
        if result.dead_letters:
            self._produce(batch, topics.dead_letter, [out for out, _ in result.dead_letters])
        if result.shadow:
            self._produce(batch, topics.scores_shadow, result.shadow)
        self._record(len(good), result)

    def _process_held(self) -> BatchResult | None:
        """Score the held records; while the store is down, pause and retry (held records of
        revoked partitions are dropped by the rebalance callbacks meanwhile)."""

        def call() -> BatchResult | None:
            return self.pipeline.process(self._held) if self._held else None

        return self.store.read(call, self._idle, lambda: self._stopping)

    def _idle(self, seconds: float) -> None:
        """Wait while paused, still serving deliveries and group membership."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            self._pauses.reapply()
            # Paused partitions deliver nothing; anything else already fetched follows the
            # held records in offset order, so it joins them.
            fetched = self.consumer.consume(self.settings.batch.max_batch_size, 0.05)
            self._held.extend(r for r in fetched if r.error() is None)
            self._service()
            if time.monotonic() >= deadline:
                return

    def _save(self, writes: EntityWriteSet) -> None:
        self.store.write(lambda: self.pipeline.features.state.save(writes))

    def _wait_for_store(self) -> None:
        self.store.wait_writes(self._idle, lambda: self._stopping)
        held, self._held = self._held, []
        if held and not self._stopping:
            self._handle(held)

    def _produce(
        self,
        batch: Batch,
        topic: str,
        records: Sequence[OutRecord],
        sources: Sequence[Any] | None = None,
    ) -> None:
        """Produce ``records`` to ``topic`` for ``batch`` (``sources``: the input of each, to
        dead-letter it if Kafka refuses its record; None for records with no input).

        Every record shares the batch's one bound delivery callback: the hot path's cost per
        record is the ``produce`` call itself (docs/ARCHITECTURE.md, "The hot path").
        """
        from confluent_kafka import KafkaException

        if not records:
            return
        batch.sent.append((topic, records, sources))
        produce = self.producer.produce
        report = batch.on_delivery
        batch.pending += len(records)
        for i, out in enumerate(records):
            part = -1 if out.partition is None else out.partition
            while True:
                try:
                    produce(
                        topic,
                        out.value,
                        out.key,
                        partition=part,
                        on_delivery=report,
                        headers=out.headers or None,
                    )
                    break
                except BufferError:
                    # Producer queue full: serve delivery reports until there is room.
                    self.producer.poll(0.05)
                except KafkaException as exc:
                    batch.pending -= 1
                    source = None if sources is None else sources[i]
                    self._refused(batch, (topic, out, source), exc.args[0] if exc.args else exc)
                    break

    def _refused(self, batch: Batch, produced: Produced, err: Any) -> None:
        """Kafka refused a record: dead-letter it if it is the record's fault, else fail."""
        topic, _out, source = produced
        self.metrics.delivery_errors.inc()
        if source is None or not is_record_error(err) or self.txn is not None:
            # A refused dead letter has nowhere left to go; in a transaction any failure taints
            # the whole span (the transaction is aborted and re-processed instead).
            batch.error = DeliveryError(f"Kafka failed a record for {topic}: {describe(err)}")
            self._fail(batch.error)
            return
        self.metrics.produce_errors.labels(topic).inc()
        reason = f"produce refused: {topic}: {describe(err)}"
        self.stats.scored -= 1
        self.stats.dead_lettered += 1
        self.metrics.dead_lettered.labels(dead_letter_reason_kind(reason)).inc()
        letter = self.pipeline.dead_letter_for(source, reason)
        self._produce(batch, self.settings.topics.dead_letter, [letter])

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
        m.in_flight_batches.set(len(self.ledger))

    # -- making offsets safe -------------------------------------------------------------
    def _service(self) -> None:
        """Serve delivery reports, handle refusals, store (or commit) what became safe."""
        self.producer.poll(0)
        for batch in self.ledger.take_failures():
            failures, batch.failures = batch.failures, []
            for err, msg in failures:
                # Not found (no message to match): nothing to dead-letter, so the batch fails.
                unknown = (msg.topic() if msg is not None else "?", None, None)
                self._refused(batch, batch.find(msg) or unknown, err)
        if self.txn is not None:
            if self.txn.due() or len(self.ledger) >= self.settings.worker.max_in_flight_batches:
                self._commit_transaction()
            return
        for offsets in self.ledger.complete():
            self.consumer.store_offsets(
                offsets=[self._tp(t, p, o) for (t, p), o in offsets.items()]
            )
        error = self.ledger.head_error()
        if error is not None:
            self._fail(error)
        self.metrics.in_flight_batches.set(len(self.ledger))

    def _commit_transaction(self) -> None:
        """Exactly-once: every delivery reported and state durable, then commit (or abort)."""
        if self.txn is None:
            return
        try:
            self.txn.commit_span(self.ledger, self.producer, self.error)
        except FatalError as exc:
            self._fail(exc)

    def _relieve_backpressure(self) -> None:
        """Wait for acknowledgements until at most half the in-flight limit is pending.

        A short wait just serves delivery reports: pausing drops the client's prefetched
        records (bounded anyway by ``queued.max.messages.kbytes``) and re-fetching them costs a
        broker round trip. If deliveries stall longer than ``pause_after_s``, the partitions
        are paused so nothing more is fetched until they recover.
        """
        low_water = self.settings.worker.max_in_flight_batches // 2
        deadline = time.monotonic() + self.settings.worker.pause_after_s
        while len(self.ledger) > low_water and not self._stopping:
            if time.monotonic() > deadline:
                self._pauses.add("backpressure")
                try:
                    while len(self.ledger) > low_water and not self._stopping:
                        self.producer.poll(0.1)
                        self._service()
                finally:
                    self._pauses.discard("backpressure")
                return
            self.producer.poll(0.005)
            self._service()

    def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.ledger) and time.monotonic() < deadline:
            left = max(0.0, deadline - time.monotonic())
            self.producer.flush(min(1.0, left))
            futures = self.ledger.state_futures()
            if futures:
                wait(futures[:1], timeout=min(1.0, left))
            self._service()
            if self.ledger.head_error() is not None:
                break  # nothing past a failed batch will ever be stored
        if len(self.ledger) and self.error is None:
            log.error("drain timed out with %d batches unacknowledged", len(self.ledger))

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
        if self.store.down or self._stopping:
            return
        if self._store_probe is not None:
            try:
                self._store_probe()
            except StoreUnavailableError as exc:
                # Not ready; the first batch's retries mark it ready once the store answers.
                log.warning("feature store not answering at assignment: %s", exc)
                return
        self.metrics.ready.set(1)  # holds its assignment, model warm, store answering

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        # Finish what we started on these partitions and commit, so the next owner starts
        # exactly after the last acknowledged score. What did not finish in time is never
        # stored by us: the next owner re-processes it (at-least-once).
        log.info("revoked %s", [p.partition for p in partitions])
        if self.txn is not None:
            self._commit_transaction()
        else:
            self._drain(self.settings.worker.drain_timeout_s)
            self._commit()
        self._forget(partitions)

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        log.warning("lost %s (no commit possible)", [p.partition for p in partitions])
        if self.txn is not None and self.txn.open:
            try:
                self.txn.abort("partitions lost")
            except FatalError as exc:
                self._fail(exc)
            self.ledger.clear()
        self._forget(partitions)

    def _forget(self, partitions: list[Any]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        self.ledger.forget(tps)
        if self.txn is not None:
            self.txn.forget(tps)
        self._held = [r for r in self._held if (r.topic(), r.partition()) not in tps]
        ids = [p.partition for p in partitions]
        self.pipeline.features.state.drop_partitions(ids)
        self.metrics.forget_partitions(self.settings.topics.transactions, ids)

    def _shutdown(self) -> None:
        self.metrics.ready.set(0)
        try:
            if self.txn is not None:
                self._commit_transaction()
            else:
                self._drain(self.settings.worker.drain_timeout_s)
                self._commit()  # only offsets stored before any failed batch
        finally:
            self.store.abandon()
            if self.models is not None:
                self.models.stop()
            self._state_writer.shutdown(wait=True)
            if self.feature_sink is not None:
                self.feature_sink.close()
            self.consumer.close()
