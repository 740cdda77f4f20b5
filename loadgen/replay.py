"""Publish a dataset to Kafka on an open-loop schedule: transactions and their delayed labels.

Transactions go to the transactions topic keyed by customer_id (one partition per customer, so
per-customer order is kept: the producer is idempotent, which keeps order across retries); each
carries its intended send time (epoch ns, ASCII decimal) in the
:data:`~stream_infer.events.INTENDED_SEND_HEADER` header. Labels go to the labels topic keyed by
terminal_id, merged into the stream at their transaction's event time plus the label delay
(:mod:`loadgen.stream`). When each message is due is :mod:`loadgen.pacing`'s business; this
module only does the Kafka I/O, the bounds (count, duration) and the live progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import orjson
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from loadgen.pacing import Scheduler, Unpaced, choose_pacing
from loadgen.stream import NS_PER_S, LabelMode, MergedOrder, Message, merge_order
from stream_infer.events import INTENDED_SEND_HEADER

log = logging.getLogger(__name__)

DEFAULT_LABEL_DELAY_S: Final = 7 * 86_400
#: Delivery errors kept verbatim in the result; the rest are only counted.
_ERROR_SAMPLES: Final = 10
_PROGRESS_EVERY_S: Final = 0.25


class Replayable(Protocol):
    """Events to replay, in replay order: the handbook's :class:`~loadgen.stream.Dataset` or
    any repository's (:class:`~loadgen.source_events.SourceEvents`)."""

    @property
    def time_ns(self) -> npt.NDArray[np.int64]:
        """Event times (epoch ns), non-decreasing."""
        ...

    @property
    def ids(self) -> npt.NDArray[Any]:
        """Event ids in replay order (what ``sent_ids`` lists)."""
        ...

    @property
    def id_field(self) -> str:
        """The event id's field in a produced value (a failed delivery is named by it)."""
        ...

    def id_of(self, raw: Any) -> Any:
        """An id as a produced value holds it, as :attr:`ids` holds it."""
        ...

    def __len__(self) -> int: ...

    def head(self, n: int) -> Replayable:
        """The first ``n`` events."""
        ...

    def messages(self, order: MergedOrder, shift_ns: int) -> Iterator[Message]:
        """The merged stream's messages, timestamps in the payload shifted by ``shift_ns``."""
        ...


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay. At most one of ``rate`` and ``time_scale``; neither = as fast as possible.

    ``rate``: transactions per second (labels ride along in their merged position);
    ``time_scale``: event-time deltas divided by this factor; ``count``: the first N
    transactions only; ``duration_s``: stop sending after this many seconds; ``shift_to_now``:
    move every timestamp (whole seconds) so the first transaction is stamped now.
    """

    transactions_topic: str
    labels_topic: str
    rate: float | None = None
    time_scale: float | None = None
    count: int | None = None
    duration_s: float | None = None
    shift_to_now: bool = False
    label_delay_s: float = DEFAULT_LABEL_DELAY_S
    labels: LabelMode = "all"
    flush_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        choose_pacing(self.rate, self.time_scale, 0)  # raises ValueError on bad combinations
        if self.count is not None and self.count < 0:
            raise ValueError("count must not be negative")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration must be positive")


@dataclass
class ReplayResult:
    """What was sent and what Kafka acknowledged.

    ``sent_ids``: ids of the transactions produced and not reported failed, in send order.
    ``max_behind_s``: the worst lateness against the schedule when a message was handed to
    the producer (0 when unpaced). ``stopped_by``: ``end`` (all sent), ``duration`` or
    ``interrupted``.
    """

    transactions_sent: int = 0
    labels_sent: int = 0
    delivery_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    failed_ids: list[Any] = field(default_factory=list)
    sent_ids: npt.NDArray[Any] = field(default_factory=lambda: np.zeros(0, np.int64))
    elapsed_s: float = 0.0
    target_rate: float | None = None
    max_behind_s: float = 0.0
    started_wall_ns: int = 0
    stopped_by: str = "end"

    @property
    def achieved_rate(self) -> float:
        """Transactions per second over the whole replay."""
        return self.transactions_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (ids left out)."""
        return {
            "transactions_sent": self.transactions_sent,
            "labels_sent": self.labels_sent,
            "delivery_errors": self.delivery_errors,
            "error_samples": self.error_samples,
            "elapsed_s": round(self.elapsed_s, 3),
            "target_rate": self.target_rate,
            "achieved_rate": round(self.achieved_rate, 1),
            "max_behind_s": round(self.max_behind_s, 3),
            "stopped_by": self.stopped_by,
        }


class _Deliveries:
    """Delivery-report bookkeeping; the callback records and never raises."""

    def __init__(
        self,
        transactions_topic: str,
        id_field: str = "transaction_id",
        id_of: Callable[[Any], Any] = int,
    ) -> None:
        self._topic = transactions_topic
        self._id_field = id_field
        self._id_of = id_of
        self.errors = 0
        self.samples: list[str] = []
        self.failed_ids: list[Any] = []

    def __call__(self, err: Any, msg: Any) -> None:
        if err is None:
            return
        self.errors += 1
        if len(self.samples) < _ERROR_SAMPLES:
            self.samples.append(str(err))
        try:  # a failed transaction must not count as sent
            if msg.topic() == self._topic:
                self.failed_ids.append(self._id_of(orjson.loads(msg.value())[self._id_field]))
        except Exception:  # the callback must never raise into librdkafka's poll
            log.debug("could not read the id of a failed delivery", exc_info=True)


def producer_settings(base: Mapping[str, Any]) -> dict[str, Any]:
    """The replayer's librdkafka settings on top of ``base`` (bootstrap, security, ...)."""
    cfg = dict(base)
    cfg.setdefault("linger.ms", 5)
    cfg.setdefault("enable.idempotence", True)
    cfg.setdefault("acks", "all")
    cfg.setdefault("batch.num.messages", 10_000)
    # Bounded: when the broker falls behind, produce() raises BufferError and we wait.
    cfg.setdefault("queue.buffering.max.messages", 200_000)
    cfg.setdefault("queue.buffering.max.kbytes", 262_144)
    return cfg


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} tx"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("behind {task.fields[behind]:.2f}s"),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def replay(
    data: Replayable,
    options: ReplayOptions,
    producer_config: Mapping[str, Any],
    *,
    progress: bool = True,
    clock: Callable[[], float] = time.monotonic,
    producer_factory: Callable[[dict[str, Any]], Any] | None = None,
) -> ReplayResult:
    """Send ``data`` as ``options`` say; flush; return what happened.

    Delivery failures never raise: they are counted in the result (with a few samples), and
    their transactions are left out of ``sent_ids``. Ctrl-C stops sending, then flushes.

    Args:
        producer_config: librdkafka settings (see :func:`producer_settings`).
        producer_factory: builds the producer from the config (tests); default
            ``confluent_kafka.Producer``.
    """
    if producer_factory is None:
        from confluent_kafka import Producer

        producer_factory = Producer
    if options.count is not None:
        data = data.head(options.count)
    producer = producer_factory(producer_settings(producer_config))
    # Connected, with the topic's leaders known, before the schedule starts: otherwise the
    # first second's messages wait in the client for metadata and are charged as latency.
    producer.list_topics(options.transactions_topic, timeout=_CONNECT_TIMEOUT_S)
    deliveries = _Deliveries(options.transactions_topic, data.id_field, data.id_of)
    origin_ns = int(data.time_ns[0]) if len(data) else 0
    pacing = choose_pacing(options.rate, options.time_scale, origin_ns)
    scheduler = Scheduler(pacing, clock=clock, sleep=partial(_wait, producer))
    order = merge_order(data.time_ns, round(options.label_delay_s * NS_PER_S), options.labels)
    result = ReplayResult(target_rate=pacing.target_rate)
    paced = not isinstance(pacing, Unpaced)
    n_tx = len(data)

    scheduler.start()
    result.started_wall_ns = scheduler.started_wall_ns
    shift_ns = 0
    if options.shift_to_now and n_tx:
        now_s = scheduler.started_wall_ns // NS_PER_S
        shift_ns = now_s * NS_PER_S - (origin_ns // NS_PER_S) * NS_PER_S
    topics = {"transaction": options.transactions_topic, "label": options.labels_topic}
    header = INTENDED_SEND_HEADER
    with _progress(progress) as bar:
        task = bar.add_task("replay", total=n_tx, rate="", behind=0.0)
        next_update = clock() + _PROGRESS_EVERY_S
        last_sent, last_t = 0, clock()
        try:
            for msg in data.messages(order, shift_ns):
                offset = scheduler.due_offset_s(msg.slot, msg.event_time_ns)
                if options.duration_s is not None and (
                    offset >= options.duration_s or scheduler.elapsed_s() >= options.duration_s
                ):
                    result.stopped_by = "duration"
                    break
                behind = scheduler.wait_until(scheduler.started_at + offset)
                if paced:  # unpaced, everything is "due" at the start: lateness means nothing
                    result.max_behind_s = max(result.max_behind_s, behind)
                headers = None
                if msg.topic_kind == "transaction":
                    intended = scheduler.intended_wall_ns(offset)
                    headers = [(header, str(intended).encode("ascii"))]
                _produce(producer, topics[msg.topic_kind], msg.key, msg.value, headers, deliveries)
                if headers is None:
                    result.labels_sent += 1
                else:
                    result.transactions_sent += 1
                now = clock()
                if now >= next_update:
                    rate = (result.transactions_sent - last_sent) / (now - last_t)
                    target = f" / {pacing.target_rate:,.0f}" if pacing.target_rate else ""
                    bar.update(
                        task,
                        completed=result.transactions_sent,
                        rate=f"{rate:,.0f}{target} tx/s",
                        behind=behind if paced else 0.0,
                    )
                    last_sent, last_t = result.transactions_sent, now
                    next_update = now + _PROGRESS_EVERY_S
        except KeyboardInterrupt:
            result.stopped_by = "interrupted"
        bar.update(task, completed=result.transactions_sent)
        result.elapsed_s = scheduler.elapsed_s()
        remaining = producer.flush(options.flush_timeout_s)
    if remaining:
        deliveries.errors += remaining
        deliveries.samples.append(f"{remaining} messages not delivered within the flush timeout")
    result.delivery_errors = deliveries.errors
    result.error_samples = deliveries.samples[: _ERROR_SAMPLES + 1]
    result.failed_ids = deliveries.failed_ids
    sent = data.ids[: result.transactions_sent]  # rows go out in row order
    if deliveries.failed_ids:
        sent = sent[~np.isin(sent, np.asarray(deliveries.failed_ids, dtype=sent.dtype))]
    result.sent_ids = sent
    return result


_CONNECT_TIMEOUT_S: Final = 10.0


def _wait(producer: Any, seconds: float) -> None:
    """Wait about ``seconds`` for the next message, serving delivery callbacks meanwhile.

    ``poll()`` takes whole milliseconds: asked for less it returns at once, so pacing at
    thousands of messages a second was a busy loop that burned a core (on a two-core
    benchmark box, taken from the broker and the worker under test). A wait shorter than a
    millisecond is rounded up to one: messages then leave in bursts, up to a millisecond
    late, and that lateness is charged to their latency (it is measured from the schedule),
    never hidden by sending early.
    """
    producer.poll(min(max(seconds, 0.001), 0.1))


def _produce(
    producer: Any,
    topic: str,
    key: bytes,
    value: bytes,
    headers: list[tuple[str, bytes]] | None,
    on_delivery: _Deliveries,
) -> None:
    """produce(), waiting while the client's bounded queue is full (backpressure)."""
    while True:
        try:
            if headers is None:
                producer.produce(topic, value, key, on_delivery=on_delivery)
            else:
                producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.01)
            continue
        producer.poll(0)
        return
