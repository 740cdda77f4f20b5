"""Consume the scores topic and measure end-to-end latency and completeness.

Latency runs from a transaction's *intended* send time (the replayer's schedule, carried through
the worker in the :data:`~stream_infer.events.INTENDED_SEND_HEADER` header) to the moment this
process received its score, so queueing anywhere (a late producer included) shows up instead of
being hidden by coordinated omission. A score without the header falls back to its own Kafka
timestamp (counted in ``header_fallbacks``).

The consumer is *assigned* every partition from the beginning (no group join, so nothing is
missed while a group would be forming); scores intended before ``since_wall_ns`` (an earlier
run's) are skipped. Collection stops when every expected id has been seen, after an idle
timeout, or at the overall deadline.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import orjson

from loadgen.accounting import Accounting, IdTally, parse_id
from loadgen.latency import SecondSeries, per_second, percentiles
from stream_infer.events import INTENDED_SEND_HEADER

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
StopReason = Literal["complete", "idle", "timeout", "stopped"]

_NS_PER_MS: Final = 1_000_000


@dataclass(frozen=True)
class MeasureOptions:
    """``idle_timeout_s``: stop after this long without a score (counted only once the expected
    ids are known); ``max_wait_s``: hard cap; ``since_wall_ns``: skip older scores."""

    topic: str
    idle_timeout_s: float = 15.0
    max_wait_s: float | None = None
    since_wall_ns: int | None = None
    batch_size: int = 1000
    # consume() returns when the batch is full *or* this expires, and a batch's receive time
    # is taken when it returns: this bounds how much the measurer itself adds to a latency.
    poll_timeout_s: float = 0.005


@dataclass
class Measurement:
    """What :func:`collect` saw. Arrays have one entry per score record kept."""

    transaction_id: Ints
    latency_ms: Floats
    received_ns: Ints
    service_latency_ms: Floats
    accounting: Accounting | None
    header_fallbacks: int
    skipped_old: int
    undecodable: int
    origin_ns: int
    duration_s: float
    stopped_by: str
    series: SecondSeries = field(init=False)

    def __post_init__(self) -> None:
        self.series = per_second(self.received_ns, self.latency_ms, self.origin_ns)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (the report's body)."""
        counts = self.series.count
        busy = counts[counts > 0]
        svc = self.service_latency_ms  # the worker's own figure: NaN when a score lacks it
        return {
            "records": len(self.transaction_id),
            "accounting": None if self.accounting is None else self.accounting.as_dict(),
            "latency_ms": percentiles(self.latency_ms),
            "service_latency_ms": percentiles(svc[~np.isnan(svc)]),
            "throughput": {
                "mean_per_s": float(busy.mean()) if len(busy) else 0.0,
                "peak_per_s": int(counts.max()) if len(counts) else 0,
                "per_second": self.series.as_dict(),
            },
            "header_fallbacks": self.header_fallbacks,
            "skipped_old": self.skipped_old,
            "undecodable": self.undecodable,
            "duration_s": round(self.duration_s, 3),
            "stopped_by": self.stopped_by,
        }


class ScoreCollector:
    """Accumulates score records; thread-safe, so a replayer can hand over the expected ids
    (:meth:`expect`) while another thread collects.

    Args:
        expected: the sent ids, when known up front (None: call :meth:`expect` later, or never
            for an open-ended measurement).
        awaiting_expected: ids will come through :meth:`expect`; the idle timeout waits for them.
    """

    def __init__(
        self,
        since_wall_ns: int | None = None,
        expected: Ints | None = None,
        *,
        awaiting_expected: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._since = since_wall_ns
        self._ids: list[Ints] = []
        self._lat: list[Floats] = []
        self._recv: list[Ints] = []
        self._svc: list[Floats] = []
        self._tally: IdTally | None = None
        self._unparsed = 0
        self.records = 0
        self.header_fallbacks = 0
        self.skipped_old = 0
        self.undecodable = 0
        self._idle_origin: float | None = None if awaiting_expected else clock()
        if expected is not None:
            self.expect(expected)

    def expect(self, ids: Ints) -> None:
        """Set the sent ids; records already collected are matched against them now."""
        with self._lock:
            self._tally = IdTally(ids)
            for chunk in self._ids:
                self._tally.add(chunk)
            self._tally.add_unexpected(self._unparsed)
            self._idle_origin = self._clock()

    @property
    def idle_origin(self) -> float | None:
        """Monotonic time from which idleness counts; None while waiting for expected ids."""
        return self._idle_origin

    @property
    def complete(self) -> bool:
        """Every expected id has a score (False while the expected ids are unknown)."""
        with self._lock:
            return self._tally is not None and self._tally.complete

    def progress(self) -> tuple[int, int | None]:
        """``(expected ids scored, expected ids)``; the second is None until known."""
        with self._lock:
            if self._tally is None:
                return self.records, None
            return self._tally.distinct_seen, self._tally.expected

    def add(self, messages: Sequence[Any], received_ns: int) -> int:
        """Record a batch of score messages received at ``received_ns``; returns how many kept.

        Messages need ``value()``, ``headers()`` and ``timestamp()`` (confluent-kafka's).
        """
        ids: list[int] = []
        lat: list[float] = []
        svc: list[float] = []
        unparsed = fallbacks = old = bad = 0
        since = self._since
        for msg in messages:
            try:
                score = orjson.loads(msg.value())
                raw_id = score["transaction_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                bad += 1
                continue
            intended = _intended_ns(msg.headers())
            cut = since
            fallback = intended is None
            if intended is None:
                ts_type, ts_ms = msg.timestamp()
                intended = ts_ms * _NS_PER_MS if ts_type and ts_ms > 0 else received_ns
                # Kafka timestamps are whole ms: compare at that resolution.
                cut = None if since is None else since - since % _NS_PER_MS
            if cut is not None and intended < cut:
                old += 1
                continue
            fallbacks += fallback
            tid = parse_id(raw_id)
            if tid is None:
                unparsed += 1
                continue
            ids.append(tid)
            lat.append((received_ns - intended) / _NS_PER_MS)
            service = score.get("latency_ms")
            svc.append(float(service) if isinstance(service, int | float) else float("nan"))
        id_arr = np.asarray(ids, dtype=np.int64)
        with self._lock:
            self._ids.append(id_arr)
            self._lat.append(np.asarray(lat, dtype=np.float64))
            self._recv.append(np.full(len(ids), received_ns, dtype=np.int64))
            self._svc.append(np.asarray(svc, dtype=np.float64))
            self._unparsed += unparsed
            if self._tally is not None:
                self._tally.add(id_arr)
                self._tally.add_unexpected(unparsed)
            self.records += len(ids) + unparsed
            self.header_fallbacks += fallbacks
            self.skipped_old += old
            self.undecodable += bad
        return len(ids)

    def result(self, origin_ns: int, duration_s: float, stopped_by: str) -> Measurement:
        """Freeze what was collected into a :class:`Measurement`."""
        with self._lock:

            def cat(parts: Sequence[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
                return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

            return Measurement(
                transaction_id=cat(self._ids, np.int64),
                latency_ms=cat(self._lat, np.float64),
                received_ns=cat(self._recv, np.int64),
                service_latency_ms=cat(self._svc, np.float64),
                accounting=None if self._tally is None else self._tally.result(),
                header_fallbacks=self.header_fallbacks,
                skipped_old=self.skipped_old,
                undecodable=self.undecodable,
                origin_ns=origin_ns,
                duration_s=duration_s,
                stopped_by=stopped_by,
            )


def _intended_ns(headers: list[tuple[str, bytes]] | None) -> int | None:
    if not headers:
        return None
    for key, value in headers:
        if key == INTENDED_SEND_HEADER and value:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def open_consumer(client_config: Mapping[str, Any], topic: str, timeout_s: float = 15.0) -> Any:
    """A consumer assigned every partition of ``topic`` from the beginning (no group join).

    Raises:
        TimeoutError: the topic did not show up in the metadata within ``timeout_s``.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    cfg = dict(client_config)
    cfg.update(
        {
            "group.id": f"loadgen-measure-{uuid.uuid4().hex[:8]}",  # required; never joined
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # The default 500 ms fetch wait would be measured as end-to-end latency.
            "fetch.wait.max.ms": 5,
        }
    )
    consumer = Consumer(cfg)
    deadline = time.monotonic() + timeout_s
    while True:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            break
        if time.monotonic() > deadline:
            consumer.close()
            raise TimeoutError(f"topic {topic!r} not found within {timeout_s}s")
        time.sleep(0.1)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)])
    return consumer


def collect(
    consumer: Any,
    collector: ScoreCollector,
    options: MeasureOptions,
    *,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_batch: Callable[[ScoreCollector], None] | None = None,
) -> StopReason:
    """Poll ``consumer`` into ``collector`` until complete, idle, the deadline, or ``stop``.

    The receive time of a batch is taken once, as soon as ``consume`` returns it.
    """
    started = clock()
    last_record = started
    while True:
        if stop is not None and stop.is_set():
            return "stopped"
        messages = consumer.consume(options.batch_size, options.poll_timeout_s)
        received_ns = time.time_ns()
        good = [m for m in messages if m.error() is None]
        now = clock()
        if good:
            collector.add(good, received_ns)
            last_record = now
            if on_batch is not None:
                on_batch(collector)
        if collector.complete:
            return "complete"
        origin = collector.idle_origin
        if origin is not None and now - max(origin, last_record) > options.idle_timeout_s:
            return "idle"
        if options.max_wait_s is not None and now - started > options.max_wait_s:
            return "timeout"


def measure(
    client_config: Mapping[str, Any],
    options: MeasureOptions,
    expected: Ints | None = None,
    *,
    on_batch: Callable[[ScoreCollector], None] | None = None,
) -> Measurement:
    """Collect scores from ``options.topic`` and return the measurement (standalone use).

    Raises:
        TimeoutError: the scores topic does not exist.
    """
    origin_ns = options.since_wall_ns or time.time_ns()
    started = time.monotonic()
    collector = ScoreCollector(options.since_wall_ns, expected)
    consumer = open_consumer(client_config, options.topic)
    try:
        reason = collect(consumer, collector, options, on_batch=on_batch)
    finally:
        consumer.close()
    return collector.result(origin_ns, time.monotonic() - started, reason)
