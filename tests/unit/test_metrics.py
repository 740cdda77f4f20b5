"""Bulk histogram observation matches per-value observation exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from stream_infer.metrics import LATENCY_BUCKETS, WorkerMetrics, observe_many


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_observe_many_equals_observe(values: list[float]) -> None:
    one, bulk = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("lat", "x", buckets=LATENCY_BUCKETS, registry=one)
    h2 = Histogram("lat", "x", buckets=LATENCY_BUCKETS, registry=bulk)
    for v in [*values, *LATENCY_BUCKETS]:  # bucket bounds themselves are the edge case
        h1.observe(v)
    observe_many(h2, [*values, *LATENCY_BUCKETS])
    lines1 = [ln for ln in generate_latest(one).decode().splitlines() if "_created" not in ln]
    lines2 = [ln for ln in generate_latest(bulk).decode().splitlines() if "_created" not in ln]
    bucket1 = [ln for ln in lines1 if "_bucket" in ln or "_count" in ln]
    bucket2 = [ln for ln in lines2 if "_bucket" in ln or "_count" in ln]
    assert bucket1 == bucket2
    sum1 = float(next(ln for ln in lines1 if ln.startswith("lat_sum")).split()[1])
    sum2 = float(next(ln for ln in lines2 if ln.startswith("lat_sum")).split()[1])
    assert abs(sum1 - sum2) <= 1e-9 * max(1.0, abs(sum1))


def test_flags_are_counted_per_kind() -> None:
    m = WorkerMetrics()
    m.count_flags([("a",), (), ("a", "b")])
    text = generate_latest(m.registry).decode()
    assert 'stream_infer_scores_flagged_total{flag="a"} 2.0' in text
    assert 'stream_infer_scores_flagged_total{flag="b"} 1.0' in text
