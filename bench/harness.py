"""The benchmark run: every row on one broker, fresh topics, the same events and model.

Rows (throughput rows are medians of ``reps`` runs, each in its own process):
- transport limit: plain consume -> decode -> encode -> produce;
- model limit: ONNX Runtime on pre-built feature matrices, batch 1 and 512 (rows/s);
- Quix Streams peer and a naive confluent-kafka loop: per-event features and model call;
- stream-infer worker: the full feature pipeline; the same exactly-once (Kafka transactions,
  ``worker.transaction_interval_ms`` apart), and the same with a shadow version scoring every
  event to ``scores-shadow`` (checked to receive one record per event);
- ``stream-infer worker --processes 1`` and ``--processes 2``: the CLI, measured from outside
  (:mod:`bench.scaleout`), so the 2-process group is compared with 1 process measured alike;
- latency: the worker at 50% of its measured maximum, open loop, end to end, next to the
  broker's own two hops at the same rate (:mod:`bench.latency`);
- hot swap: a promote under a steady paced load (:mod:`bench.swap`), ``reps`` runs;
- on Apache Kafka (one KRaft node started here, :mod:`stream_infer.kafka.apache`): the
  transport, worker and exactly-once rows again, on a broker that isolates transactions.

Every row's memory is its own processes' (:mod:`bench.memory`); topics have the spec's
:data:`PARTITIONS`, so each of 2 processes gets 3.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from bench import own_repo
from bench.child import run_row
from bench.latency import broker_floor, worker_latency
from bench.scaleout import cli_worker
from bench.swap import FIGURES as SWAP_FIGURES
from bench.swap import hot_swap
from bench.versions import SECOND, with_second_version
from stream_infer.config import Settings, load_settings
from stream_infer.features.definitions import N_FEATURES
from stream_infer.kafka.apache import ApacheKafka, kafka_version
from stream_infer.kafka.broker import EmbeddedBroker
from stream_infer.runtime import apply_topics, load_serving_model

REPO = Path(__file__).resolve().parents[1]
THROUGHPUT_ROWS = (
    "transport",
    "quix",
    "naive",
    "worker",
    "worker_eos",
    "worker_shadow",
    "worker_procs_1",
    "worker_procs_2",
)
#: The rows run again on Apache Kafka, beside the embedded broker's.
APACHE_ROWS = ("transport", "worker", "worker_eos")
#: The rows run as ``stream-infer worker --processes N`` (N is the value).
CLI_ROWS = {"worker_procs_1": 1, "worker_procs_2": 2}
#: topics/transactions.toml's count: 2 processes get 3 partitions each.
PARTITIONS = 6
#: The exactly-once row's worker settings; a stable instance id names its transactional.id.
EOS_WORKER = {"processing_guarantee": "exactly-once", "instance_id": "bench-eos"}
SWAP_RATE = 5_000.0


def _topics(bootstrap: str, work: Path) -> Settings:
    sfx = uuid.uuid4().hex[:8]
    s = load_settings(
        kafka={"bootstrap_servers": bootstrap},
        topics={
            "specs_dir": str(REPO / "topics"),
            "partitions": PARTITIONS,
            # Every broker here is one node.
            "replication_factor": 1,
            "min_insync_replicas": 1,
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


def count_records(settings: Settings, topic: str, idle_s: float = 2.0) -> dict[str, int]:
    """Every record of ``topic`` (read from the beginning until ``idle_s`` brings nothing):
    how many, and how many distinct transaction ids."""
    from loadgen.measure import open_consumer

    consumer = open_consumer(settings.kafka.client_config(), topic)
    ids: set[str] = set()
    records, last = 0, time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            msgs = [m for m in consumer.consume(1000, 0.1) if m.error() is None]
            if msgs:
                last = time.monotonic()
            records += len(msgs)
            ids.update(orjson.loads(m.value())["transaction_id"] for m in msgs)
    finally:
        consumer.close()
    return {"records": records, "transactions": len(ids)}


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
    """µs per event of the worker's feature step (in-memory state, batches of 512), median of
    3 passes: the fraud example's definitions compiled (stream views, daily rows with nothing
    published, on-demand views, the matrix in the service's order); the event columns are
    built beforehand, as the worker's decoder builds them."""
    from stream_infer.features.compiled import FeatureComputer
    from stream_infer.runtime import load_stream_definitions
    from stream_infer.streamdef.spec import SEQ_COLUMN
    from stream_infer.streamdef.training import event_columns

    defs = load_stream_definitions(load_settings())
    cols = event_columns(data, defs.source)
    cols[SEQ_COLUMN] = np.arange(len(data), dtype=np.int64)
    n = len(data)
    batches = [{k: v[i : i + 512] for k, v in cols.items()} for i in range(0, n, 512)]
    parts = np.zeros(512, dtype=np.int64)
    runs = []
    for _ in range(3):  # each from empty state; the median, like every row here
        fc = FeatureComputer(defs)
        start = time.perf_counter()
        for batch in batches:
            fc.compute(batch, parts[: len(batch[SEQ_COLUMN])])
        runs.append((time.perf_counter() - start) / max(1, n) * 1e6)
    return statistics.median(runs)


def _swap(bootstrap: str, work: Path, data: pd.DataFrame, rate: float, i: int) -> dict[str, Any]:
    """One hot-swap run on fresh topics and a fresh copy of the registry (a promote mutates it)."""
    s = _topics(bootstrap, work)
    model, registry = with_second_version(s.model, work / f"registry-swap-{i}")
    s = s.model_copy(update={"model": model})
    return hot_swap(s, registry, data, rate, work / f"swap-{i}.log")


def _ratios(rows: dict[str, list[dict[str, Any]]], name: str, base: str) -> list[float]:
    """Per repetition: ``name``'s events/s over ``base``'s, run next to it."""
    return [
        round(r["events_per_s"] / b["events_per_s"], 3)
        for r, b in zip(rows[name], rows[base], strict=True)
    ]


def _summary(rows: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "events_per_s": statistics.median(r["events_per_s"] for r in runs),
            "cpu_s_per_1000": statistics.median(r["cpu_s"] / r["events"] * 1000 for r in runs),
            # Each run's own processes: VmHWM (summed over a process tree) and sampled RSS.
            "peak_rss_mb": max(r["hwm_mb"] for r in runs),
            "sampled_rss_mb": max(r["sampled_rss_mb"] for r in runs),
            "processes": runs[0]["processes"],
            "runs": [round(r["events_per_s"], 1) for r in runs],
            **(
                {"events_per_batch": statistics.median(r["events"] / r["batches"] for r in runs)}
                if "batches" in runs[0]
                else {}
            ),
        }
        for name, runs in rows.items()
    }


def _on_apache(
    work: Path, data: pd.DataFrame, reps: int, row_args: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The :data:`APACHE_ROWS` on one Apache Kafka node, interleaved like the others."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in APACHE_ROWS}
    with ApacheKafka(work / "apache-kafka") as node:
        for _ in range(reps):
            for name in APACHE_ROWS:
                s = _topics(node.bootstrap, work)
                _preload(s, data)
                rows[name].append(
                    run_row(name, s, len(data), work / "rows-apache", **row_args.get(name, {}))
                )
    summary = _summary(rows)
    return {
        "broker": f"Apache Kafka {kafka_version()} (one KRaft node)",
        "rows": summary,
        "exactly_once": {
            "vs_at_least_once": summary["worker_eos"]["events_per_s"]
            / summary["worker"]["events_per_s"],
            "runs_vs_at_least_once": _ratios(rows, "worker_eos", "worker"),
            "transactions": [
                {"committed": r["committed"], "aborted": r["aborted"]} for r in rows["worker_eos"]
            ],
        },
    }


def run_all(quick: bool, events: int | None, reps: int) -> dict[str, Any]:
    from loadgen.simulator import SimulationConfig, generate
    from stream_infer.training.workflow import run_training

    events = events or (5_000 if quick else 100_000)
    reps = 1 if quick else reps
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    simulated = generate(SimulationConfig(seed=0), progress=False)
    data = simulated.head(events)
    settings = load_settings(model={"registry_dir": str(work / "registry")})
    run_training(settings, quick=True, echo=lambda _m: None)
    shadow_model, shadowed = with_second_version(settings.model, work / "registry-shadow")
    shadowed.shadow(settings.model.name, SECOND, reason="bench: shadow row")
    row_args: dict[str, dict[str, Any]] = {
        "worker_eos": {"worker": EOS_WORKER},
        "worker_shadow": {"registry": str(shadow_model.registry_dir)},
    }
    boot = load_settings().resolved_bootstrap()
    broker = None if boot else EmbeddedBroker("tansu").start()
    bootstrap = boot or broker.bootstrap  # type: ignore[union-attr]
    try:
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in THROUGHPUT_ROWS}
        shadow_topics: list[dict[str, int]] = []
        for rep in range(reps):
            for name in THROUGHPUT_ROWS:  # interleaved, so drift hits every row alike
                s = _topics(bootstrap, work)
                if name in CLI_ROWS:  # preloaded only once the group has formed
                    log = work / f"{name}-{rep}.log"
                    run = cli_worker(
                        s, CLI_ROWS[name], len(data), partial(_preload, s, data), log, PARTITIONS
                    )
                    rows[name].append(run)
                    continue
                _preload(s, data)
                rows[name].append(
                    run_row(name, s, len(data), work / "rows", **row_args.get(name, {}))
                )
                if name == "worker_shadow":
                    shadow_topics.append(count_records(s, s.topics.scores_shadow))
        summary = _summary(rows)
        worker_max = summary["worker"]["events_per_s"]
        lat_s = 3.0 if quick else 15.0
        # At half the worker's maximum (the target's rate) and at a quarter: on a small box
        # the broker and the load generator share the cores, and the pair shows where that
        # saturates it.
        # The whole simulated stream (``rate * lat_s`` events, however fast the rate); the
        # smoke test keeps to its few events.
        paced = data if quick else simulated
        latency = {
            share: (
                worker_latency(_topics(bootstrap, work), work, paced, worker_max * frac, lat_s),
                broker_floor(_topics(bootstrap, work), work, paced, worker_max * frac, lat_s),
            )
            for share, frac in (("half", 0.5), ("quarter", 0.25))
        }
        # A slower pace when the events run short, so the stream outlasts a poll and a load.
        seconds = 6.0 if quick else 20.0
        rate = min(SWAP_RATE, len(data) / seconds)
        swap_data = data.head(int(rate * seconds))
        swaps = [_swap(bootstrap, work, swap_data, rate, i) for i in range(reps)]
    finally:
        if broker is not None:
            broker.cleanup()
    apache = _on_apache(work, data, reps, row_args)
    broker_name = "KAFKA_BOOTSTRAP" if boot else "tansu (embedded)"
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "broker": broker_name,
        },
        "events": len(data),
        "reps": reps,
        "rows": summary,
        "model_limit": model_limit(settings),
        "features_us_per_event": feature_cost(data),
        "own_repo_features_us_per_event": own_repo.feature_cost(len(data), reps),
        "latency_at_half_max": latency["half"][0],
        "broker_two_hops_at_half_max": latency["half"][1],
        "latency_at_quarter_max": latency["quarter"][0],
        "broker_two_hops_at_quarter_max": latency["quarter"][1],
        "scale_out": {
            "partitions": PARTITIONS,
            "vs_one_process": summary["worker_procs_2"]["events_per_s"]
            / summary["worker_procs_1"]["events_per_s"],
            "runs_vs_one_process": _ratios(rows, "worker_procs_2", "worker_procs_1"),
            "assignments": [r["assignment"] for r in rows["worker_procs_2"]],
            "measured_from": [r["measured_from"] for r in rows["worker_procs_2"]],
            "exit_codes": [r["exit_code"] for name in CLI_ROWS for r in rows[name]],
            # Supervisor first, then its workers: the memory figure's parts.
            "hwm_mb_per_process": [r["hwm_mb_per_process"] for r in rows["worker_procs_2"]],
            "scores": [
                {"records": r["scores"], "transactions": r["distinct_scores"]}
                for name in CLI_ROWS
                for r in rows[name]
            ],
        },
        "exactly_once": {
            "broker": broker_name,
            "transaction_interval_ms": settings.worker.transaction_interval_ms,
            "vs_at_least_once": summary["worker_eos"]["events_per_s"] / worker_max,
            "runs_vs_at_least_once": _ratios(rows, "worker_eos", "worker"),
            "transactions": [
                {"committed": r["committed"], "aborted": r["aborted"]} for r in rows["worker_eos"]
            ],
        },
        "shadow": {
            "vs_no_shadow": summary["worker_shadow"]["events_per_s"] / worker_max,
            "runs_vs_no_shadow": _ratios(rows, "worker_shadow", "worker"),
            "events": len(data),
            "scores_shadow": shadow_topics,
        },
        "hot_swap": {
            **{k: statistics.median(r[k] for r in swaps) for k in SWAP_FIGURES},
            "runs": swaps,
        },
        "apache": apache,
    }
