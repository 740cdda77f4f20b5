"""The exporter's /status page in headless Chromium (Debian's ``chromium``): its DOM holds each
group's partition table with the lag the broker has, and screenshots are kept for a person to
look at: ``artifacts/status-ok.png`` (a worker scoring) and ``artifacts/status.png`` (the
worker stopped with events waiting: the 3 a.m. page)."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from stream_infer.config import Settings
from stream_infer.kafka.broker import free_port

from .conftest import REPO, make_test_settings
from .kafka_io import make_transactions, produce, read_topic, setup_topics
from .lag_io import Samples, current_statuses, exporter, get_text, poll, produce_timed, value
from .processes import WorkerProcess

ARTIFACTS = REPO / "artifacts"
WAITING = 23
AGE_S = 754  # 12 min 34 s


def chromium(url: str, tmp: Path, *mode: str) -> str:
    """Headless Chromium on ``url`` with ``mode`` (--screenshot=..., --dump-dom); stdout."""
    binary = shutil.which("chromium")
    assert binary is not None
    profile = tmp / f"chromium-profile-{time.monotonic_ns()}"
    done = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            *mode,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


class Tables(HTMLParser):
    """Every table of a page as rows of cell texts, each after the <h2> heading before it."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._heading = ""
        self._in_h2 = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h2":
            self._in_h2, self._heading = True, ""
        elif tag == "table":
            self.tables[self._heading] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._heading].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self._heading += data
        if self._cell is not None:
            self._cell.append(data)


def _tables(dom: str) -> dict[str, list[dict[str, str]]]:
    parser = Tables()
    parser.feed(dom)
    out = {}
    for heading, rows in parser.tables.items():
        head, *body = rows
        # A failed worker's row is one wide cell: zip stops short of the header.
        out[heading.strip()] = [dict(zip(head, r, strict=False)) for r in body]
    return out


def _paced(settings: Settings, stop: threading.Event) -> threading.Thread:
    """About 100 events a second until ``stop``: the worker has something to score."""

    def run() -> None:
        i = 0
        while not stop.is_set():
            batch = make_transactions(10, customers=40)
            for ev in batch:
                ev["transaction_id"] = f"paced-{i}"
                i += 1
            produce(settings, settings.topics.transactions, batch)
            stop.wait(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_status_page_renders_in_chromium(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("Debian's `chromium` is not installed (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
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
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    stop_paced = threading.Event()
    scrape = f"http://127.0.0.1:{worker_port}/metrics"
    try:
        worker.wait_for("assigned [")
        args = ("--interval", "1", "--scrape", scrape)
        with exporter(settings, tmp_path / "exporter.log", *args) as exp:
            page = f"{exp.base}/status"
            paced = _paced(settings, stop_paced)
            read_topic(settings, settings.topics.scores, lambda r: len(r) >= 200)
            poll(
                lambda: (
                    True if re.search(r"throughput <b>[1-9][\d,]* scores/s", _html(page)) else None
                ),
                what="the page to show the worker's throughput",
            )
            chromium(page, tmp_path, f"--screenshot={ARTIFACTS / 'status-ok.png'}")
            stop_paced.set()
            paced.join(30)
            poll(
                lambda: True if _sum_lag(exp.metrics(), group) == 0 else None,
                what="the worker to catch up with the paced events",
            )

            code = worker.terminate()
            assert code == 0, worker.output()[-3000:]
            produced = produce_timed(settings, WAITING, int((time.time() - AGE_S) * 1000), "w")

            def stopped() -> bool | None:
                m = exp.metrics()
                if m is None or value(m, "kafka_consumergroup_group_sum_lag", group=group) != (
                    WAITING
                ):
                    return None
                statuses = current_statuses(m, group)
                return True if all(statuses[p] == "STOP" for p in produced.oldest_ms) else None

            poll(stopped, what="the exporter to report STOP")
            # One more sample: the page's worker panel has seen the worker gone as well.
            poll(lambda: True if "Connection refused" in _html(page) else None, what="scrape")
            chromium(page, tmp_path, f"--screenshot={ARTIFACTS / 'status.png'}")
            dom = chromium(page, tmp_path, "--dump-dom")
    finally:
        stop_paced.set()
        worker.kill()
    assert (ARTIFACTS / "status.png").stat().st_size > 10_000
    tables = _tables(dom)
    rows = tables[f"{group} ERR"]
    assert [int(r["partition"]) for r in rows] == [0, 1, 2]
    for r in rows:
        p = int(r["partition"])
        assert int(r["lag"].replace(",", "")) == produced.counts.get(p, 0), r
        if p in produced.oldest_ms:
            assert r["status"] == "STOP", r
            assert AGE_S - WAITING <= _seconds(r["oldest waiting"]) <= AGE_S + 180, r
    labels = tables[f"{group}-labels NOTFOUND"]
    assert {r["lag"] for r in labels} == {"-"}
    assert "ERR" in dom and "not consuming" in dom
    workers = tables["Workers"]
    assert workers[0]["worker"] == scrape


def _html(url: str) -> str:
    return get_text(url) or ""


def _seconds(text: str) -> int:
    """``12 min 34 s`` -> 754."""
    found = re.fullmatch(r"(\d+) min (\d+) s", text)
    assert found is not None, text
    return int(found[1]) * 60 + int(found[2])


def _sum_lag(m: Samples | None, group: str) -> float | None:
    return None if m is None else value(m, "kafka_consumergroup_group_sum_lag", group=group)
