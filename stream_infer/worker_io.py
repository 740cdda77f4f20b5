"""What the worker needs of its Kafka clients and sinks (Protocols tests fake), and who may
pause its partitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from stream_infer.metrics import WorkerMetrics


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
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...


class FeatureSink(Protocol):
    """Where a batch's computed features also go (e.g. Feast's online store); best effort."""

    def offer(
        self,
        customer_ids: Sequence[str],
        epoch_seconds: Sequence[int],
        features: npt.NDArray[np.float64],
    ) -> None: ...

    def close(self) -> None: ...


class Pauses:
    """Partitions are paused while any reason holds (backpressure, a store outage), and
    resumed when the last one clears; reasons never undo each other."""

    def __init__(self, consumer: ConsumerLike, metrics: WorkerMetrics) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self._reasons: set[str] = set()
        self._paused: set[tuple[str, int]] = set()

    def has(self, reason: str) -> bool:
        return reason in self._reasons

    def add(self, reason: str) -> None:
        if reason in self._reasons:
            return
        if not self._reasons:
            self._set(paused=True)
        self._reasons.add(reason)

    def discard(self, reason: str) -> None:
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if not self._reasons:
            self._set(paused=False)

    def reapply(self) -> None:
        """Pause partitions assigned since the pause began (a rebalance while paused)."""
        if self._reasons:
            new = [tp for tp in self._consumer.assignment() if _key(tp) not in self._paused]
            if new:
                self._consumer.pause(new)
                self._paused.update(_key(tp) for tp in new)

    def _set(self, *, paused: bool) -> None:
        assignment = self._consumer.assignment()
        if assignment:
            if paused:
                self._consumer.pause(assignment)
            else:
                self._consumer.resume(assignment)
        self._paused = {_key(tp) for tp in assignment} if paused else set()
        self._metrics.paused.set(1 if paused else 0)


def _key(tp: Any) -> tuple[str, int]:
    return (tp.topic, tp.partition)
