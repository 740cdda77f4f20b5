"""``stream-infer worker --processes 2``: two processes in one group score everything once and
stop together."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

from stream_infer.config import Settings
from stream_infer.process import child_env

from .conftest import make_test_settings
from .kafka_io import make_transactions, produce, read_topic, setup_topics


def test_two_processes_split_the_partitions_and_stop_together(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = make_test_settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        partitions=6,
        model={"registry_dir": str(model_registry)},
    )
    setup_topics(settings)
    log = tmp_path / "workers.log"
    with log.open("wb") as fh:
        parent = subprocess.Popen(
            [sys.executable, "-m", "stream_infer", "worker", "--processes", "2"],
            env=child_env(settings),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assigned = re.findall(r"assigned \[([0-9, ]+)\]", log.read_text(errors="replace"))
            if len(assigned) >= 2 and all(a.strip() for a in assigned[-2:]):
                break
            assert parent.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        events = make_transactions(6_000, customers=300)
        produce(settings, settings.topics.transactions, events)
        scores = read_topic(
            settings,
            settings.topics.scores,
            lambda r: len({orjson.loads(m.value())["transaction_id"] for m in r}) >= len(events),
            timeout_s=120,
        )
    finally:
        parent.send_signal(signal.SIGTERM)
        code = parent.wait(120)
    assert code == 0, log.read_text()[-3000:]
    ids = Counter(orjson.loads(m.value())["transaction_id"] for m in scores)
    assert set(ids) == {e["transaction_id"] for e in events} and max(ids.values()) == 1
    stats = re.findall(r"consumed=(\d+) scored=(\d+)", log.read_text())
    assert len(stats) == 2 and all(int(c) > 0 for c, _s in stats), stats
    assert sum(int(c) for c, _s in stats) == len(events)
