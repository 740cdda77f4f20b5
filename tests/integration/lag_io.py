"""Test-side helpers for the lag tests: timed produce, the real `stream-infer lag` CLI and
exporter as child processes, /metrics parsing, polling."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from stream_infer.config import Settings
from stream_infer.kafka.broker import free_port
from stream_infer.process import child_env

from .kafka_io import make_transactions

T = TypeVar("T")
Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass(frozen=True)
class Produced:
    """Per partition: how many records went there and the oldest one's timestamp (ms)."""

    counts: dict[int, int]
    oldest_ms: dict[int, int]


def produce_timed(settings: Settings, n: int, first_ms: int, prefix: str) -> Produced:
    """Produce ``n`` transactions whose record timestamps are ``first_ms``, +1 s, +2 s, ..."""
    events = make_transactions(n, customers=max(3, n))
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 5})
    oldest: dict[int, int] = {}
    counts: dict[int, int] = {}
    errors: list[object] = []

    def delivered(err: object, msg: object, ts: int) -> None:
        if err is not None:
            errors.append(err)
            return
        p = msg.partition()  # type: ignore[attr-defined]
        oldest[p] = min(oldest.get(p, ts), ts)
        counts[p] = counts.get(p, 0) + 1

    for i, ev in enumerate(events):
        ev["transaction_id"] = f"{prefix}-{i}"
        ts = first_ms + 1000 * i
        producer.produce(
            settings.topics.transactions,
            orjson.dumps(ev),
            ev["customer_id"].encode(),
            timestamp=ts,
            on_delivery=lambda e, m, ts=ts: delivered(e, m, ts),
        )
    assert producer.flush(30) == 0
    assert not errors, errors
    return Produced(counts, oldest)


def run_lag(
    settings: Settings, *args: str, timeout_s: float = 120.0
) -> tuple[list[dict[str, Any]], float, float]:
    """``stream-infer lag --json ARGS`` as a real child process; returns its rows and the
    wall-clock times just before and after it ran."""
    before = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "stream_infer", "lag", "--json", *args],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    after = time.time()
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows: list[dict[str, Any]] = orjson.loads(proc.stdout)
    return rows, before, after


def poll(check: Callable[[], T | None], timeout_s: float = 90.0, what: str = "") -> T:
    """Call ``check`` until it returns something other than None."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.2)


def get_text(url: str, timeout_s: float = 5.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            text: str = resp.read().decode()
            return text
    except OSError:
        return None


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(m: Samples, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels`` (None if absent)."""
    found = [v for lbl, v in m.get(name, []) if all(lbl.get(k) == x for k, x in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def current_statuses(m: Samples, group: str) -> dict[int, str]:
    return {
        int(lbl["partition"]): lbl["status"]
        for lbl, v in m.get("stream_infer_consumergroup_status", [])
        if lbl["group"] == group and v == 1
    }


@dataclass
class Exporter:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> Samples | None:
        text = get_text(f"{self.base}/metrics")
        return None if text is None else samples(text)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def exporter(settings: Settings, log: Path, *args: str) -> Iterator[Exporter]:
    """``stream-infer lag serve --port <free> ARGS`` until the block ends (then SIGTERM)."""
    port = free_port()
    fh = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_infer", "lag", "serve", "--port", str(port), *args],
        env=child_env(settings),
        stdout=fh,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    exp = Exporter(proc, port, log)

    def ready() -> bool | None:
        if proc.poll() is not None:
            raise AssertionError(f"the exporter exited: {exp.output()[-3000:]}")
        return True if exp.metrics() is not None else None

    try:
        poll(ready, timeout_s=60, what="the exporter's /metrics")
        yield exp
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        fh.close()
