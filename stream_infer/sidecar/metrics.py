"""The sidecar's Prometheus metrics, on a registry it owns.

The serving-set gauges carry the worker's names and labels
(:class:`stream_infer.metrics.WorkerMetrics`), so one dashboard shows both.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from stream_infer.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, add_runtime_collectors


class SidecarMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "stream_infer_http_requests",
            "Requests by API and status",
            ["api", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "stream_infer_http_latency_seconds",
            "Time to answer a scoring request",
            ["api"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "stream_infer_http_batch_size",
            "Requests scored per model call",
            ["api"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "stream_infer_http_queue_depth", "Requests waiting for a batch", ["api"], registry=r
        )
        add_runtime_collectors(r)  # process_*, python_gc_*, python_info
        self.model_info = Info("stream_infer_model", "The model being served", registry=r)
        self.served = Counter(
            "stream_infer_http_served",
            "Transactions (v1) and tensor requests (v2) answered, by the version and role "
            "that scored them",
            ["api", "version", "role"],
            registry=r,
        )
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
            # stream_infer.metrics); our values are in-process, so clearing works.
            warnings.filterwarnings("ignore", "Clearing labels", UserWarning)
            self.serving.clear()
        for role, version, semver in members:
            self.serving.labels(str(version), role, semver).set(1)
        self.canary_percent.set(percent)
        self.serving_revision.set(revision)
