"""Small in-memory stand-ins for Kafka clients and records (unit tests only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeRecord:
    """Mirrors the confluent_kafka.Message accessors the pipeline reads."""

    _value: bytes | None
    _key: bytes | None = b"k"
    _topic: str = "transactions"
    _partition: int = 0
    _offset: int = 0
    _ts: tuple[int, int] = (1, 0)
    _headers: list[tuple[str, bytes]] | None = None

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return self._ts

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> None:
        return None


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int
    offset: int = -1


@dataclass
class FakeConsumer:
    batches: list[list[FakeRecord]]
    stored: list[list[TP]] = field(default_factory=list)
    paused: int = 0
    resumed: int = 0
    closed: bool = False
    commits: int = 0

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.topics = topics

    def consume(self, num_messages: int, timeout: float) -> list[FakeRecord]:
        return self.batches.pop(0) if self.batches else []

    def store_offsets(self, *, offsets: list[TP]) -> None:
        self.stored.append(offsets)

    def commit(self, *, asynchronous: bool) -> None:
        self.commits += 1

    def pause(self, partitions: list[Any]) -> None:
        self.paused += 1

    def resume(self, partitions: list[Any]) -> None:
        self.resumed += 1

    def assignment(self) -> list[TP]:
        return [TP("transactions", 0)]

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeProducer:
    """Holds deliveries until ``deliver`` is called, like a broker that has not acked yet."""

    auto_ack: bool = True
    fail_topic: str | None = None
    pending: list[tuple[Any, str]] = field(default_factory=list)
    produced: list[tuple[str, bytes, bytes | None, dict[str, Any]]] = field(default_factory=list)

    def produce(self, topic: str, value: bytes, key: bytes | None, **kwargs: Any) -> None:
        self.produced.append((topic, value, key, kwargs))
        self.pending.append((kwargs["on_delivery"], topic))

    def deliver(self, n: int | None = None) -> None:
        take = self.pending[: n if n is not None else len(self.pending)]
        del self.pending[: len(take)]
        for cb, topic in take:
            cb("broker down" if topic == self.fail_topic else None, None)

    def poll(self, timeout: float) -> int:
        if self.auto_ack:
            self.deliver()
        return 0

    def flush(self, timeout: float) -> int:
        self.deliver()
        return 0
