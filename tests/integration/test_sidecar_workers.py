"""``stream-infer serve --workers 2``: two processes behind one port, each of which answers on
its own, with the same scores; they stop together (SIGTERM to the parent), and one that dies
takes the other down with it (the parent exits non-zero)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from stream_infer.config import Settings
from stream_infer.kafka.broker import free_port
from stream_infer.process import ChildProcess

from .conftest import make_test_settings
from .kafka_io import make_transactions
from .test_sidecar import predict_body

PREDICT = "/v1/models/fraud/predict"
WORKERS = 2


@pytest.fixture
def settings(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> Settings:
    return make_test_settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model={"registry_dir": str(model_registry)},
        serve={"grpc_port": 0},
    )


def workers_of(parent: int) -> list[psutil.Process]:
    """The parent's sidecar workers (multiprocessing's spawned children, not its helpers)."""
    return [
        c
        for c in psutil.Process(parent).children()
        if "spawn_main" in " ".join(c.cmdline()) and "resource_tracker" not in " ".join(c.cmdline())
    ]


@contextmanager
def two_workers(settings: Settings, log: Path) -> Iterator[tuple[ChildProcess, str]]:
    port = free_port()
    child = ChildProcess(settings, log, "serve", ["--port", str(port), "--workers", str(WORKERS)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while len(workers_of(child.proc.pid)) < WORKERS:
            assert child.proc.poll() is None, child.output()[-2000:]
            assert time.monotonic() < deadline, child.output()[-2000:]
            time.sleep(0.05)
        yield child, url
    finally:
        child.terminate()


def answers_alone(
    url: str, worker: psutil.Process, others: list[psutil.Process], body: dict
) -> float:
    """The score ``worker`` answers while every other worker is stopped (SIGSTOP), on fresh
    connections (which only a running worker can accept)."""
    for other in others:
        other.suspend()
    try:
        deadline = time.monotonic() + 60
        while True:  # this worker may still be loading its model
            try:
                ready = httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
            except httpx.TransportError:
                ready = False
            if ready:
                break
            assert time.monotonic() < deadline, f"worker {worker.pid} never ready"
            time.sleep(0.1)
        scores = {
            httpx.post(f"{url}{PREDICT}", json=body, timeout=10).json()["predictions"][
                "fraud_probability"
            ]
            for _ in range(3)
        }
        assert len(scores) == 1
        return scores.pop()
    finally:
        for other in others:
            other.resume()


def test_each_worker_answers_and_they_stop_together(settings: Settings, tmp_path: Path) -> None:
    body = predict_body(make_transactions(1)[0])
    with two_workers(settings, tmp_path / "serve.log") as (child, url):
        workers = workers_of(child.proc.pid)
        scores = [
            answers_alone(url, w, [o for o in workers if o.pid != w.pid], body) for w in workers
        ]
        assert len(set(scores)) == 1, scores  # the same model and features in each
        assert child.terminate() == 0
        _gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, [p.pid for p in alive]
    assert "with 2 workers" in child.output()


def test_a_worker_that_dies_takes_the_others_down(settings: Settings, tmp_path: Path) -> None:
    with two_workers(settings, tmp_path / "serve.log") as (child, _url):
        first, *rest = workers_of(child.proc.pid)
        os.kill(first.pid, signal.SIGKILL)
        assert child.proc.wait(60) == 1
        _gone, alive = psutil.wait_procs(rest, timeout=30)
        assert not alive, [p.pid for p in alive]
    assert "a sidecar worker exited" in child.output()
