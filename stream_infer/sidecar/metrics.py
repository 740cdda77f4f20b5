"""The sidecar's Prometheus metrics, on a registry it owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from stream_infer.metrics import BATCH_BUCKETS, LATENCY_BUCKETS


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
        self.model_info = Info("stream_infer_model", "The model being served", registry=r)
