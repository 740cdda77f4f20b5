"""Worker figures parsed from a real WorkerMetrics exposition (prometheus_client.parser)."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest

from stream_infer.lag.scrape import figures, parse, quantile, total_rate
from stream_infer.metrics import WorkerMetrics


def _exposition(metrics: WorkerMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_parse_reads_scored_latency_psi_and_serving_set() -> None:
    m = WorkerMetrics()
    m.scored.inc(120)
    m.observe_latencies([0.004] * 99 + [0.2])
    m.psi.labels("3", "challenger").set(0.31)
    m.set_serving([("champion", 2, "1.0.0"), ("challenger", 3, "1.1.0")], 10, 7)
    m.rollbacks.inc()
    scrape = parse("http://w/metrics", _exposition(m), at=1.0)
    assert scrape.scored == 120
    assert scrape.rollbacks == 1
    assert scrape.psi == {("3", "challenger"): pytest.approx(0.31)}
    assert scrape.serving == (("challenger", "3", "1.1.0"), ("champion", "2", "1.0.0"))
    assert scrape.buckets[-1] == (math.inf, 100.0)


def test_quantile_interpolates_like_histogram_quantile() -> None:
    buckets = ((0.1, 50.0), (0.2, 100.0), (math.inf, 100.0))
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.75, buckets) == pytest.approx(0.15)
    assert quantile(0.99, ((0.1, 0.0), (math.inf, 10.0))) == pytest.approx(0.1)
    assert quantile(0.99, ((0.1, 0.0), (math.inf, 0.0))) is None


def test_figures_between_two_scrapes_give_rate_and_recent_p99() -> None:
    m = WorkerMetrics()
    m.scored.inc(1000)
    m.observe_latencies([5.0] * 1000)  # an old slow spell
    before = parse("u", _exposition(m), at=10.0)
    m.scored.inc(500)
    m.observe_latencies([0.003] * 500)
    now = parse("u", _exposition(m), at=12.0)
    f = figures(now, before)
    assert f.scored_per_s == pytest.approx(250.0)
    assert f.p99_s is not None and 0.0025 <= f.p99_s <= 0.005  # the old 5 s are not recent
    assert figures(now, None).scored_per_s is None  # one scrape: no rate yet
    assert total_rate([f, figures(now, None)]) == pytest.approx(250.0)


def test_a_restarted_worker_counts_from_zero() -> None:
    m = WorkerMetrics()
    m.scored.inc(1000)
    before = parse("u", _exposition(m), at=0.0)
    fresh = WorkerMetrics()
    fresh.scored.inc(30)
    f = figures(parse("u", _exposition(fresh), at=3.0), before)
    assert f.scored_per_s == pytest.approx(10.0)


def test_a_label_processor_scrape_gives_the_label_watermark() -> None:
    text = (
        "# HELP stream_infer_labels_watermark_seconds Event-time watermark\n"
        "# TYPE stream_infer_labels_watermark_seconds gauge\n"
        "stream_infer_labels_watermark_seconds 1.7e9\n"
    )
    assert figures(parse("u", text, at=0.0), None).label_watermark_s == 1.7e9
    unknown = text.replace("1.7e9", "NaN")
    assert parse("u", unknown, at=0.0).label_watermark_s is None
