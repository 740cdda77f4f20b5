"""loadgen measure on a real broker: synthetic scores with a duplicate, a gap and stale records."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson
from click.testing import CliRunner
from confluent_kafka import Producer

from loadgen.cli import cli
from loadgen.measure import MeasureOptions, measure
from stream_infer.config import Settings
from stream_infer.events import INTENDED_SEND_HEADER

from .conftest import make_test_settings
from .kafka_io import setup_topics

N = 200
MISSING = 42
DUPLICATE = 7
NO_HEADER = {11, 12, 13}


def _fill_scores(settings: Settings, since_ns: int) -> None:
    """Scores for 0..N-1 except MISSING, DUPLICATE twice, NO_HEADER without the header, plus
    three stale ones (intended before ``since_ns``) from an "earlier run"."""
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 5})
    errors: list[object] = []

    def send(tid: int, intended_ns: int | None) -> None:
        value = orjson.dumps(
            {"transaction_id": str(tid), "scored_at": "2026-01-01T00:00:00Z", "latency_ms": 2.5}
        )
        headers = (
            None if intended_ns is None else [(INTENDED_SEND_HEADER, str(intended_ns).encode())]
        )
        producer.produce(
            settings.topics.scores,
            value,
            str(tid % 13).encode(),
            headers=headers,
            on_delivery=lambda err, _m: err and errors.append(err),
        )

    for tid in range(3):
        send(tid, since_ns - 60 * 1_000_000_000)
    for tid in range(N):
        if tid == MISSING:
            continue
        send(tid, None if tid in NO_HEADER else time.time_ns())
        if tid == DUPLICATE:
            send(tid, time.time_ns())
    assert producer.flush(30) == 0 and not errors


def test_measure_reports_missing_duplicated_and_fallbacks(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = make_test_settings(base_settings, kafka_bootstrap, tmp_path)
    setup_topics(settings)
    since = time.time_ns()
    _fill_scores(settings, since)

    started = time.monotonic()
    result = measure(
        settings.kafka.client_config(),
        MeasureOptions(
            settings.topics.scores, idle_timeout_s=2.0, max_wait_s=60, since_wall_ns=since
        ),
        np.arange(N, dtype=np.int64),
    )
    assert time.monotonic() - started < 30
    acc = result.accounting
    assert acc is not None
    assert (acc.sent, acc.scored, acc.missing, acc.duplicated) == (N, N - 1, 1, 1)
    assert acc.missing_sample == (MISSING,) and acc.duplicated_sample == (DUPLICATE,)
    assert acc.unexpected == 0 and acc.duplicate_records == 1
    assert result.skipped_old == 3 and result.header_fallbacks == len(NO_HEADER)
    assert result.stopped_by == "idle" and len(result.transaction_id) == N
    assert (result.latency_ms >= 0).all() and (result.latency_ms < 60_000).all()
    assert result.summary()["service_latency_ms"]["p50"] == 2.5


def test_measure_stops_as_soon_as_everything_is_scored_and_the_cli_writes_reports(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = make_test_settings(base_settings, kafka_bootstrap, tmp_path)
    setup_topics(settings)
    since = time.time_ns()
    _fill_scores(settings, since)
    expected = np.array([i for i in range(N) if i != MISSING], dtype=np.int64)
    ids = tmp_path / "sent.npy"
    np.save(ids, expected)

    started = time.monotonic()
    out = tmp_path / "reports"
    cli_result = CliRunner().invoke(
        cli,
        [
            "measure",
            "--bootstrap", kafka_bootstrap,
            "--scores-topic", settings.topics.scores,
            "--sent-ids", str(ids),
            "--since", str(since / 1e9),
            "--idle-timeout", "30",
            "--out-dir", str(out),
        ],
    )  # fmt: skip
    assert cli_result.exit_code == 0, cli_result.output
    assert time.monotonic() - started < 25  # complete, not the 30 s idle timeout
    assert "missing=0 duplicated=1" in cli_result.output
    (report_path,) = out.glob("report-*.json")
    report = orjson.loads(report_path.read_bytes())
    assert report["stopped_by"] == "complete"
    assert report["accounting"]["scored"] == N - 1 and report["accounting"][
        "duplicated_sample"
    ] == [str(DUPLICATE)]
    assert report["latency_ms"]["count"] == N and report["latency_ms"]["p99"] is not None
    (chart,) = out.glob("latency-*.png")
    assert chart.read_bytes()[:4] == b"\x89PNG"
