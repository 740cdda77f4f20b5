"""Every process's /metrics, scraped from the real processes (a worker, a label processor and
a sidecar, each a `stream-infer` child on the real broker): `promtool check metrics` passes on
each, each binds the host it is given, the dashboard's, the alerts' and the autoscaler's
queries name only metrics these processes (or the lag exporter's contract) expose, and the
container probe reads readiness from them."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_infer.config import Settings
from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.kafka.broker import free_port
from tests.deploy_checks import (
    LAG_EXPORTER_METRICS,
    PROMETHEUS_SYNTHETIC,
    alert_queries,
    dashboard_queries,
    exposed_names,
    metric_names,
    promtool,
    scaled_object_queries,
)

from .conftest import make_test_settings
from .kafka_io import make_transactions, produce, setup_topics
from .processes import WorkerProcess

#: Not the default 127.0.0.1: a process that ignored its host setting would not answer here.
HOST = "127.0.0.2"
TRANSACTIONS = 300
MALFORMED = 2
LABEL_DAYS = 10
LABELS_PER_DAY = 30
LABEL_START = datetime(2026, 3, 1, tzinfo=UTC)


def make_labels() -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": f"tx-{d}-{k}",
            "tx_datetime": (LABEL_START + timedelta(days=d, seconds=k * 2800)).isoformat(),
            "terminal_id": str((k * 7 + d) % 40),
            "tx_fraud": int((k + d) % 9 == 0),
        }
        for d in range(LABEL_DAYS)
        for k in range(LABELS_PER_DAY)
    ]


def get(url: str, body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return s.value
    return None


def wait_until(what: str, child: WorkerProcess, check: Any, timeout_s: float = 120.0) -> Any:
    """Poll ``check()`` until it returns something truthy; fails with the child's log."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except (urllib.error.URLError, ConnectionError):
            result = None  # not listening yet
        if result:
            return result
        if child.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what}: not seen; child log:\n{child.output()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(
    base_settings: Settings,
    kafka_bootstrap: str,
    model_registry: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Settings, dict[str, str]]]:
    """The three processes after real traffic; yields the settings and each one's /metrics URL."""
    tmp = tmp_path_factory.mktemp("endpoints")
    settings = make_test_settings(
        base_settings,
        kafka_bootstrap,
        tmp,
        model={"registry_dir": str(model_registry)},
        metrics={"enabled": True, "host": HOST, "port": free_port()},
        labels={"metrics_port": free_port()},
        serve={"host": HOST, "port": free_port(), "grpc_port": free_port()},
    )
    setup_topics(settings)
    produce(settings, settings.topics.transactions, make_transactions(TRANSACTIONS))
    produce(settings, settings.topics.transactions, [b"{broken"] * MALFORMED)
    produce(settings, settings.topics.labels, make_labels(), key_field="terminal_id")
    urls = {
        "worker": f"http://{HOST}:{settings.metrics.port}/metrics",
        "labels": f"http://{HOST}:{settings.labels.metrics_port}/metrics",
        "sidecar": f"http://{HOST}:{settings.serve.port}/metrics",
    }
    children = {
        name: WorkerProcess(settings, tmp / f"{name}.log", command)
        for name, command in (("worker", "worker"), ("labels", "labels"), ("sidecar", "serve"))
    }
    try:
        worker, labels, sidecar = children["worker"], children["labels"], children["sidecar"]
        wait_until(
            "every event scored or dead-lettered",
            worker,
            lambda: (
                (text := get(urls["worker"])[1])
                and (sample(text, "stream_infer_events_scored_total") or 0) >= TRANSACTIONS
                and sample(text, "stream_infer_events_dead_lettered_total") == MALFORMED
            ),
        )
        wait_until(
            "every label counted and the watermark known",
            labels,
            lambda: (
                (text := get(urls["labels"])[1])
                and sample(text, "stream_infer_labels_counted_total") == LABEL_DAYS * LABELS_PER_DAY
                and not math.isnan(
                    sample(text, "stream_infer_labels_watermark_seconds") or math.nan
                )
            ),
        )
        base = f"http://{HOST}:{settings.serve.port}"
        wait_until("sidecar ready", sidecar, lambda: get(f"{base}/v2/health/ready")[0] == 200)
        for tx in make_transactions(5, start=datetime(2026, 5, 1, tzinfo=UTC)):
            body = orjson.dumps({"request_id": tx["transaction_id"], "inputs": tx})
            status, text = get(f"{base}/v1/models/fraud/predict", body)
            assert status == 200, text
        yield settings, urls
    finally:
        for child in children.values():
            child.terminate(timeout_s=60)


@pytest.fixture(scope="module")
def scraped(stack: tuple[Settings, dict[str, str]]) -> dict[str, str]:
    out = {}
    for name, url in stack[1].items():
        status, text = get(url)
        assert status == 200, (name, text)
        out[name] = text
    return out


@pytest.mark.parametrize("process", ["worker", "labels", "sidecar"])
def test_promtool_check_metrics_passes(scraped: dict[str, str], process: str) -> None:
    text = scraped[process]
    assert "process_cpu_seconds_total" in text and "python_gc_collections_total" in text
    assert promtool("check", "metrics", stdin=text).strip() == ""


@pytest.mark.parametrize("process", ["worker", "labels", "sidecar"])
def test_each_process_binds_the_host_it_is_given(
    stack: tuple[Settings, dict[str, str]], process: str
) -> None:
    url = stack[1][process]
    assert get(url)[0] == 200
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url.replace(HOST, "127.0.0.1"), timeout=5)


def test_every_query_names_an_exposed_metric(scraped: dict[str, str]) -> None:
    exposed = set(LAG_EXPORTER_METRICS | PROMETHEUS_SYNTHETIC)
    for text in scraped.values():
        exposed |= exposed_names(text)
    queries = dashboard_queries() + alert_queries() + scaled_object_queries()
    missing = {
        where: sorted(metric_names(expr) - exposed)
        for where, expr in queries
        if metric_names(expr) - exposed
    }
    assert not missing, missing
    # The check has teeth: a renamed metric is caught.
    assert metric_names("rate(stream_infer_events_scored[5m])") - exposed


def test_label_processor_reports_counts_rows_and_watermark(scraped: dict[str, str]) -> None:
    text = scraped["labels"]
    assert sample(text, "stream_infer_labels_counted_total") == LABEL_DAYS * LABELS_PER_DAY
    assert sample(text, "stream_infer_labels_dead_lettered_total") == 0
    assert (
        sample(text, "stream_infer_labels_rows_published_total", sink="terminal_store") or 0
    ) > 0
    assert sample(text, "stream_infer_labels_store_down") == 0
    # Every partition has shown the last day: complete through the day before it.
    last_day = int(LABEL_START.timestamp()) // SECONDS_PER_DAY + LABEL_DAYS - 1
    assert sample(text, "stream_infer_labels_watermark_seconds") == last_day * SECONDS_PER_DAY
    delay = sample(text, "stream_infer_labels_watermark_delay_seconds")
    assert delay is not None and delay > 0


def test_worker_and_sidecar_report_their_serving_set(scraped: dict[str, str]) -> None:
    for process in ("worker", "sidecar"):
        text = scraped[process]
        assert sample(text, "stream_infer_model_serving", role="champion") == 1, process
        assert sample(text, "stream_infer_canary_percent") == 0, process
    worker = scraped["worker"]
    assert sample(worker, "stream_infer_ready") == 1
    assert sample(worker, "stream_infer_end_to_end_seconds_count") == TRANSACTIONS
    assert (
        sample(scraped["sidecar"], "stream_infer_http_requests_total", api="v1", status="200") == 5
    )


def _probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_infer.healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_container_probe_reads_readiness(stack: tuple[Settings, dict[str, str]]) -> None:
    settings, urls = stack
    assert _probe(urls["worker"], "--gauge", "stream_infer_ready").returncode == 0
    not_one = _probe(urls["worker"], "--gauge", "stream_infer_store_down")
    assert not_one.returncode == 1 and "not 1" in not_one.stderr
    absent = _probe(urls["worker"], "--gauge", "no_such_gauge")
    assert absent.returncode == 1 and "no no_such_gauge sample" in absent.stderr
    assert _probe(f"http://{HOST}:{settings.serve.port}/v2/health/ready").returncode == 0
    refused = _probe(urls["labels"].replace(HOST, "127.0.0.1"))
    assert refused.returncode == 1 and "unhealthy" in refused.stderr
