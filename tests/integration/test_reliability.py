"""Faults on the real broker and a real Redis: a store outage mid-replay is ridden out with
parity intact; exactly-once survives SIGKILLs with no duplicate for a read_committed reader; a
rebalance mid-stream loses nothing."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pandas as pd
from confluent_kafka import Consumer, TopicPartition
from pydantic import SecretStr

from stream_infer.config import Settings
from stream_infer.features.definitions import CUSTOMER_FEATURES
from stream_infer.streamdef.training import training_frame

from .conftest import make_test_settings
from .fraud_events import fraud_defs
from .kafka_io import make_transactions, produce, read_topic, setup_topics
from .processes import WorkerProcess
from .redis_server import RedisServer
from .test_parity import (  # noqa: F401
    TOLERANCE,
    _run_replay,
    _settings,
    compare,
    dataset,
    training_set,
)


def _ids(messages: list) -> Counter[str]:
    return Counter(orjson.loads(m.value())["transaction_id"] for m in messages)


def _paced(settings: Settings, events: list[dict], per_second: int) -> threading.Thread:
    def run() -> None:
        step = max(1, per_second // 10)
        for i in range(0, len(events), step):
            started = time.monotonic()
            produce(settings, settings.topics.transactions, events[i : i + step])
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_redis_outage_mid_replay_is_survived_with_parity(
    dataset: pd.DataFrame,  # noqa: F811
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    model_registry: Path,
    own_redis: RedisServer,
) -> None:
    settings = _settings(base_settings, kafka_bootstrap, tmp_path, model_registry)
    redis = {"url": SecretStr(own_redis.url), "socket_timeout_s": 0.5, "connect_timeout_s": 0.5}
    settings = settings.model_copy(update={"redis": settings.redis.model_copy(update=redis)})
    setup_topics(settings)
    labels = WorkerProcess(settings, tmp_path / "labels.log", command="labels")
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    # Paced (~14 s for 6,914 events) so the stream still runs when the pause starts, on a
    # machine of any speed: unpaced, a fast worker can finish before the store is paused.
    sender = threading.Thread(target=_run_replay, args=(settings, dataset, 500.0), daemon=True)
    try:
        worker.wait_for("assigned [")
        sender.start()
        read_topic(settings, settings.topics.scores, lambda r: len(r) >= len(dataset) // 4)
        with own_redis.paused(10.0):
            worker.wait_for("feature store unavailable", timeout_s=30)
        sender.join(120)
        scores = read_topic(
            settings,
            settings.topics.scores,
            lambda r: len(_ids(r)) >= len(dataset),
            timeout_s=240,
        )
        assert worker.proc.poll() is None, "the worker died:\n" + worker.output()[-3000:]
        assert labels.proc.poll() is None, "labels died:\n" + labels.output()[-3000:]
        worker.wait_for("feature store answers again", timeout_s=5)
    finally:
        code = worker.terminate(timeout_s=120)
        labels.terminate()
    assert code == 0, worker.output()[-3000:]
    copies: dict[str, list[dict[str, float]]] = {}
    for m in scores:
        s = orjson.loads(m.value())
        copies.setdefault(s["transaction_id"], []).append(s["features"])
    assert all(v == vs[0] for vs in copies.values() for v in vs), "a copy's features differ"
    problems = compare({t: v[0] for t, v in copies.items()}, training_set(settings, dataset))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:40])


def _committed_total(settings: Settings, partitions: int = 3) -> int:
    """Input records the scoring group has committed (transactionally), over all partitions."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": settings.worker.group_id,
            "enable.auto.commit": False,
        }
    )
    try:
        tps = [TopicPartition(settings.topics.transactions, p) for p in range(partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
    finally:
        consumer.close()


def test_exactly_once_survives_two_sigkills_without_loss_or_duplicates(
    base_settings: Settings, apache_kafka: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = make_test_settings(
        base_settings,
        apache_kafka,
        tmp_path,
        model={"registry_dir": str(model_registry)},
        worker={
            "processing_guarantee": "exactly-once",
            # One replica restarted in place: static membership hands its partitions straight
            # back (no wait for the killed member's session to expire), and the same
            # transactional.id makes Kafka abort the killed instance's open transaction before
            # the successor's InitProducerId completes (KIP-98). input_isolation stays
            # read_committed, the default: the successor waits for those offsets to settle.
            "instance_id": "replica-0",
            "emit_features": True,
        },
    )
    setup_topics(settings)
    events = make_transactions(9_000, customers=200)
    sender = None
    workers: list[WorkerProcess] = []
    try:
        for n in range(2):
            worker = WorkerProcess(settings, tmp_path / f"w{n}.log")
            workers.append(worker)
            worker.wait_for("assigned [")
            if sender is None:
                sender = _paced(settings, events, per_second=1500)
            seen = len(read_topic(settings, settings.topics.scores, lambda r: True, timeout_s=2))
            read_topic(
                settings,
                settings.topics.scores,
                lambda r, seen=seen: len(r) >= seen + 1500,
                isolation="read_committed",
            )
            worker.proc.kill()  # SIGKILL mid-transaction: no drain, no commit, no abort
            worker.proc.wait(30)
        assert sender is not None
        sender.join(120)
        last = WorkerProcess(settings, tmp_path / "w-last.log")
        workers.append(last)
        # Every input offset committed: each transaction of the last worker is complete.
        deadline = time.monotonic() + 180
        while _committed_total(settings) < len(events) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _committed_total(settings) == len(events), last.output()[-3000:]
        scores = read_topic(
            settings,
            settings.topics.scores,
            lambda r: len(_ids(r)) >= len(events),
            timeout_s=30,
            idle_s=3.0,
            isolation="read_committed",
        )
        assert last.terminate(timeout_s=120) == 0, last.output()[-3000:]
    finally:
        for w in workers:
            w.kill()
    ids = _ids(scores)
    assert set(ids) <= {e["transaction_id"] for e in events}
    dupes = {t: n for t, n in ids.items() if n > 1}
    assert not dupes, f"{len(dupes)} duplicated for a read_committed reader, e.g. {list(dupes)[:5]}"
    # Aborted spans were processed again: each event's features are those of a clean run.
    frame = pd.DataFrame(events)
    frame["tx_datetime"] = pd.to_datetime(frame["tx_datetime"]).dt.tz_localize(None)
    want = training_frame(fraud_defs(), frame).set_index("transaction_id")
    for m in scores:
        s = orjson.loads(m.value())
        for name in CUSTOMER_FEATURES:
            expected = float(want.loc[s["transaction_id"], name])
            assert abs(s["features"][name] - expected) <= TOLERANCE, (s["transaction_id"], name)
    missing = {e["transaction_id"] for e in events} - set(ids)
    assert not missing, f"{len(missing)} scores lost, e.g. {sorted(missing)[:5]}"


def test_a_worker_joining_mid_stream_rebalances_and_loses_nothing(
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
    events = make_transactions(12_000, customers=300)
    first = WorkerProcess(settings, tmp_path / "w1.log")
    second = None
    try:
        first.wait_for("assigned [")
        sender = _paced(settings, events, per_second=2000)
        read_topic(settings, settings.topics.scores, lambda r: len(r) >= 2000)
        second = WorkerProcess(settings, tmp_path / "w2.log")  # revokes the first's partitions
        first.wait_for("revoked [", timeout_s=60)
        sender.join(120)
        scores = read_topic(
            settings, settings.topics.scores, lambda r: len(_ids(r)) >= len(events), timeout_s=120
        )
        assert first.proc.poll() is None and second.proc.poll() is None
    finally:
        codes = [first.terminate()] + ([second.terminate()] if second else [])
    assert codes == [0, 0]
    ids = _ids(scores)
    assert set(ids) == {e["transaction_id"] for e in events}, "scores were lost"
    # The revoked partitions were drained and committed: the new owner re-scores nothing.
    assert sum(ids.values()) == len(events), f"{sum(ids.values()) - len(events)} duplicates"
