"""The long-running lag exporter: samples the broker every ``interval_s``, keeps each
partition's commit window (stream_infer.lag.status) and exposes kafka-lag-exporter's metric
names through a custom Collector on its own registry.

Metrics (``cluster_name`` from ``lag.cluster_name``):

- ``kafka_consumergroup_group_lag`` and ``kafka_consumergroup_group_lag_seconds``
  {cluster_name, group, topic, partition, member_host, consumer_id, client_id}: per
  committed partition; lag seconds is exact (the oldest unconsumed record's age);
- ``kafka_consumergroup_group_max_lag``, ``kafka_consumergroup_group_max_lag_seconds``,
  ``kafka_consumergroup_group_sum_lag`` {cluster_name, group};
- ``kafka_consumergroup_group_topic_sum_lag`` {cluster_name, group, topic};
- ``kafka_partition_latest_offset`` {cluster_name, topic, partition};
- ``stream_infer_consumergroup_status`` {group, topic, partition, status}: one series per
  possible status, 1 for the current one, 0 for the others;
- ``stream_infer_consumergroup_group_status`` {group, status}: likewise, per group;
- ``stream_infer_lag_sample_success`` (1 if the last sample read the broker) and
  ``stream_infer_lag_sample_timestamp_seconds`` (wall clock of the last good sample).

Member labels of a partition nobody is assigned to are ``unknown``, as in kafka-lag-exporter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream_infer.errors import RetryableError
from stream_infer.lag.offsets import EndOffsetMethod, Snapshot
from stream_infer.lag.status import GroupStatus, PartitionStatus, StatusTracker
from stream_infer.lag.view import LagView, observe

log = logging.getLogger(__name__)

UNKNOWN_MEMBER = "unknown"
_MEMBER_LABELS = ["cluster_name", "group", "topic", "partition", "member_host", "consumer_id"]
PARTITION_LABELS = [*_MEMBER_LABELS, "client_id"]


class OffsetSource(Protocol):
    """Where snapshots come from (the broker: :class:`~stream_infer.lag.offsets.BrokerOffsets`)."""

    method: EndOffsetMethod

    def sample(self, groups: Sequence[str]) -> Snapshot:
        """One snapshot of ``groups``; raises RetryableError if the broker did not answer."""
        ...


class LagMonitor:
    """Samples ``groups`` from ``source`` and keeps the latest :class:`LagView`.

    ``on_sample`` runs after each sample attempt in the sampling thread (the status page's
    other panels refresh there); its errors are logged, never raised.
    """

    def __init__(
        self,
        source: OffsetSource,
        groups: Sequence[str],
        window: int,
        interval_s: float,
        on_sample: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self.groups = tuple(groups)
        self.interval_s = interval_s
        self._tracker = StatusTracker(window)
        self._on_sample = on_sample
        self._lock = threading.Lock()
        self._view: LagView | None = None
        self._error: str | None = None

    @property
    def view(self) -> LagView | None:
        """The last good sample's view (None before the first)."""
        with self._lock:
            return self._view

    @property
    def error(self) -> str | None:
        """Why the last sample failed (None if it succeeded)."""
        with self._lock:
            return self._error

    def sample_once(self) -> LagView | None:
        """Sample now; a broker that does not answer keeps the previous view and records
        the error (logged once when it starts and once when it clears)."""
        try:
            snapshot = self.source.sample(self.groups)
        except RetryableError as exc:
            with self._lock:
                first = self._error is None
                self._error = str(exc)
            if first:
                log.warning("lag sample failed (keeping the last view): %s", exc)
            return None
        view = observe(snapshot, self._tracker, time.monotonic())
        with self._lock:
            if self._error is not None:
                log.info("lag samples answer again")
            self._view, self._error = view, None
        return view

    def run(self, stop: threading.Event) -> None:
        """Sample every ``interval_s`` (monotonic schedule, no drift) until ``stop`` is set."""
        next_at = time.monotonic()
        while not stop.is_set():
            self.sample_once()
            if self._on_sample is not None:
                try:
                    self._on_sample()
                except Exception:  # a panel must never stop the sampling
                    log.exception("status panels failed to refresh")
            next_at += self.interval_s
            stop.wait(max(0.0, next_at - time.monotonic()))


def _status_family(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class LagCollector(Collector):
    """Turns the monitor's latest view into metric families at each scrape."""

    def __init__(self, monitor: LagMonitor, cluster_name: str) -> None:
        self.monitor = monitor
        self.cluster = cluster_name

    def collect(self) -> Iterator[GaugeMetricFamily]:
        view = self.monitor.view
        ok = GaugeMetricFamily(
            "stream_infer_lag_sample_success", "1 if the last lag sample read the broker"
        )
        ok.add_metric([], 0.0 if self.monitor.error is not None or view is None else 1.0)
        yield ok
        if view is None:
            return
        stamp = GaugeMetricFamily(
            "stream_infer_lag_sample_timestamp_seconds", "Wall clock of the last lag sample"
        )
        stamp.add_metric([], view.taken_at)
        yield stamp
        yield from self._partition_families(view)
        yield from self._group_families(view)

    def _partition_families(self, view: LagView) -> Iterator[GaugeMetricFamily]:
        c = self.cluster
        lag = GaugeMetricFamily(
            "kafka_consumergroup_group_lag",
            "Group offset lag of a partition",
            labels=PARTITION_LABELS,
        )
        seconds = GaugeMetricFamily(
            "kafka_consumergroup_group_lag_seconds",
            "Age of the oldest unconsumed record of a partition (exact)",
            labels=PARTITION_LABELS,
        )
        status = _status_family(
            "stream_infer_consumergroup_status",
            "Burrow-like status of a partition: 1 for the current one",
            ["group", "topic", "partition", "status"],
        )
        for r in view.rows:
            if r.lag is None or r.status is None:
                continue
            labels = [
                c,
                r.group,
                r.topic,
                str(r.partition),
                r.host or UNKNOWN_MEMBER,
                r.consumer_id or UNKNOWN_MEMBER,
                r.client_id or UNKNOWN_MEMBER,
            ]
            lag.add_metric(labels, float(r.lag))
            if r.lag_seconds is not None:
                seconds.add_metric(labels, r.lag_seconds)
            for s in PartitionStatus:
                value = 1.0 if s is r.status else 0.0
                status.add_metric([r.group, r.topic, str(r.partition), s.value], value)
        latest = GaugeMetricFamily(
            "kafka_partition_latest_offset",
            "Log-end offset of a partition",
            labels=["cluster_name", "topic", "partition"],
        )
        for (topic, partition), offset in sorted(view.latest_offsets.items()):
            latest.add_metric([c, topic, str(partition)], float(offset))
        yield from (lag, seconds, status, latest)

    def _group_families(self, view: LagView) -> Iterator[GaugeMetricFamily]:
        c = self.cluster
        group_labels = ["cluster_name", "group"]
        max_lag = GaugeMetricFamily(
            "kafka_consumergroup_group_max_lag",
            "Largest partition lag of a group",
            labels=group_labels,
        )
        max_seconds = GaugeMetricFamily(
            "kafka_consumergroup_group_max_lag_seconds",
            "Largest partition lag seconds of a group",
            labels=group_labels,
        )
        sum_lag = GaugeMetricFamily(
            "kafka_consumergroup_group_sum_lag",
            "Sum of a group's partition lags",
            labels=group_labels,
        )
        topic_sum = GaugeMetricFamily(
            "kafka_consumergroup_group_topic_sum_lag",
            "Sum of a group's partition lags in one topic",
            labels=["cluster_name", "group", "topic"],
        )
        status = _status_family(
            "stream_infer_consumergroup_group_status",
            "Burrow-like status of a group: 1 for the current one",
            ["group", "status"],
        )
        for g in view.groups:
            for s in GroupStatus:
                status.add_metric([g.group, s.value], 1.0 if s is g.status else 0.0)
            if g.status is GroupStatus.NOTFOUND:
                continue
            max_lag.add_metric([c, g.group], float(g.max_lag))
            max_seconds.add_metric([c, g.group], g.max_lag_seconds)
            sum_lag.add_metric([c, g.group], float(g.sum_lag))
            for topic, total in sorted(g.topic_sum_lag.items()):
                topic_sum.add_metric([c, g.group, topic], float(total))
        yield from (max_lag, max_seconds, sum_lag, topic_sum, status)


def lag_registry(monitor: LagMonitor, cluster_name: str) -> CollectorRegistry:
    """A registry of its own holding only the lag collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LagCollector(monitor, cluster_name))
    return registry
