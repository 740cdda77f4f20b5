"""loadgen run against the real scoring worker: paced replay in, every score measured once."""

from __future__ import annotations

from pathlib import Path

from loadgen.measure import MeasureOptions
from loadgen.replay import ReplayOptions
from loadgen.run import run
from loadgen.simulator import SimulationConfig, generate
from loadgen.stream import Dataset
from stream_infer.config import Settings

from .conftest import make_test_settings
from .kafka_io import setup_topics, worker_thread


def test_run_measures_every_score_of_a_paced_replay(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = make_test_settings(
        base_settings, kafka_bootstrap, tmp_path, model={"registry_dir": str(model_registry)}
    )
    setup_topics(settings)
    with worker_thread(settings):
        data = Dataset.from_frame(generate(SimulationConfig(50, 100, 10, seed=5), progress=False))
        count = 300
        result = run(
            data,
            ReplayOptions(
                settings.topics.transactions,
                settings.topics.labels,
                rate=200.0,
                count=count,
                labels="inline",
            ),
            MeasureOptions(settings.topics.scores, idle_timeout_s=20.0, max_wait_s=120.0),
            settings.kafka.client_config(),
            progress=False,
        )
    assert result.replay.transactions_sent == count and result.replay.delivery_errors == 0
    m = result.measurement
    assert m.stopped_by == "complete"
    assert m.accounting is not None and m.accounting.complete
    assert m.accounting.scored == count
    # The worker forwards the intended-send header: no fallbacks, latencies measured from it.
    assert m.header_fallbacks == 0 and m.skipped_old == 0
    assert (m.latency_ms > 0).all()
    summary = m.summary()
    assert summary["latency_ms"]["count"] == count
    assert summary["throughput"]["peak_per_s"] > 0


def _histogram_quantile(worker_metrics: object, q: float) -> tuple[float, float]:
    """The (lower, upper) bucket bounds, in ms, holding quantile ``q`` of the worker's
    end-to-end histogram (what a Prometheus histogram_quantile would interpolate within)."""
    registry = worker_metrics.registry  # type: ignore[attr-defined]
    buckets: list[tuple[float, float]] = []
    for family in registry.collect():
        if family.name == "stream_infer_end_to_end_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets.append((float(sample.labels["le"]), sample.value))
    total = buckets[-1][1]
    lower = 0.0
    for le, cumulative in buckets:
        if cumulative >= q * total:
            return lower * 1000, le * 1000
        lower = le
    return lower * 1000, float("inf")


def test_loadgen_latency_agrees_with_the_workers_histogram(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = make_test_settings(
        base_settings, kafka_bootstrap, tmp_path, model={"registry_dir": str(model_registry)}
    )
    setup_topics(settings)
    with worker_thread(settings) as worker:
        data = Dataset.from_frame(generate(SimulationConfig(200, 400, 10, seed=3), progress=False))
        result = run(
            data,
            ReplayOptions(
                settings.topics.transactions,
                settings.topics.labels,
                rate=1000.0,
                count=3000,
                labels="none",
            ),
            MeasureOptions(settings.topics.scores, idle_timeout_s=20.0, max_wait_s=120.0),
            settings.kafka.client_config(),
            progress=False,
        )
    m = result.measurement
    assert m.accounting is not None and m.accounting.complete
    import numpy as np

    # The worker's own figure, as loadgen read it from each score, against its histogram.
    service = m.service_latency_ms
    for q in (0.5, 0.99):
        lower, upper = _histogram_quantile(worker.metrics, q)
        value = float(np.quantile(service, q))
        assert lower <= value <= upper, (q, value, lower, upper)
    # End to end from the intended send time includes the worker's part and two broker hops.
    assert float(np.median(m.latency_ms)) >= float(np.median(service))
