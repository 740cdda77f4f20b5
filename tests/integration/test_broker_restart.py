"""An Apache Kafka restart mid-stream (it keeps its data; Tansu would not): nothing is lost."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import orjson

from stream_infer.config import Settings
from stream_infer.kafka.apache import ApacheKafka

from .conftest import make_test_settings
from .kafka_io import make_transactions, produce, read_topic, setup_topics
from .processes import WorkerProcess


def test_worker_survives_a_broker_restart_and_loses_nothing(
    base_settings: Settings, apache_node: ApacheKafka, tmp_path: Path, model_registry: Path
) -> None:
    settings = make_test_settings(
        base_settings,
        apache_node.bootstrap,
        tmp_path,
        model={"registry_dir": str(model_registry)},
    )
    setup_topics(settings)
    events = make_transactions(6000)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_for("assigned [")
        produce(settings, settings.topics.transactions, events[:3000])
        read_topic(settings, settings.topics.scores, lambda r: len(r) >= 1000)
        apache_node.restart()
        sender = threading.Thread(
            target=produce, args=(settings, settings.topics.transactions, events[3000:])
        )
        sender.start()
        sender.join(120)
        scores = read_topic(
            settings,
            settings.topics.scores,
            lambda r: len({orjson.loads(m.value())["transaction_id"] for m in r}) >= len(events),
            timeout_s=180,
        )
        assert worker.proc.poll() is None, worker.output()[-2000:]
    finally:
        worker.terminate(timeout_s=120)
    ids = Counter(orjson.loads(m.value())["transaction_id"] for m in scores)
    # Duplicates are allowed (at-least-once); losses are not.
    assert set(ids) == {e["transaction_id"] for e in events}
