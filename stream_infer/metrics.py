"""Prometheus metrics for the worker and the sidecar, on a registry each process owns.

No global registry: two workers in one test process must not collide. Every registry also
carries the process, GC and platform collectors (:func:`add_runtime_collectors`).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections import Counter as Counter_
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
#: How prometheus-client writes a bucket bound (``le``); the library leaves it untyped.
_le_string: Callable[[float], str] = floatToGoString


class BulkHistogram(Collector):
    """A label-less histogram fed a batch of values at once, exposed exactly as a
    prometheus-client ``Histogram`` with the same name and buckets (``_bucket``, ``_count``,
    ``_sum`` and ``_created`` samples, the same ``le`` strings).

    prometheus-client has no bulk API and per-value ``observe`` costs ~1 µs, a fifth of our
    per-event budget, so the bucket counts are kept in numpy and a batch costs one
    ``searchsorted`` and one ``bincount``. Registered with ``registry``; thread-safe (the
    worker observes, the scrape thread collects).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("buckets not in sorted order")
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._name = name
        self._documentation = documentation
        self._bounds = np.asarray(bounds, dtype=np.float64)
        self._le = [_le_string(b) for b in bounds]
        self._counts = np.zeros(len(bounds), dtype=np.int64)  # per bucket, not cumulative
        self._sum = 0.0
        self._created = time.time()
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, value: float) -> None:
        self.observe_many([value])

    def observe_many(self, values: Sequence[float]) -> None:
        """Count every value in the first bucket whose bound is >= it (as ``observe`` does)."""
        if not len(values):
            return
        arr = np.asarray(values, dtype=np.float64)
        index = np.searchsorted(self._bounds, arr, side="left")
        # A NaN sorts past +Inf: like Histogram.observe, it lands in no bucket.
        counts = np.bincount(index, minlength=len(self._bounds))[: len(self._bounds)]
        total = float(arr.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def describe(self) -> Iterable[Metric]:
        return [Metric(self._name, self._documentation, "histogram")]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        family = Metric(self._name, self._documentation, "histogram")
        for le, n in zip(self._le, cumulative, strict=True):
            family.add_sample(f"{self._name}_bucket", {"le": le}, float(n))
        family.add_sample(f"{self._name}_count", {}, float(cumulative[-1]))
        family.add_sample(f"{self._name}_sum", {}, total)
        family.add_sample(f"{self._name}_created", {}, self._created)
        return [family]


def add_runtime_collectors(registry: CollectorRegistry) -> None:
    """The process's CPU, memory, file descriptors and start time (``process_*``), the garbage
    collector's work per generation (``python_gc_*``) and ``python_info``, on ``registry``."""
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)


class ServingSetMetrics:
    """The serving set's gauges and the versions refused at load, on ``registry``: one
    definition for the worker and the sidecar, so both export the same names and labels and
    one dashboard shows either."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.serving = Gauge(
            "stream_infer_model_serving",
            "1 for each version this process serves, by role",
            ["version", "role", "semver"],
            registry=r,
        )
        self.canary_percent = Gauge(
            "stream_infer_canary_percent", "Share of customers routed to the challenger", registry=r
        )
        self.serving_revision = Gauge(
            "stream_infer_serving_revision", "Registry revision of the serving set", registry=r
        )
        self.model_load_failures = Counter(
            "stream_infer_model_load_failures",
            "Versions refused at load (hash, signature, probe); the old set kept serving",
            ["version"],
            registry=r,
        )

    def set_serving(
        self, members: Iterable[tuple[str, int, str]], percent: int, revision: int
    ) -> None:
        """The serving set: (role, version, semver) of each member."""
        with warnings.catch_warnings():
            # Feast, once imported, makes prometheus-client warn on label removal (see
            # forget_partitions); our values are in-process, so clearing works.
            warnings.filterwarnings("ignore", "Clearing labels", UserWarning)
            self.serving.clear()
        for role, version, semver in members:
            self.serving.labels(str(version), role, semver).set(1)
        self.canary_percent.set(percent)
        self.serving_revision.set(revision)


class WorkerMetrics(ServingSetMetrics):
    """Everything the on-call dashboard reads from a scoring worker."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = Counter(
            "stream_infer_events_consumed", "Events read from the input topic", registry=r
        )
        self.scored = Counter("stream_infer_events_scored", "Scores produced", registry=r)
        self.dead_lettered = Counter(
            "stream_infer_events_dead_lettered",
            "Events sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.flagged = Counter(
            "stream_infer_scores_flagged", "Scores carrying a flag", ["flag"], registry=r
        )
        self.delivery_errors = Counter(
            "stream_infer_delivery_errors", "Produce requests Kafka failed", registry=r
        )
        self.batch_size = Histogram(
            "stream_infer_batch_size", "Events per micro-batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.inference_seconds = Histogram(
            "stream_infer_inference_seconds",
            "Model call per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.features_seconds = Histogram(
            "stream_infer_features_seconds",
            "Feature computation per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = BulkHistogram(
            "stream_infer_end_to_end_seconds",
            "Input record timestamp to score produced",
            LATENCY_BUCKETS,
            r,
        )
        self.consumer_lag = Gauge(
            "stream_infer_consumer_lag",
            "Messages behind the high watermark (librdkafka statistics)",
            ["topic", "partition"],
            registry=r,
        )
        self.in_flight_batches = Gauge(
            "stream_infer_in_flight_batches",
            "Batches produced but not yet acknowledged",
            registry=r,
        )
        self.paused = Gauge(
            "stream_infer_paused", "1 while partitions are paused for backpressure", registry=r
        )
        self.model_info = Info("stream_infer_model", "The model being served", registry=r)
        self.state_errors = Counter(
            "stream_infer_state_errors",
            "Feature-state store calls that failed (each is retried with backoff)",
            ["op"],
            registry=r,
        )
        self.store_down = Gauge(
            "stream_infer_store_down",
            "1 while the feature-state store is failing and partitions are paused",
            registry=r,
        )
        self.ready = Gauge(
            "stream_infer_ready",
            "1 once the worker holds its partition assignment, its model is warm and its store "
            "answers",
            registry=r,
        )
        self.model_errors = Counter(
            "stream_infer_model_errors",
            "Model calls that raised (a batch is retried once, then the worker stops)",
            ["version"],
            registry=r,
        )
        self.produce_errors = Counter(
            "stream_infer_produce_errors",
            "Records Kafka refused permanently (dead-lettered instead)",
            ["topic"],
            registry=r,
        )

        super().__init__(r)  # the serving set's gauges and load failures
        self.psi = Gauge(
            "stream_infer_model_psi",
            "Population stability index of the last closed window vs the version's reference",
            ["version", "role"],
            registry=r,
        )
        self.rollbacks = Counter(
            "stream_infer_model_rollbacks", "Automatic rollbacks of a challenger", registry=r
        )
        add_runtime_collectors(r)

    def set_model(self, name: str, version: int, provider: str) -> None:
        self.model_info.info({"name": name, "version": str(version), "provider": provider})

    def observe_latencies(self, seconds: Sequence[float]) -> None:
        self.end_to_end_seconds.observe_many(seconds)

    def count_flags(self, flags: Iterable[tuple[str, ...]]) -> None:
        totals: Counter_[str] = Counter_()
        # Rows share a handful of distinct flag tuples: count the tuples (in C), then expand.
        for row, n in Counter_(flags).items():
            for flag in row:
                totals[flag] += n
        for flag, n in totals.items():
            self.flagged.labels(flag).inc(n)

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)

    def forget_partitions(self, topic: str, partitions: Iterable[int]) -> None:
        with warnings.catch_warnings():
            # Importing Feast sets PROMETHEUS_MULTIPROC_DIR for the whole process, after which
            # prometheus-client warns on every remove(); our values stay in-process (the value
            # class is fixed when prometheus-client is imported, before Feast), so removal works.
            warnings.filterwarnings("ignore", "Removal of labels", UserWarning)
            for p in partitions:
                with contextlib.suppress(KeyError):
                    self.consumer_lag.remove(topic, str(p))


def serve(registry: CollectorRegistry, host: str, port: int) -> Any:
    """Expose ``registry`` on http://host:port/metrics; returns the server (``shutdown()``)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
