"""``stream-infer demo``: the whole path on the embedded defaults, with a summary.

Broker (Tansu, unless ``KAFKA_BOOTSTRAP``), topics, a model (trained quickly if none is
registered), the label processor and a scoring worker as child processes, a replay of
generated transactions (plus a few malformed ones) with live progress, then the accounting:
events in, scored, dead-lettered, lost, throughput and end-to-end latency.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from stream_infer.config import Settings
from stream_infer.errors import ModelNotFoundError
from stream_infer.kafka.broker import free_port
from stream_infer.labels.app import labels_counted
from stream_infer.model.registry import open_registry
from stream_infer.process import ChildProcess
from stream_infer.runtime import apply_topics, kafka_cluster

#: The demo's dataset: 45 simulated days, so customer windows are warm after the first 30.
DEMO_SIMULATION = {"n_customers": 2000, "n_terminals": 4000, "nb_days": 45, "seed": 1}
DEFAULT_EVENTS = 50_000
#: How long a worker batch waits for its terminal rows before flagging its scores. A compressed
#: replay makes day D's rows final only once the replay is a little way into day D (labels of
#: day D - 7 arrive then), so the worker waits for the label processor rather than flag.
DEMO_TERMINAL_WAIT_MS = 10_000.0
MALFORMED = (b"{not json", b"", b'{"transaction_id": "x", "tx_amount": -3}')


def _ensure_model(settings: Settings, echo: Any) -> None:
    registry = open_registry(settings.model)
    try:
        registry.get(settings.model.name)
    except ModelNotFoundError:
        from stream_infer.training.workflow import run_training

        echo("no model registered: training one (stream-infer train --quick)")
        result = run_training(settings, quick=True, echo=echo)
        echo(f"registered {result.version.manifest.name} v{result.version.manifest.version}")


def _send_malformed(settings: Settings, count: int) -> int:
    from confluent_kafka import Producer

    producer = Producer(settings.kafka.client_config())
    for i in range(count):
        producer.produce(settings.topics.transactions, MALFORMED[i % len(MALFORMED)], b"bad")
    producer.flush(30)
    return count


def _count_dead_letters(settings: Settings, expected: int, timeout_s: float = 30.0) -> int:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"demo-dlq-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topics.dead_letter])
    seen = 0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected and time.monotonic() < deadline:
            seen += sum(1 for m in consumer.consume(100, 0.2) if m.error() is None)
    finally:
        consumer.close()
    return seen


def _demo_settings(settings: Settings, run_dir: Path) -> Settings:
    suffix = uuid.uuid4().hex[:6]
    return settings.model_copy(
        update={
            "worker": settings.worker.model_copy(update={"group_id": f"demo-{suffix}"}),
            "metrics": settings.metrics.model_copy(update={"enabled": True, "port": free_port()}),
            "labels": settings.labels.model_copy(update={"metrics_port": free_port()}),
            "features": settings.features.model_copy(
                update={
                    "state_dir": run_dir / "state",
                    "terminal_wait_ms": max(
                        settings.features.terminal_wait_ms, DEMO_TERMINAL_WAIT_MS
                    ),
                }
            ),
        }
    )


def _worker_counters(settings: Settings) -> dict[str, float]:
    """Flag and dead-letter counters from the worker's own /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {
        f"flagged_{sample.labels['flag']}": sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "stream_infer_scores_flagged"
        for sample in family.samples
        if sample.name == "stream_infer_scores_flagged_total"
    }


def summarize(
    invalid: int, dead_lettered: int, measurement: Any, replay: Any, labels_counted: int
) -> dict[str, Any]:
    """The demo's figures, JSON-ready."""
    accounting = measurement.accounting
    scored = accounting.scored if accounting is not None else 0
    latency = measurement.summary()["latency_ms"]
    received = measurement.received_ns
    # Throughput over the span the scores arrived in (not the measurer's start-up or idle tail).
    elapsed = max(float(received.max() - received.min()) / 1e9, 1e-9) if len(received) else 1e-9
    return {
        "events_in": replay.transactions_sent + invalid,
        "valid": replay.transactions_sent,
        "invalid": invalid,
        "scored": scored,
        "dead_lettered": dead_lettered,
        "lost": replay.transactions_sent + invalid - scored - dead_lettered,
        "duplicated": accounting.duplicated if accounting is not None else 0,
        "throughput_per_s": round(scored / elapsed, 1),
        "replay_rate_per_s": round(replay.achieved_rate, 1),
        "pacing": "as fast as possible"
        if replay.target_rate is None
        else f"{replay.target_rate}/s",
        "latency_ms": {k: latency[k] for k in ("p50", "p99", "p99.9", "max")},
        "labels_sent": replay.labels_sent,
        "labels_counted": labels_counted,
    }


def run_demo(
    settings: Settings,
    *,
    events: int | None = None,
    rate: float | None = None,
    invalid: int = 5,
    echo: Any = print,
) -> dict[str, Any]:
    """Run the demo end to end; returns (and prints) the summary."""
    from rich.console import Console
    from rich.table import Table

    from loadgen.measure import MeasureOptions
    from loadgen.replay import ReplayOptions
    from loadgen.run import run as replay_and_measure
    from loadgen.simulator import SimulationConfig, generate
    from loadgen.stream import Dataset

    console = Console(stderr=True)
    n_events = events or DEFAULT_EVENTS
    run_dir = Path("var") / "demo" / time.strftime("%Y%m%dT%H%M%S")
    with kafka_cluster(settings, embedded=True) as cluster:
        s = _demo_settings(cluster, run_dir)
        console.print(f"broker {s.kafka.bootstrap_servers}; state in {run_dir}")
        apply_topics(s)
        _ensure_model(s, console.print)
        data = generate(SimulationConfig(**DEMO_SIMULATION), progress=False)  # type: ignore[arg-type]
        labels = ChildProcess(s, run_dir / "labels.log", "labels")
        worker = ChildProcess(s, run_dir / "worker.log", "worker")
        status_port = free_port()
        host = s.metrics.host
        status = ChildProcess(
            s,
            run_dir / "lag.log",
            "lag serve",
            [
                "--port", str(status_port),
                "--interval", "2",
                "--scrape", f"http://{host}:{s.metrics.port}/metrics",
                "--scrape", f"http://{host}:{s.labels.metrics_port}/metrics",
            ],
        )  # fmt: skip
        console.print(f"status page: http://127.0.0.1:{status_port}/status (lag, models, drift)")
        try:
            worker.wait_for("assigned [", timeout_s=120)
            labels.wait_for("labels partitions assigned: [", timeout_s=120)
            console.print("worker and label processor running; replaying")
            _send_malformed(s, invalid)
            result = replay_and_measure(
                Dataset.from_frame(data),
                ReplayOptions(s.topics.transactions, s.topics.labels, rate=rate, count=n_events),
                MeasureOptions(s.topics.scores, idle_timeout_s=60.0),
                s.kafka.client_config(),
                progress=True,
            )
            dead = _count_dead_letters(s, invalid)
            flags = _worker_counters(s)
            counted = labels_counted(s)
        finally:
            worker.terminate(timeout_s=120)
            labels.terminate(timeout_s=60)
            status.terminate(timeout_s=30)
    summary = summarize(invalid, dead, result.measurement, result.replay, counted)
    # Scores whose terminal row was not final yet (label processor behind): values are zeros
    # and the score says so; never a silently stale row.
    summary["flagged"] = {k: int(v) for k, v in flags.items()}
    table = Table(title="stream-infer demo")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)
    echo(orjson.dumps(summary).decode())
    return summary
