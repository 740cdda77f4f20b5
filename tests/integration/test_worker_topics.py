"""The worker's start-up check on Apache Kafka (which, like production, never auto-creates a
topic): a missing dead-letter topic or an output that breaks co-partitioning ends the worker
at once with a message naming the topic; with every topic in place it starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from stream_infer.config import Settings

from .conftest import make_test_settings
from .kafka_io import setup_topics
from .processes import WorkerProcess


def _create(settings: Settings, counts: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    futures = admin.create_topics([NewTopic(n, p, 1) for n, p in counts.items()])
    for future in futures.values():
        future.result(30)


@pytest.mark.parametrize("broken", ["missing dead letters", "scores with 2 partitions"])
def test_the_worker_refuses_topics_it_cannot_use_naming_them(
    base_settings: Settings, apache_kafka: str, tmp_path: Path, model_registry: Path, broken: str
) -> None:
    settings = make_test_settings(
        base_settings, apache_kafka, tmp_path, model={"registry_dir": str(model_registry)}
    )
    t = settings.topics
    counts = {t.transactions: 3, t.scores: 3, t.scores_shadow: 3, t.dead_letter: 1}
    if broken == "missing dead letters":
        del counts[t.dead_letter]
        named = f"topic '{t.dead_letter}' does not exist"
    else:
        counts[t.scores] = 2
        named = f"topic '{t.scores}' has 2 partitions but the input '{t.transactions}' has 3"
    _create(settings, counts)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        code = worker.proc.wait(120)
    finally:
        worker.kill()
    assert code != 0
    assert named in worker.output(), worker.output()[-3000:]
    # Nothing was auto-created behind the worker's back.
    listed = AdminClient({"bootstrap.servers": apache_kafka}).list_topics(timeout=10).topics
    assert set(counts) <= set(listed)
    assert broken != "missing dead letters" or t.dead_letter not in listed


def test_the_worker_starts_when_its_topics_are_in_place(
    base_settings: Settings, apache_kafka: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = make_test_settings(
        base_settings, apache_kafka, tmp_path, model={"registry_dir": str(model_registry)}
    )
    setup_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_for("assigned [", timeout_s=120)
    finally:
        code = worker.terminate()
    assert code == 0, worker.output()[-3000:]
