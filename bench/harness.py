"""The benchmark run: every row on one broker, fresh topics, the same events and model.

Rows (throughput rows are medians of ``reps`` runs, each in its own process):
- transport limit: plain consume -> decode -> encode -> produce;
- model limit: ONNX Runtime on pre-built feature matrices, batch 1 and 512 (rows/s);
- Quix Streams peer and a naive confluent-kafka loop: per-event features and model call;
- stream-infer worker: the full feature pipeline;
- latency: the worker at 50% of its measured maximum, open loop, end to end.
"""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from stream_infer.config import Settings, load_settings
from stream_infer.features.definitions import N_FEATURES
from stream_infer.kafka.broker import EmbeddedBroker
from stream_infer.runtime import apply_topics, load_serving_model

REPO = Path(__file__).resolve().parents[1]
THROUGHPUT_ROWS = ("transport", "quix", "naive", "worker")


def _topics(bootstrap: str, work: Path) -> Settings:
    sfx = uuid.uuid4().hex[:8]
    s = load_settings(
        kafka={"bootstrap_servers": bootstrap},
        topics={
            "specs_dir": str(REPO / "topics"),
            "partitions": 3,
            "transactions": f"bench-tx-{sfx}",
            "labels": f"bench-lb-{sfx}",
            "scores": f"bench-sc-{sfx}",
            "scores_shadow": f"bench-ss-{sfx}",
            "dead_letter": f"bench-dl-{sfx}",
        },
        model={"registry_dir": str(work / "registry")},
        features={"state_dir": str(work / f"state-{sfx}")},
        worker={"group_id": f"bench-{sfx}"},
        metrics={"enabled": False},
    )
    apply_topics(s)
    return s


def _preload(settings: Settings, data: pd.DataFrame) -> None:
    from loadgen.replay import ReplayOptions, replay
    from loadgen.stream import Dataset

    result = replay(
        Dataset.from_frame(data),
        ReplayOptions(settings.topics.transactions, settings.topics.labels, labels="none"),
        settings.kafka.client_config(),
        progress=False,
    )
    if result.delivery_errors:
        raise RuntimeError(f"preload failed: {result.error_samples}")


def _row(name: str, settings: Settings, events: int) -> dict[str, Any]:
    args = {
        "bootstrap": settings.kafka.bootstrap_servers,
        "source": settings.topics.transactions,
        "sink": settings.topics.scores,
        "events": events,
        "registry": str(settings.model.registry_dir),
        "state_dir": str(settings.features.state_dir),
        "specs": str(settings.topics.specs_dir),
    }
    out = subprocess.run(
        [sys.executable, "-m", "bench.rows", name, orjson.dumps(args).decode()],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"row {name} failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = orjson.loads(lines[-1])
    return result


def model_limit(settings: Settings, seconds: float = 1.0) -> dict[str, float]:
    model = load_serving_model(settings)
    out: dict[str, float] = {}
    for batch in (1, 512):
        x = np.random.default_rng(0).normal(size=(batch, N_FEATURES)).astype(np.float32)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model.predict(x)
            n += batch
        out[f"rows_per_s_batch_{batch}"] = n / (time.perf_counter() - start)
    return out


def feature_cost(data: pd.DataFrame) -> float:
    """µs per event of the worker's feature step (in-memory state, batches of 512)."""
    from stream_infer.features.online import FeatureComputer, TxInput

    epochs = (data["tx_datetime"].astype("int64") // 1_000_000_000).tolist()
    inputs = [
        TxInput(str(t), str(c), str(k), e, float(a), 0, i)
        for i, (t, c, k, e, a) in enumerate(
            zip(
                data["transaction_id"],
                data["customer_id"],
                data["terminal_id"],
                epochs,
                data["tx_amount"],
                strict=True,
            )
        )
    ]
    fc = FeatureComputer()
    start = time.perf_counter()
    for i in range(0, len(inputs), 512):
        fc.compute(inputs[i : i + 512])
    return (time.perf_counter() - start) / max(1, len(inputs)) * 1e6


def latency(
    bootstrap: str, work: Path, data: pd.DataFrame, rate: float, seconds: float
) -> dict[str, Any]:
    from loadgen.measure import MeasureOptions
    from loadgen.replay import ReplayOptions
    from loadgen.run import run
    from loadgen.stream import Dataset
    from stream_infer.process import ChildProcess

    s = _topics(bootstrap, work)
    s = s.model_copy(update={"batch": s.batch.model_copy(update={"max_wait_ms": 5.0})})
    worker = ChildProcess(s, work / "latency-worker.log")
    try:
        worker.wait_for("assigned [", timeout_s=120)
        count = min(len(data), int(rate * seconds))
        result = run(
            Dataset.from_frame(data),
            ReplayOptions(
                s.topics.transactions, s.topics.labels, rate=rate, count=count, labels="none"
            ),
            MeasureOptions(s.topics.scores, idle_timeout_s=30.0),
            s.kafka.client_config(),
            progress=False,
        )
    finally:
        worker.terminate()
    lat = result.measurement.summary()["latency_ms"]
    acc = result.measurement.accounting
    return {
        "rate": rate,
        "events": count,
        "p50_ms": lat["p50"],
        "p99_ms": lat["p99"],
        "p99.9_ms": lat["p99.9"],
        "missing": acc.missing if acc else None,
    }


def run_all(quick: bool, events: int | None, reps: int) -> dict[str, Any]:
    from loadgen.simulator import SimulationConfig, generate
    from stream_infer.training.workflow import run_training

    events = events or (5_000 if quick else 100_000)
    reps = 1 if quick else reps
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    data = generate(SimulationConfig(seed=0), progress=False).head(events)
    settings = load_settings(model={"registry_dir": str(work / "registry")})
    run_training(settings, quick=True, echo=lambda _m: None)
    boot = load_settings().resolved_bootstrap()
    broker = None if boot else EmbeddedBroker("tansu").start()
    bootstrap = boot or broker.bootstrap  # type: ignore[union-attr]
    try:
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in THROUGHPUT_ROWS}
        for _ in range(reps):
            for name in THROUGHPUT_ROWS:  # interleaved, so drift hits every row alike
                s = _topics(bootstrap, work)
                _preload(s, data)
                rows[name].append(_row(name, s, len(data)))
        summary = {
            name: {
                "events_per_s": statistics.median(r["events_per_s"] for r in runs),
                "cpu_s_per_1000": statistics.median(r["cpu_s"] / r["events"] * 1000 for r in runs),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "runs": [round(r["events_per_s"], 1) for r in runs],
            }
            for name, runs in rows.items()
        }
        worker_max = summary["worker"]["events_per_s"]
        lat = latency(bootstrap, work, data, worker_max / 2, 3.0 if quick else 15.0)
    finally:
        if broker is not None:
            broker.cleanup()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "broker": "KAFKA_BOOTSTRAP" if boot else "tansu (embedded)",
        },
        "events": len(data),
        "reps": reps,
        "rows": summary,
        "model_limit": model_limit(settings),
        "features_us_per_event": feature_cost(data),
        "latency_at_half_max": lat,
    }
