"""Worker processes: SIGTERM mid-stream then restart loses nothing; two replicas share."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import orjson

from stream_infer.config import Settings

from .conftest import make_test_settings
from .kafka_io import make_transactions, produce, read_topic, setup_topics
from .processes import WorkerProcess


def _ids(messages: list) -> Counter[str]:
    return Counter(orjson.loads(m.value())["transaction_id"] for m in messages)


def _paced_produce(settings: Settings, events: list[dict], per_second: int) -> threading.Thread:
    def run() -> None:
        step = per_second // 10
        for i in range(0, len(events), step):
            started = time.monotonic()
            produce(settings, settings.topics.transactions, events[i : i + step])
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sigterm_mid_stream_then_restart_loses_nothing(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = make_test_settings(
        base_settings, kafka_bootstrap, tmp_path, model={"registry_dir": str(model_registry)}
    )
    setup_topics(settings)
    events = make_transactions(12_000)
    first = WorkerProcess(settings, tmp_path / "w1.log")
    try:
        first.wait_for("assigned")
        producer = _paced_produce(settings, events, per_second=1500)
        read_topic(settings, settings.topics.scores, lambda r: len(r) >= 1000)
        assert first.terminate() == 0  # stopped mid-stream: the producer is still going
        stopped_at = first.stats()["consumed"]
        assert 0 < stopped_at < len(events)
        producer.join(60)
    finally:
        first.kill()
    second = WorkerProcess(settings, tmp_path / "w2.log")
    try:
        scores = read_topic(
            settings, settings.topics.scores, lambda r: len(_ids(r)) >= len(events), timeout_s=90
        )
    finally:
        second.terminate()
    ids = _ids(scores)
    assert set(ids) == {e["transaction_id"] for e in events}, "scores were lost"
    # A graceful stop commits what it acknowledged, so nothing is even scored twice.
    assert sum(ids.values()) == len(events), f"{sum(ids.values()) - len(events)} duplicates"


def test_two_workers_split_partitions_and_score_everything_once(
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
    workers = [WorkerProcess(settings, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        for w in workers:
            w.wait_for("assigned [")
        # Wait until the group has settled with both members holding partitions.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = [
                [ln for ln in w.output().splitlines() if "assigned [" in ln][-1] for w in workers
            ]
            if all("assigned []" not in ln for ln in lines):
                break
            time.sleep(0.1)
        events = make_transactions(10_000, customers=500)
        produce(settings, settings.topics.transactions, events)
        scores = read_topic(
            settings, settings.topics.scores, lambda r: len(_ids(r)) >= len(events), timeout_s=90
        )
    finally:
        codes = [w.terminate() for w in workers]
    assert codes == [0, 0]
    ids = _ids(scores)
    assert set(ids) == {e["transaction_id"] for e in events}
    assert max(ids.values()) == 1
    consumed = [w.stats()["consumed"] for w in workers]
    assert all(c > 0 for c in consumed), consumed
    assert sum(consumed) == len(events)
