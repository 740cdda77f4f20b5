"""Bulk histogram observation matches per-value observation exactly; every registry carries
the runtime collectors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_infer.metrics import LATENCY_BUCKETS, BulkHistogram, WorkerMetrics


def _without_created(registry: CollectorRegistry) -> list[str]:
    return [ln for ln in generate_latest(registry).decode().splitlines() if "_created" not in ln]


@given(
    st.lists(
        st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50), max_size=4
    )
)
def test_bulk_histogram_exposes_what_observe_would(batches: list[list[float]]) -> None:
    one, bulk = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("lat", "x", buckets=LATENCY_BUCKETS, registry=one)
    h2 = BulkHistogram("lat", "x", LATENCY_BUCKETS, bulk)
    batches = [*batches, list(LATENCY_BUCKETS)]  # bucket bounds themselves are the edge case
    for batch in batches:
        for v in batch:
            h1.observe(v)
        h2.observe_many(batch)
    lines1, lines2 = _without_created(one), _without_created(bulk)
    # HELP, TYPE, every bucket and the count are the same text; the sum is the same float
    # up to summation order.
    assert [ln for ln in lines1 if not ln.startswith("lat_sum")] == [
        ln for ln in lines2 if not ln.startswith("lat_sum")
    ]
    sum1 = float(next(ln for ln in lines1 if ln.startswith("lat_sum")).split()[1])
    sum2 = float(next(ln for ln in lines2 if ln.startswith("lat_sum")).split()[1])
    assert math.isclose(sum1, sum2, rel_tol=1e-9, abs_tol=1e-9)

    # ... and so is the _created series, but for its value (the moment each was made).
    def created(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode().splitlines()
        return [ln.rsplit(" ", 1)[0] for ln in text if "_created" in ln]

    assert created(one) == created(bulk)
    assert created(bulk)[-1] == "lat_created"


def test_bulk_histogram_ignores_empty_batches_and_refuses_unsorted_buckets() -> None:
    registry = CollectorRegistry()
    h = BulkHistogram("lat", "x", (0.1, 1.0), registry)
    h.observe_many([])
    h.observe(0.5)
    samples = {
        (s.name, s.labels.get("le")): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }
    assert samples[("lat_bucket", "0.1")] == 0
    assert samples[("lat_bucket", "1.0")] == 1
    assert samples[("lat_bucket", "+Inf")] == 1
    assert samples[("lat_count", None)] == 1
    try:
        BulkHistogram("bad", "x", (1.0, 0.1), CollectorRegistry())
    except ValueError as exc:
        assert "sorted" in str(exc)
    else:
        raise AssertionError("unsorted buckets accepted")


def test_worker_registry_has_process_and_gc_collectors() -> None:
    names = {
        f.name
        for f in text_string_to_metric_families(generate_latest(WorkerMetrics().registry).decode())
    }
    assert {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "python_gc_collections",
    } <= names
    assert "python_info" in names


def test_flags_are_counted_per_kind() -> None:
    m = WorkerMetrics()
    m.count_flags([("a",), (), ("a", "b")])
    text = generate_latest(m.registry).decode()
    assert 'stream_infer_scores_flagged_total{flag="a"} 2.0' in text
    assert 'stream_infer_scores_flagged_total{flag="b"} 1.0' in text


def test_serving_set_changes_survive_feasts_multiprocess_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Importing Feast sets PROMETHEUS_MULTIPROC_DIR for the whole process; prometheus-client
    # then warns on clear(), and warnings are errors here: a hot swap must not trip on it.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent")
    from stream_infer.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    metrics.set_serving([("champion", 1, "1.0.0")], 0, 1)
    metrics.set_serving([("champion", 2, "2.0.0")], 0, 2)
    value = metrics.registry.get_sample_value(
        "stream_infer_model_serving", {"version": "2", "role": "champion", "semver": "2.0.0"}
    )
    assert value == 1.0
    assert (
        metrics.registry.get_sample_value(
            "stream_infer_model_serving", {"version": "1", "role": "champion", "semver": "1.0.0"}
        )
        is None
    )
