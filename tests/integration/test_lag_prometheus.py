"""A real Prometheus (Debian's ``prometheus``) scrapes a running worker and the lag exporter
every second; ``kafka_consumergroup_group_lag`` queried through its HTTP API gives the lag the
broker has: 0 per partition while the worker keeps up, then exactly the events produced
while it was stopped. ``promtool check metrics`` passes on the exporter's exposition."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from stream_infer.config import Settings
from stream_infer.kafka.broker import free_port

from .conftest import make_test_settings
from .kafka_io import make_transactions, produce, read_topic, setup_topics
from .lag_io import exporter, get_text, poll, produce_timed
from .processes import WorkerProcess

WARM = 40
WAITING = 17


@contextmanager
def prometheus(tmp: Path, targets: dict[str, str]) -> Iterator[str]:
    """Prometheus on a free loopback port scraping ``targets`` (job -> host:port) every 1 s;
    yields its base URL."""
    binary = shutil.which("prometheus")
    assert binary is not None
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        for job, target in targets.items()
    )
    config = tmp / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}"
    )
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool | None:
            if proc.poll() is not None:
                raise AssertionError((tmp / "prometheus.log").read_text()[-3000:])
            return True if get_text(f"{base}/-/ready") is not None else None

        poll(ready, timeout_s=60, what="prometheus to be ready")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        log.close()


def query(base: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant query: {sorted labels: value}."""
    text = get_text(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}")
    assert text is not None
    answer = orjson.loads(text)
    assert answer["status"] == "success", answer
    return {
        tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in answer["data"]["result"]
    }


def by_partition(result: dict[tuple[tuple[str, str], ...], float]) -> dict[int, float]:
    return {int(dict(labels)["partition"]): v for labels, v in result.items()}


def test_prometheus_scrapes_worker_and_exporter(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's `prometheus` binary is not installed (apt-get install prometheus)")
    worker_port = free_port()
    settings = make_test_settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model={"registry_dir": str(model_registry)},
        metrics={"enabled": True, "port": worker_port, "host": "127.0.0.1"},
    )
    setup_topics(settings)
    group = settings.worker.group_id
    lag_of = f'kafka_consumergroup_group_lag{{group="{group}"}}'
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_for("assigned [")
        with exporter(settings, tmp_path / "exporter.log", "--interval", "0.5") as exp:
            targets = {"worker": f"127.0.0.1:{worker_port}", "lag": f"127.0.0.1:{exp.port}"}
            with prometheus(tmp_path, targets) as prom:
                produce(settings, settings.topics.transactions, make_transactions(WARM))
                read_topic(settings, settings.topics.scores, lambda r: len(r) >= WARM)
                # The worker itself is scraped ...
                scored = 'stream_infer_events_scored_total{job="worker"}'
                poll(
                    lambda: True if sum(query(prom, scored).values()) == WARM else None,
                    what="prometheus to see the worker's scores",
                )
                # ... and the exporter: one series per partition, caught up.
                zero = {0: 0.0, 1: 0.0, 2: 0.0}
                poll(
                    lambda: True if by_partition(query(prom, lag_of)) == zero else None,
                    what="prometheus to see lag 0 on every partition",
                )

                code = worker.terminate()
                assert code == 0, worker.output()[-3000:]
                produced = produce_timed(settings, WAITING, int(time.time() * 1000) - 60_000, "w")
                want = {p: float(produced.counts.get(p, 0)) for p in range(3)}
                poll(
                    lambda: True if by_partition(query(prom, lag_of)) == want else None,
                    what=f"prometheus to see the lag {want}",
                )
                assert sum(want.values()) == WAITING
                series = query(prom, lag_of)
                for labels in series:
                    lbl = dict(labels)
                    assert lbl["cluster_name"] == "stream-infer"
                    assert lbl["job"] == "lag"
                    assert lbl["topic"] == settings.topics.transactions
                total = query(prom, f'kafka_consumergroup_group_sum_lag{{group="{group}"}}')
                assert list(total.values()) == [float(WAITING)]

            body = get_text(f"{exp.base}/metrics")
            assert body is not None and "kafka_consumergroup_group_lag{" in body
            promtool = shutil.which("promtool")
            assert promtool is not None, "promtool ships with Debian's prometheus package"
            check = subprocess.run(
                [promtool, "check", "metrics"],
                input=body,
                capture_output=True,
                text=True,
                check=False,
            )
            assert check.returncode == 0, check.stdout + check.stderr
    finally:
        worker.kill()
