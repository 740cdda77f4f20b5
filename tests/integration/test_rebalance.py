"""Rebalances on Apache Kafka: a second worker joins mid-stream and later leaves, under the
classic protocol with cooperative-sticky assignment, under KIP-848's consumer protocol
(``group.protocol=consumer``, the broker assigns), and with static membership
(``group.instance.id``). Every handoff drains and commits the revoked partitions first, so
nothing is lost and nothing is scored twice (as ``test_scale`` holds for a steady group)."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from stream_infer.config import Settings

from .conftest import make_test_settings
from .kafka_io import make_transactions, produce_paced, read_topic, setup_topics
from .processes import WorkerProcess

CASES = {
    "cooperative-sticky": {"assignment_strategy": "cooperative-sticky"},
    "kip-848 consumer protocol": {"group_protocol": "consumer"},
    "static membership": {"assignment_strategy": "cooperative-sticky", "instance_id": "w"},
}


def _ids(messages: list) -> Counter[str]:
    return Counter(orjson.loads(m.value())["transaction_id"] for m in messages)


def _consumed(worker: WorkerProcess) -> int:
    found = re.findall(r"consumed=(\d+)", worker.output())
    assert found, worker.output()[-3000:]
    return int(found[-1])


def _wait_for_partitions(worker: WorkerProcess, timeout_s: float = 90.0) -> None:
    """Until the worker logs an assignment naming partitions (a cooperative or KIP-848 join
    is first answered with an empty one)."""
    deadline = time.monotonic() + timeout_s
    while not re.search(r"assigned \[\d", worker.output()):
        assert worker.proc.poll() is None, worker.output()[-3000:]
        assert time.monotonic() < deadline, worker.output()[-3000:]
        time.sleep(0.1)


@pytest.mark.parametrize("case", list(CASES))
def test_a_worker_joins_and_leaves_mid_stream_losing_and_repeating_nothing(
    base_settings: Settings, apache_kafka: str, tmp_path: Path, model_registry: Path, case: str
) -> None:
    worker_settings = dict(CASES[case])
    static = worker_settings.pop("instance_id", None)
    settings = make_test_settings(
        base_settings,
        apache_kafka,
        tmp_path,
        partitions=6,
        model={"registry_dir": str(model_registry)},
        worker=worker_settings,
    )
    setup_topics(settings)

    def member(n: int) -> Settings:
        if static is None:
            return settings
        w = settings.worker.model_copy(update={"instance_id": f"{static}-{n}"})
        return settings.model_copy(update={"worker": w})

    events = make_transactions(15_000, customers=300)
    first = WorkerProcess(member(1), tmp_path / "w1.log")
    second = None
    try:
        first.wait_for("assigned [", timeout_s=120)
        sender = produce_paced(settings, events, per_second=1500)
        read_topic(settings, settings.topics.scores, lambda r: len(r) >= 2000)
        second = WorkerProcess(member(2), tmp_path / "w2.log")
        _wait_for_partitions(second)
        first.wait_for("revoked [", timeout_s=60)
        seen = len(read_topic(settings, settings.topics.scores, lambda r: True, timeout_s=2))
        read_topic(settings, settings.topics.scores, lambda r: len(r) >= seen + 2000)
        assert second.terminate(timeout_s=120) == 0, second.output()[-3000:]
        sender.join(120)
        scores = read_topic(
            settings, settings.topics.scores, lambda r: len(_ids(r)) >= len(events), timeout_s=180
        )
        assert first.proc.poll() is None, first.output()[-3000:]
    finally:
        code = first.terminate(timeout_s=120)
        if second is not None:
            second.kill()
    assert code == 0, first.output()[-3000:]
    ids = _ids(scores)
    assert set(ids) == {e["transaction_id"] for e in events}, "scores were lost"
    assert sum(ids.values()) == len(events), f"{sum(ids.values()) - len(events)} duplicates"
    # Both members scored: the join and the leave really moved partitions.
    assert _consumed(first) > 0 and _consumed(second) > 0
    assert _consumed(first) + _consumed(second) == len(events)
