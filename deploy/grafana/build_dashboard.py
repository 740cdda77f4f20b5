"""Writes deploy/grafana/dashboards/stream-infer.json, the on-call dashboard Grafana provisions.

The checked-in JSON is what is provisioned; this script is how it is made (plain dicts, no
dependency), and tests/unit/test_deploy_grafana.py fails when the two differ. After editing:

    .venv/bin/python deploy/grafana/build_dashboard.py

Metric names: stream_infer/metrics.py (worker), stream_infer/labels/metrics.py (label
processor), stream_infer/sidecar/metrics.py (sidecar), stream_infer/lag/exporter.py (lag
exporter); tests/integration/test_metrics_endpoints.py checks every query against the real
/metrics of each process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "stream-infer.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
LAG = 'group=~"$group"'
WIDTH = 24


class Layout:
    """Places panels left to right in rows of 24 columns; ids in order."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._x = 0
        self._y = 0
        self._row_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "id": len(self.panels) + 1,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self._y, "w": WIDTH, "h": 1},
                "panels": [],
            }
        )
        self._y += 1

    def add(self, panel: dict[str, Any], w: int = 8, h: int = 8) -> None:
        if self._x + w > WIDTH:
            self._newline()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self._x, "y": self._y, "w": w, "h": h}
        self.panels.append(panel)
        self._x += w
        self._row_h = max(self._row_h, h)

    def _newline(self) -> None:
        if self._x:
            self._y += self._row_h
        self._x = 0
        self._row_h = 0


Query = tuple[str, str]  # (PromQL, legend)


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DS, "refId": ref, "expr": expr, "legendFormat": legend}
    if instant:
        t.update({"instant": True, "range": False, "format": "table"})
    return t


def _base(kind: str, title: str, description: str, queries: list[Query]) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(queries)],
    }


def timeseries(
    title: str,
    description: str,
    queries: list[Query],
    unit: str = "short",
    threshold: float | None = None,
    stack: bool = False,
) -> dict[str, Any]:
    custom: dict[str, Any] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    defaults: dict[str, Any] = {"unit": unit, "custom": custom}
    if threshold is not None:
        custom["thresholdsStyle"] = {"mode": "line"}
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}, {"color": "red", "value": threshold}],
        }
    return _base("timeseries", title, description, queries) | {
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title: str, description: str, queries: list[Query]) -> dict[str, Any]:
    return _base("stat", title, description, queries) | {
        "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "value_and_name",
        },
    }


def table(title: str, description: str, expr: str) -> dict[str, Any]:
    """An instant query's series as rows (labels as columns, time and value hidden)."""
    panel = _base("table", title, description, [])
    panel["targets"] = [target(expr, instant=True)]
    return panel | {
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
        "transformations": [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
        ],
    }


def quantiles(metric: str, by: str = "", legend: str = "") -> list[Query]:
    """p50 and p99 of a histogram, summed over every series but ``by``."""
    grouping = f"{by}, le" if by else "le"
    return [
        (
            f"histogram_quantile({q}, sum by ({grouping}) (rate({metric}_bucket[{RATE}])))",
            f"{legend}p{round(q * 100)}",
        )
        for q in (0.5, 0.99)
    ]


def rate(metric: str, by: str = "") -> str:
    """Per-second rate of a counter, summed over every series but ``by``."""
    return f"sum by ({by}) (rate({metric}[{RATE}]))" if by else f"sum(rate({metric}[{RATE}]))"


PARTITION = "{{group}} {{topic}}[{{partition}}]"
PROC = 'job=~"stream-infer.*"'


def panels() -> list[dict[str, Any]]:
    lay = Layout()
    ts = timeseries

    lay.row("Consumer lag (from the broker: reported with every worker down)")
    lay.add(
        ts(
            "Lag per partition (offsets)",
            "Records between each partition's committed offset and its log end.",
            [
                (
                    f"sum by (group, topic, partition) (kafka_consumergroup_group_lag{{{LAG}}})",
                    PARTITION,
                )
            ],
        )
    )
    lay.add(
        ts(
            "Lag per partition (seconds)",
            "Age of each partition's oldest unconsumed record. Alert: max over 30 s for 5 min.",
            [
                (
                    "max by (group, topic, partition) "
                    f"(kafka_consumergroup_group_lag_seconds{{{LAG}}})",
                    PARTITION,
                )
            ],
            unit="s",
            threshold=30,
        )
    )
    lay.add(
        table(
            "Partition status",
            "Burrow-like status per partition (OK, WARN, STOP, STALL, REWIND, UNKNOWN). "
            "STOP or STALL for 2 min pages.",
            "max by (group, topic, partition, status) "
            f"(stream_infer_consumergroup_status{{{LAG}}}) == 1",
        )
    )
    lay.add(
        stat(
            "Group lag",
            "Per group: the largest lag in seconds and the total lag in records.",
            [
                (
                    f"max by (group) (kafka_consumergroup_group_max_lag_seconds{{{LAG}}})",
                    "{{group}} max s",
                ),
                (
                    f"sum by (group) (kafka_consumergroup_group_sum_lag{{{LAG}}})",
                    "{{group}} records",
                ),
            ],
        ),
        w=12,
        h=5,
    )
    lay.add(
        ts(
            "Worker-side lag (librdkafka)",
            "What each worker's consumer sees: records behind the high watermark.",
            [
                (
                    "sum by (instance, topic, partition) (stream_infer_consumer_lag)",
                    "{{instance}} {{topic}}[{{partition}}]",
                )
            ],
        ),
        w=12,
        h=5,
    )

    lay.row("Throughput")
    lay.add(
        ts(
            "Events in / out per second",
            "Written to the input topic (its log-end offsets), consumed and scored by the workers.",
            [
                (
                    rate('kafka_partition_latest_offset{topic="$input_topic"}'),
                    "written to $input_topic",
                ),
                (rate("stream_infer_events_consumed_total"), "consumed"),
                (rate("stream_infer_events_scored_total"), "scored"),
            ],
            unit="ops",
        )
    )
    lay.add(
        ts(
            "Dead letters per second",
            "By reason. Alert: over 1% of consumed events for 5 min.",
            [(rate("stream_infer_events_dead_lettered_total", "reason"), "{{reason}}")],
            unit="ops",
            stack=True,
        )
    )
    lay.add(
        ts(
            "Flagged scores per second",
            "Scores carrying a flag, e.g. terminal_features_unavailable (the label "
            "processor's rows were not final in time).",
            [(rate("stream_infer_scores_flagged_total", "flag"), "{{flag}}")],
            unit="ops",
        )
    )
    lay.add(
        ts(
            "Errors per second",
            "Produce requests Kafka failed, records it refused, feature-store calls that "
            "failed (retried) and model calls that raised.",
            [
                (rate("stream_infer_delivery_errors_total"), "delivery"),
                (rate("stream_infer_produce_errors_total", "topic"), "refused by {{topic}}"),
                (rate("stream_infer_state_errors_total", "op"), "state {{op}}"),
                (rate("stream_infer_model_errors_total", "version"), "model v{{version}}"),
            ],
            unit="ops",
        ),
        w=24,
        h=6,
    )

    lay.row("Latency and batching")
    lay.add(
        ts(
            "End-to-end latency p50 / p99",
            "Input record timestamp to score produced, all workers.",
            quantiles("stream_infer_end_to_end_seconds"),
            unit="s",
        )
    )
    mean_batch = f"{rate('stream_infer_batch_size_sum')} / {rate('stream_infer_batch_size_count')}"
    lay.add(
        ts(
            "Batch size",
            "Events per micro-batch: p50, p99 and the mean.",
            [*quantiles("stream_infer_batch_size"), (mean_batch, "mean")],
        )
    )
    lay.add(
        ts(
            "Inference and feature time per batch",
            "One ONNX call per batch, and the batch's feature computation (p50, p99).",
            [
                *quantiles("stream_infer_inference_seconds", legend="inference "),
                *quantiles("stream_infer_features_seconds", legend="features "),
            ],
            unit="s",
        )
    )
    lay.add(
        ts(
            "Backpressure",
            "Batches produced but not acknowledged, and whether partitions are paused.",
            [
                ("sum by (instance) (stream_infer_in_flight_batches)", "{{instance}} in flight"),
                ("max by (instance) (stream_infer_paused)", "{{instance}} paused"),
            ],
        ),
        w=24,
        h=6,
    )

    lay.row("Model")
    lay.add(
        table(
            "Model version and role per process",
            "Each worker's and sidecar's serving set: version, role, semver.",
            "max by (job, instance, version, role, semver) (stream_infer_model_serving) == 1",
        )
    )
    lay.add(
        ts(
            "Canary share",
            "Share of customers routed to the challenger, per process.",
            [("max by (instance) (stream_infer_canary_percent)", "{{instance}}")],
            unit="percent",
        )
    )
    lay.add(
        ts(
            "PSI per version",
            "Population stability index of the last closed window vs the version's "
            "reference. Alert: over 0.25 for 5 min.",
            [("max by (version, role) (stream_infer_model_psi)", "v{{version}} {{role}}")],
            threshold=0.25,
        )
    )
    lay.add(
        ts(
            "Rollbacks and refused loads",
            "Automatic challenger rollbacks and versions refused at load (hash, signature, "
            "probe), per hour.",
            [
                ("sum(increase(stream_infer_model_rollbacks_total[1h]))", "rollbacks"),
                (
                    "sum by (version) (increase(stream_infer_model_load_failures_total[1h]))",
                    "refused v{{version}}",
                ),
            ],
        ),
        w=12,
        h=6,
    )
    lay.add(
        ts(
            "Serving revision",
            "The registry revision each process serves: they agree once a change is applied.",
            [("max by (instance) (stream_infer_serving_revision)", "{{instance}}")],
        ),
        w=12,
        h=6,
    )

    lay.row("Health")
    lay.add(
        ts(
            "Ready and store down",
            "Worker ready (model warm, consuming, store answering); feature store or label "
            "store down.",
            [
                ("min by (instance) (stream_infer_ready)", "{{instance}} ready"),
                ("max by (instance) (stream_infer_store_down)", "{{instance}} store down"),
                (
                    "max by (instance) (stream_infer_labels_store_down)",
                    "{{instance}} label store down",
                ),
            ],
        ),
        w=12,
        h=6,
    )
    lay.add(
        ts(
            "Scrape targets up",
            "1 while Prometheus scrapes the target.",
            [('up{job=~"stream-infer.*"}', "{{job}} {{instance}}")],
        ),
        w=12,
        h=6,
    )

    lay.row("Labels")
    lay.add(
        ts(
            "Label watermark delay",
            "Wall clock minus the event-time watermark. Keeping up: 7 to 8 days (labels come "
            "7 days late, the watermark moves by whole days). Alert: over 9 days.",
            [("max by (instance) (stream_infer_labels_watermark_delay_seconds)", "{{instance}}")],
            unit="s",
            threshold=9 * 86400,
        )
    )
    lay.add(
        ts(
            "Labels per second",
            "Counted, dead-lettered and already counted (redelivered); terminal rows published.",
            [
                (rate("stream_infer_labels_counted_total"), "counted"),
                (rate("stream_infer_labels_dead_lettered_total"), "dead-lettered"),
                (rate("stream_infer_labels_skipped_total"), "already counted"),
                (rate("stream_infer_labels_rows_published_total", "sink"), "rows to {{sink}}"),
            ],
            unit="ops",
        )
    )
    lay.add(
        ts(
            "Label store errors per second",
            "Count-store and row-sink calls that failed; each batch is retried until applied.",
            [(rate("stream_infer_labels_store_errors_total", "op"), "{{op}}")],
            unit="ops",
        )
    )

    lay.row("Sidecar")
    lay.add(
        ts(
            "Sidecar requests per second",
            "By API (v1 domain, v2 Open Inference Protocol) and HTTP status.",
            [(rate("stream_infer_http_requests_total", "api, status"), "{{api}} {{status}}")],
            unit="reqps",
        )
    )
    lay.add(
        ts(
            "Sidecar latency p50 / p99",
            "Time to answer a scoring request, by API.",
            quantiles("stream_infer_http_latency_seconds", "api", "{{api}} "),
            unit="s",
        )
    )
    mean_http_batch = (
        f"{rate('stream_infer_http_batch_size_sum', 'api')} "
        f"/ {rate('stream_infer_http_batch_size_count', 'api')}"
    )
    lay.add(
        ts(
            "Sidecar queue and batches",
            "Requests waiting for a batch, and the mean requests per model call.",
            [
                ("sum by (api) (stream_infer_http_queue_depth)", "{{api}} queued"),
                (mean_http_batch, "{{api}} mean batch"),
            ],
        )
    )

    lay.row("Processes")
    lay.add(
        ts(
            "CPU",
            "Cores used per process.",
            [(f"rate(process_cpu_seconds_total{{{PROC}}}[{RATE}])", "{{job}} {{instance}}")],
        )
    )
    lay.add(
        ts(
            "Resident memory",
            "Per process.",
            [(f"process_resident_memory_bytes{{{PROC}}}", "{{job}} {{instance}}")],
            unit="bytes",
        )
    )
    lay.add(
        ts(
            "GC collections per second",
            "CPython collections by generation (the worker collects rarely on purpose).",
            [
                (
                    rate(f"python_gc_collections_total{{{PROC}}}", "job, generation"),
                    "{{job}} gen {{generation}}",
                )
            ],
            unit="ops",
        )
    )
    return lay.panels


def templating() -> dict[str, Any]:
    return {
        "list": [
            {
                "type": "datasource",
                "name": "datasource",
                "label": "Prometheus",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            },
            {
                "type": "query",
                "name": "group",
                "label": "Consumer group",
                "datasource": DS,
                "definition": "label_values(kafka_consumergroup_group_sum_lag, group)",
                "query": {
                    "query": "label_values(kafka_consumergroup_group_sum_lag, group)",
                    "refId": "group",
                },
                "refresh": 2,
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {"text": "All", "value": "$__all"},
                "hide": 0,
            },
            {
                "type": "textbox",
                "name": "input_topic",
                "label": "Input topic",
                "query": "transactions",
                "current": {"text": "transactions", "value": "transactions"},
                "hide": 0,
            },
        ]
    }


def dashboard() -> dict[str, Any]:
    return {
        "uid": "stream-infer",
        "title": "stream-infer",
        "description": "On-call: lag, throughput, dead letters, latency, model serving and "
        "drift, labels, sidecar.",
        "tags": ["stream-infer", "kafka", "fraud"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "links": [],
        "annotations": {"list": []},
        "templating": templating(),
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
