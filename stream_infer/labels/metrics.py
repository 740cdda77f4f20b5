"""The label processor's Prometheus metrics, on a registry it owns.

What on-call reads from ``stream-infer labels``: labels counted and dead-lettered per second,
daily rows published, store failures (each is retried with backoff), whether the store is
down, and the event-time watermark with its delay behind the wall clock.

The watermark is the end of the last day whose labels are all in, over every partition, as
published with the daily rows (``complete_through``), in epoch seconds of transaction time.
Labels come ``LABEL_DELAY_DAYS`` (7) days after their transaction and the watermark moves a
whole day at a time, so a processor that keeps up sits 7 to 8 days behind the wall clock;
deploy/prometheus/alerts.yml alerts a day past that.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge

from stream_infer.errors import RetryableError
from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.labels.aggregator import BatchOutcome, RowSink
from stream_infer.metrics import add_runtime_collectors
from stream_infer.streamdef.daily_source import DailyRow

T = TypeVar("T")


class LabelMetrics:
    """Everything the on-call dashboard reads from a label processor."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.counted = Counter(
            "stream_infer_labels_counted", "Labels counted into the store", registry=r
        )
        self.dead_lettered = Counter(
            "stream_infer_labels_dead_lettered",
            "Labels sent to the dead-letter topic (undecodable or invalid)",
            registry=r,
        )
        self.skipped = Counter(
            "stream_infer_labels_skipped",
            "Labels already counted (redelivered after a restart or a rebalance)",
            registry=r,
        )
        self.rows_published = Counter(
            "stream_infer_labels_rows_published",
            "Final daily-view rows handed to a sink (a retried publish counts again)",
            ["sink"],
            registry=r,
        )
        self.store_errors = Counter(
            "stream_infer_labels_store_errors",
            "Batch steps that failed and are retried with backoff: counting (op=count) or "
            "publishing rows (op=publish); the store did not answer, or a rebalance kept "
            "moving the batch's partitions on",
            ["op"],
            registry=r,
        )
        self.store_down = Gauge(
            "stream_infer_labels_store_down",
            "1 while the partial store or a row sink is failing and batches are being retried",
            registry=r,
        )
        self.watermark = Gauge(
            "stream_infer_labels_watermark_seconds",
            "Event-time watermark: end of the last day whose labels are all in (epoch seconds)",
            registry=r,
        )
        self.watermark_delay = Gauge(
            "stream_infer_labels_watermark_delay_seconds",
            "Wall clock minus the watermark (NaN until the watermark is known)",
            registry=r,
        )
        self._watermark_s = math.nan
        # Computed at scrape time: the delay grows while nothing arrives.
        self.watermark_delay.set_function(self._delay)
        self.watermark.set_function(lambda: self._watermark_s)
        add_runtime_collectors(r)

    def watch_store(self, is_down: Callable[[], bool]) -> None:
        """Report ``is_down()`` (read at every scrape) as ``stream_infer_labels_store_down``."""
        self.store_down.set_function(lambda: 1.0 if is_down() else 0.0)

    def batch_applied(self, outcome: BatchOutcome) -> None:
        """Count an applied batch's labels."""
        self.counted.inc(outcome.counted)
        self.skipped.inc(outcome.skipped)
        self.dead_lettered.inc(len(outcome.dead_letters))

    def watermark_published(self, complete_through: int) -> None:
        """Day ``complete_through`` (UTC day number) is complete: the watermark is its end."""
        watermark = float((complete_through + 1) * SECONDS_PER_DAY)
        if not watermark <= self._watermark_s:  # never backwards; NaN (unknown) compares False
            self._watermark_s = watermark

    def counting_errors(self, op: str, step: Callable[[], T]) -> Callable[[], T]:
        """``step``, counting each :class:`~stream_infer.errors.RetryableError` it raises
        under ``op`` (and raising it on)."""
        errors = self.store_errors.labels(op)

        def counted() -> T:
            try:
                return step()
            except RetryableError:
                errors.inc()
                raise

        return counted

    def counting_rows(self, sink: RowSink, name: str, watermark: bool = False) -> RowSink:
        """``sink``, counting the rows it took under ``sink=name``; with ``watermark``, each
        publish it took also moves the watermark (give it to the daily-row store's sink)."""
        on_published = self.watermark_published if watermark else None
        return _CountingSink(sink, self.rows_published.labels(name), on_published)

    def _delay(self) -> float:
        # Wall clock on purpose: the watermark is an epoch timestamp, not an interval.
        return time.time() - self._watermark_s


class _CountingSink:
    """A :class:`RowSink` that counts the rows it passes on."""

    def __init__(
        self, sink: RowSink, rows: Counter, on_published: Callable[[int], None] | None
    ) -> None:
        self._sink = sink
        self._rows = rows
        self._on_published = on_published

    def publish(
        self, rows: Mapping[str, Mapping[tuple[str, int], DailyRow]], complete_through: int
    ) -> None:
        self._sink.publish(rows, complete_through)
        self._rows.inc(sum(len(r) for r in rows.values()))
        if self._on_published is not None:
            self._on_published(complete_through)
