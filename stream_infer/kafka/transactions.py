"""Exactly-once: one Kafka transaction carries a span of batches' scores, dead letters and offsets.

confluent-kafka's transactional loop: ``init_transactions()`` once (which also fences an older
instance with the same ``transactional.id``), then per span ``begin_transaction()``, produce,
``send_offsets_to_transaction(offsets, consumer_group_metadata())`` and
``commit_transaction()``. With the group metadata (KIP-447) a zombie that lost its partitions is
fenced by the group generation too. On an abortable error the transaction is aborted and the
consumer is rewound to the span's first offsets, so the span is processed again; feature state is
idempotent by (transaction, offset), so the re-processed events get the same features
(docs/ARCHITECTURE.md, "Exactly-once").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import wait
from typing import Any, Protocol

from stream_infer.errors import FatalError, RetryableError
from stream_infer.inflight import Ledger, Offsets

log = logging.getLogger(__name__)

#: An abort followed by the same failure this many times in a row stops the worker.
MAX_CONSECUTIVE_ABORTS = 5


class TransactionalProducer(Protocol):
    """The slice of a transactional ``confluent_kafka.Producer`` used here."""

    def init_transactions(self, timeout: float) -> None: ...
    def begin_transaction(self) -> None: ...
    def send_offsets_to_transaction(
        self, positions: list[Any], group_metadata: Any, timeout: float
    ) -> None: ...
    def commit_transaction(self, timeout: float) -> None: ...
    def abort_transaction(self, timeout: float) -> None: ...


class TransactionAborted(RetryableError):
    """The open transaction was aborted; its span will be consumed and processed again."""


def _span_problem(ledger: Ledger, unflushed: int, error: BaseException | None) -> str | None:
    if unflushed:
        return f"{unflushed} records not delivered"
    if error is not None:
        return str(error)
    for batch in ledger:
        if batch.failures or batch.error is not None:
            return str(batch.error or f"Kafka failed {len(batch.failures)} records")
        if batch.state is not None and (not batch.state.done() or batch.state_error()):
            return "feature state not durable"
    return None


def _kafka_error(exc: BaseException) -> Any:
    return exc.args[0] if exc.args else None


class Transactions:
    """The open transaction of one worker, spanning batches for ``interval_s`` at most."""

    def __init__(
        self,
        producer: TransactionalProducer,
        consumer: Any,
        topic_partition: Callable[[str, int, int], Any],
        interval_s: float,
        timeout_s: float = 30.0,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self._tp = topic_partition
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._open = False
        self._started = 0.0
        self._first: Offsets = {}
        self._next: Offsets = {}
        self._aborts = 0
        self.committed = 0
        self.aborted = 0

    @property
    def open(self) -> bool:
        return self._open

    def init(self) -> None:
        """Register the transactional id (fencing any older instance that holds it)."""
        self.producer.init_transactions(self._timeout_s)

    def begin(self) -> None:
        """Open a transaction if none is open (call before producing a batch)."""
        if not self._open:
            self.producer.begin_transaction()
            self._open = True
            self._started = time.monotonic()

    def add(self, first: Offsets, following: Offsets) -> None:
        """A batch produced inside the open transaction: its first offsets (for a rewind) and
        the offsets to commit after it."""
        for tp, offset in first.items():
            self._first.setdefault(tp, offset)
        self._next.update(following)

    def due(self) -> bool:
        return self._open and time.monotonic() - self._started >= self._interval_s

    def commit(self) -> None:
        """Commit the span's output and offsets atomically.

        Raises:
            TransactionAborted: Kafka required an abort; it was aborted and the consumer rewound.
            FatalError: this instance was fenced or the transaction state is unrecoverable.
        """
        if not self._open:
            return
        from confluent_kafka import KafkaException

        offsets = [self._tp(t, p, o) for (t, p), o in sorted(self._next.items())]
        attempts = 0
        while True:
            try:
                if offsets:
                    self.producer.send_offsets_to_transaction(
                        offsets, self.consumer.consumer_group_metadata(), self._timeout_s
                    )
                    offsets = []  # sent: a retried commit must not send them again
                self.producer.commit_transaction(self._timeout_s)
                break
            except KafkaException as exc:
                err = _kafka_error(exc)
                if err is not None and err.retriable() and attempts < 10:
                    attempts += 1
                    continue
                if err is not None and err.txn_requires_abort():
                    self.abort(f"commit failed: {err}")
                    raise TransactionAborted(f"transaction aborted: {err}") from exc
                raise FatalError(f"transaction commit failed (fenced or fatal): {err}") from exc
        self.committed += 1
        self._aborts = 0
        self._reset()

    def abort(self, why: str) -> None:
        """Abort the open transaction and rewind the consumer to the span's first offsets.

        Raises:
            FatalError: aborting failed, or the same span was aborted too many times in a row.
        """
        if not self._open:
            return
        from confluent_kafka import KafkaException

        log.warning("aborting transaction (%s); re-processing from %s", why, self._first)
        try:
            self.producer.abort_transaction(self._timeout_s)
        except KafkaException as exc:
            raise FatalError(f"transaction abort failed: {_kafka_error(exc)}") from exc
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for (topic, partition), offset in self._first.items():
            if (topic, partition) in assigned:
                self.consumer.seek(self._tp(topic, partition, offset))
        self.aborted += 1
        self._aborts += 1
        self._reset()
        if self._aborts >= MAX_CONSECUTIVE_ABORTS:
            raise FatalError(f"{self._aborts} transactions aborted in a row; last: {why}")

    def commit_span(self, ledger: Ledger, producer: Any, error: BaseException | None) -> None:
        """Close the open span: wait for every delivery report and state write, then commit;
        abort instead if anything in it failed (``error``: the worker is already failing).

        Raises:
            FatalError: fenced, or the transaction state is unrecoverable.
        """
        if not self._open:
            return
        unflushed = producer.flush(self._timeout_s)
        wait(ledger.state_futures(), timeout=self._timeout_s)
        problem = _span_problem(ledger, unflushed, error)
        try:
            if problem is not None:
                self.abort(problem)
            else:
                self.commit()
        except TransactionAborted:
            pass
        finally:
            ledger.clear()

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        for tp in partitions:
            self._first.pop(tp, None)
            self._next.pop(tp, None)

    def _reset(self) -> None:
        self._open = False
        self._first = {}
        self._next = {}
