"""The sidecar's Prometheus metrics, on a registry it owns.

The serving-set gauges are the worker's own definition
(:class:`stream_infer.metrics.ServingSetMetrics`), so one dashboard shows both.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from stream_infer.metrics import (
    BATCH_BUCKETS,
    LATENCY_BUCKETS,
    ServingSetMetrics,
    add_runtime_collectors,
)


class SidecarMetrics(ServingSetMetrics):
    """The sidecar's request metrics, plus the serving set's (:class:`ServingSetMetrics`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        super().__init__(r)
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
