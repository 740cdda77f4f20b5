"""The label processor (faust) on a real broker: counts, watermark, final rows, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stream_infer.config import Settings
from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.state.daily_sqlite import SqliteDailyRows
from tests.unit.label_fixtures import FINAL_LAG, VIEW, counts_row

from .conftest import make_test_settings
from .kafka_io import produce, setup_topics
from .processes import settings_env

START = datetime(2026, 3, 1, tzinfo=UTC)


def make_labels(days: int, terminals: int = 40) -> list[dict[str, Any]]:
    out = []
    i = 0
    for d in range(days):
        for k in range(60):
            t = START + timedelta(days=d, seconds=k * 1400)
            terminal = (k * 7 + d) % terminals
            out.append(
                {
                    "transaction_id": f"tx-{i}",
                    "tx_datetime": t.isoformat(),
                    "terminal_id": str(terminal),
                    "tx_fraud": int((k + d) % 9 == 0),
                }
            )
            i += 1
    return out


def expected_rows(labels: list[dict[str, Any]]) -> dict[tuple[str, int], tuple[float, ...]]:
    daily: dict[str, dict[int, tuple[int, int]]] = {}
    for lab in labels:
        day = int(datetime.fromisoformat(lab["tx_datetime"]).timestamp()) // SECONDS_PER_DAY
        n, f = daily.setdefault(lab["terminal_id"], {}).get(day, (0, 0))
        daily[lab["terminal_id"]][day] = (n + 1, f + lab["tx_fraud"])
    last = max(d for per in daily.values() for d in per)
    final_day = (last - 1) + FINAL_LAG
    return {(t, final_day): counts_row(per, final_day) for t, per in daily.items()}


def start_labels(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "stream_infer", "labels"],
            env=settings_env(settings),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def wait_complete(
    state: SqliteDailyRows, day: int, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 90
    while (state.complete_through() or -1) < day:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"labels not complete through {day}: {log.read_text()[-3000:]}")
        time.sleep(0.1)


def test_labels_become_final_terminal_rows(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = make_test_settings(base_settings, kafka_bootstrap, tmp_path)
    setup_topics(settings)
    labels = make_labels(days=12)
    produce(settings, settings.topics.labels, labels, key_field="terminal_id")
    produce(settings, settings.topics.labels, [b"{broken"])
    state = SqliteDailyRows(settings.features.state_dir / "state.db")
    last_day = (int(START.timestamp()) // SECONDS_PER_DAY) + 11
    log = tmp_path / "labels.log"
    proc = start_labels(settings, log)
    try:
        wait_complete(state, last_day - 1, proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    want = expected_rows(labels)
    got = state.rows(VIEW, want.keys())
    assert set(got) == set(want)
    for key, row in want.items():
        assert got[key] == pytest.approx(row, abs=1e-12), key
    assert os.path.exists(settings.features.state_dir / "labels.db")
