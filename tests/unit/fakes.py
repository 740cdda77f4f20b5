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


@dataclass(frozen=True)
class FakeKafkaError:
    """Mirrors ``confluent_kafka.KafkaError``'s accessors the worker reads."""

    _code: int
    _name: str = "ERR"
    _retriable: bool = False
    _abort: bool = False

    def code(self) -> int:
        return self._code

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return self._name.lower()

    def retriable(self) -> bool:
        return self._retriable

    def txn_requires_abort(self) -> bool:
        return self._abort

    def fatal(self) -> bool:
        return False


@dataclass
class FakeConsumer:
    batches: list[list[FakeRecord]]
    stored: list[list[TP]] = field(default_factory=list)
    paused: int = 0
    resumed: int = 0
    closed: bool = False
    commits: int = 0
    seeks: list[TP] = field(default_factory=list)
    callbacks: dict[str, Any] = field(default_factory=dict)
    partitions: list[TP] = field(default_factory=lambda: [TP("transactions", 0)])
    #: Called before each consume (a test's hook to inject a rebalance or a fault).
    before_consume: Any = None

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.topics = topics
        self.callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[FakeRecord]:
        if self.before_consume is not None:
            self.before_consume(self)
        if self.paused > self.resumed:
            return []  # paused partitions deliver nothing
        return self.batches.pop(0) if self.batches else []

    def seek(self, tp: TP) -> None:
        self.seeks.append(tp)

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def stored_offsets(self) -> list[tuple[int, int]]:
        """(partition, offset) of every store, in order."""
        return [(t.partition, t.offset) for batch in self.stored for t in batch]

    def store_offsets(self, *, offsets: list[TP]) -> None:
        self.stored.append(offsets)

    def commit(self, *, asynchronous: bool) -> None:
        self.commits += 1

    def pause(self, partitions: list[Any]) -> None:
        self.paused += 1

    def resume(self, partitions: list[Any]) -> None:
        self.resumed += 1

    def assignment(self) -> list[TP]:
        return list(self.partitions)

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeProducer:
    """Holds deliveries until ``deliver`` is called, like a broker that has not acked yet.

    Faults: ``fail_topic`` fails every delivery to that topic with ``fail_error`` (a cluster
    error by default); ``refuse`` maps a value predicate to an error raised by ``produce()``
    at once, as librdkafka does for a record larger than ``message.max.bytes``.
    """

    auto_ack: bool = True
    fail_topic: str | None = None
    fail_error: Any = "broker down"
    fail_values: Any = None
    refuse: Any = None
    pending: list[tuple[Any, str, bytes]] = field(default_factory=list)
    produced: list[tuple[str, bytes, bytes | None, dict[str, Any]]] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)

    def produce(self, topic: str, value: bytes, key: bytes | None, **kwargs: Any) -> None:
        if self.refuse is not None and self.refuse(topic, value):
            from confluent_kafka import KafkaException

            raise KafkaException(FakeKafkaError(10, "MSG_SIZE_TOO_LARGE"))
        self.produced.append((topic, value, key, kwargs))
        self.pending.append((kwargs["on_delivery"], topic, value))

    def deliver(self, n: int | None = None) -> None:
        take = self.pending[: n if n is not None else len(self.pending)]
        del self.pending[: len(take)]
        for cb, topic, value in take:
            fails = topic == self.fail_topic or (
                self.fail_values is not None and self.fail_values(topic, value)
            )
            cb(self.fail_error if fails else None, FakeRecord(value, _topic=topic))

    def topics(self) -> list[str]:
        return [p[0] for p in self.produced]

    # -- transactions (exactly-once tests) ----------------------------------------------
    def init_transactions(self, timeout: float) -> None:
        self.transactions.append("init")

    def begin_transaction(self) -> None:
        self.transactions.append("begin")

    def send_offsets_to_transaction(self, positions: list[Any], meta: Any, timeout: float) -> None:
        self.transactions.append(
            "offsets:" + ",".join(f"{p.partition}@{p.offset}" for p in positions)
        )

    def commit_transaction(self, timeout: float) -> None:
        self.deliver()
        self.transactions.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.pending.clear()
        self.transactions.append("abort")

    def poll(self, timeout: float) -> int:
        if self.auto_ack:
            self.deliver()
        return 0

    def flush(self, timeout: float) -> int:
        self.deliver()
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> None:
        return None
