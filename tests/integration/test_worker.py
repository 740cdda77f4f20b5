"""The scoring worker on a real broker: every event scored once, bad ones dead-lettered."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson

from stream_infer.config import Settings
from stream_infer.events import Score
from stream_infer.kafka.broker import free_port
from stream_infer.runtime import build_worker

from .conftest import make_test_settings
from .kafka_io import make_transactions, produce, read_topic, setup_topics


def _settings(base: Settings, bootstrap: str, tmp: Path, registry: Path, **kw: object) -> Settings:
    return make_test_settings(base, bootstrap, tmp, model={"registry_dir": str(registry)}, **kw)


def test_n_valid_events_give_exactly_n_scores(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    port = free_port()
    settings = _settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model_registry,
        metrics={"enabled": True, "port": port},
    )
    setup_topics(settings)
    events = make_transactions(3000)
    produce(settings, settings.topics.transactions, events)

    worker = build_worker(settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    scores = read_topic(settings, settings.topics.scores, lambda r: len(r) >= 3000, idle_s=1.0)
    # The on-call view: counters, the model, and lag per partition from librdkafka statistics.
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        if (
            "stream_infer_consumer_lag{" in text
            and "stream_infer_events_scored_total 3000.0" in text
        ):
            break
        time.sleep(0.2)
    assert "stream_infer_events_scored_total 3000.0" in text
    assert (
        'stream_infer_model_info{name="fraud",provider="CPUExecutionProvider",version="1"}' in text
    )
    assert (
        f'stream_infer_consumer_lag{{partition="0",topic="{settings.topics.transactions}"}} 0.0'
        in text
    )
    assert "stream_infer_end_to_end_seconds_count 3000.0" in text
    worker.stop()
    thread.join(30)
    assert not thread.is_alive()

    ids = Counter(orjson.loads(m.value())["transaction_id"] for m in scores)
    assert set(ids) == {e["transaction_id"] for e in events}
    assert max(ids.values()) == 1
    score = Score.model_validate_json(scores[0].value())
    assert 0.0 <= score.score <= 1.0
    assert score.model_name == "fraud" and score.model_version == 1
    # Co-partitioning: a score lands on its transaction's partition, keyed by customer.
    by_id = {orjson.loads(m.value())["transaction_id"]: m for m in scores}
    inputs = read_topic(settings, settings.topics.transactions, lambda r: len(r) >= 3000)
    for msg in inputs[:200]:
        out = by_id[orjson.loads(msg.value())["transaction_id"]]
        assert (out.partition(), out.key()) == (msg.partition(), msg.key())
    assert worker.stats.scored == 3000


def test_invalid_events_are_dead_lettered_and_worker_keeps_going(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = _settings(base_settings, kafka_bootstrap, tmp_path, model_registry)
    setup_topics(settings)
    good = make_transactions(200)
    bad: list[dict | bytes] = [
        b"not json at all",
        b"",
        {"transaction_id": "x1", "customer_id": "1"},
        {**good[0], "transaction_id": "neg", "tx_amount": -5},
        {**good[0], "transaction_id": "date", "tx_datetime": "yesterday"},
    ]
    produce(settings, settings.topics.transactions, [*good[:100], *bad, *good[100:]])

    worker = build_worker(settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    scores = read_topic(settings, settings.topics.scores, lambda r: len(r) >= 200, idle_s=0.5)
    dlq = read_topic(settings, settings.topics.dead_letter, lambda r: len(r) >= 5)
    assert thread.is_alive()
    worker.stop()
    thread.join(30)

    assert len(scores) == 200
    letters = [orjson.loads(m.value()) for m in dlq]
    assert len(letters) == 5
    reasons = " | ".join(letter["reason"] for letter in letters)
    assert "not valid JSON" in reasons
    assert "empty message value" in reasons
    assert "tx_amount" in reasons and "tx_datetime" in reasons and "terminal_id" in reasons
    for letter in letters:
        assert letter["source_topic"] == settings.topics.transactions
        assert letter["source_offset"] >= 0
        assert "original" in letter
