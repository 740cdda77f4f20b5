"""In-flight batches: what a batch produced, what Kafka acknowledged, which offsets are safe.

The at-least-once contract (docs/ARCHITECTURE.md, "Reliability") lives here: a batch's offsets
may be stored only when every record it produced is acknowledged and its feature-state write is
durable, and only after every earlier batch's. A batch that failed stays at the head of the
ledger for good, so no offset at or past it can ever be stored; the worker stops and a restart
re-processes from the last stored offset.

Delivery callbacks only record (they run inside ``producer.poll()`` and must never raise); the
worker decides what a failure means on its own thread (:meth:`Ledger.take_failures`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

from stream_infer.errors import StreamInferError

Offsets = dict[tuple[str, int], int]


class Batch:
    """One consumed batch whose outputs are not all acknowledged or whose state is not durable.

    ``offsets`` maps (topic, partition) to the next offset to consume (last + 1).
    """

    __slots__ = ("error", "failures", "ledger", "offsets", "pending", "sent", "state")

    def __init__(self, ledger: Ledger, offsets: Offsets) -> None:
        self.ledger = ledger
        self.offsets = offsets
        self.pending = 0
        #: (kafka error, the delivered message) for each record Kafka refused; the worker
        #: finds what it was (:meth:`find`) and decides.
        self.failures: list[tuple[Any, Any]] = []
        #: What the batch produced, by topic: (topic, records, the input of each or None).
        self.sent: list[tuple[str, Sequence[Any], Sequence[Any] | None]] = []
        #: Set once the batch can never be acknowledged (the worker must stop).
        self.error: StreamInferError | None = None
        self.state: Future[None] | None = None

    def on_delivery(self, err: Any, msg: Any) -> None:
        """Record one delivery report; never raises (called from inside ``poll()``).

        One bound method serves every record of the batch (a closure per record cost more
        than the produce call itself); a failed record is identified later, from ``msg``.
        """
        self.pending -= 1
        if err is not None:
            if not self.failures:
                self.ledger.failed.append(self)
            self.failures.append((err, msg))

    def find(self, msg: Any) -> tuple[str, Any, Any] | None:
        """(topic, record, its input or None) of what this batch produced as ``msg``, by topic
        and value (a score's value names its transaction); None if nothing matches."""
        if msg is None:
            return None
        topic, value = msg.topic(), msg.value()
        for sent_topic, records, sources in self.sent:
            if sent_topic != topic:
                continue
            for i, rec in enumerate(records):
                if rec.value == value:
                    return topic, rec, None if sources is None else sources[i]
        return None

    def done(self) -> bool:
        """True when nothing it produced is pending or failed and its state write finished."""
        return self.pending <= 0 and not self.failures and (self.state is None or self.state.done())

    def state_error(self) -> BaseException | None:
        if self.state is None or not self.state.done():
            return None
        return self.state.exception()


class Ledger:
    """The in-flight batches of one worker, in consumption order."""

    def __init__(self) -> None:
        self._batches: deque[Batch] = deque()
        #: Batches with delivery failures not yet handled (appended by delivery callbacks).
        self.failed: list[Batch] = []

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self._batches)

    def open(self, offsets: Offsets) -> Batch:
        batch = Batch(self, offsets)
        self._batches.append(batch)
        return batch

    def take_failures(self) -> list[Batch]:
        """Batches whose delivery failures arrived since the last call."""
        failed, self.failed = self.failed, []
        return failed

    def head_error(self) -> StreamInferError | None:
        """The error of the oldest batch, if it can never complete (nothing after it may be
        stored)."""
        if not self._batches:
            return None
        head = self._batches[0]
        if head.error is not None:
            return head.error
        exc = head.state_error()
        if exc is not None:
            from stream_infer.errors import StateWriteError

            head.error = StateWriteError(f"feature state write failed: {exc}")
            head.error.__cause__ = exc
        return head.error

    def complete(self) -> list[Offsets]:
        """Pop the leading batches that are done and return their offsets, oldest first.

        A failed head batch is never popped: once it is there, this returns nothing more.
        """
        out: list[Offsets] = []
        batches = self._batches
        while batches and batches[0].error is None and batches[0].done():
            head = batches[0]
            if head.state_error() is not None:
                self.head_error()
                break
            batches.popleft()
            if head.offsets:
                out.append(head.offsets)
        return out

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions this worker no longer owns: their offsets must never be stored by us
        (the new owner re-processes from the committed offset)."""
        gone = set(partitions)
        for batch in self._batches:
            for tp in gone & batch.offsets.keys():
                del batch.offsets[tp]

    def clear(self) -> None:
        """Forget every batch (exactly-once: their span was committed or aborted as a whole)."""
        self._batches.clear()
        self.failed.clear()

    def offsets(self) -> Offsets:
        """The next offset per partition over every batch (exactly-once commits them)."""
        out: Offsets = {}
        for batch in self._batches:
            out.update(batch.offsets)
        return out

    def state_futures(self) -> list[Future[None]]:
        return [b.state for b in self._batches if b.state is not None and not b.state.done()]
