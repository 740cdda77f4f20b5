"""The worker loop under faults: no offset is ever stored at or past a batch whose output or
state failed, on any path (running, shutdown, revoke, lost); refused records are dead-lettered;
a store outage pauses and resumes; a failing model stops the worker. Fault-injecting fakes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson
import pytest

from stream_infer.config import load_settings
from stream_infer.errors import DeliveryError, ModelError, StateWriteError, StoreUnavailableError
from stream_infer.features.compiled import FeatureComputer
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.kafka.transactions import Transactions
from stream_infer.model.registry import ModelRegistry
from stream_infer.model.session import load_model
from stream_infer.model.verdict import ScoreRule
from stream_infer.pipeline import ScoringPipeline
from stream_infer.state.entity_rows import EntityWriteSet, StoredEntry
from stream_infer.worker import ScoringWorker

from .fakes import TP, FakeConsumer, FakeKafkaError, FakeProducer, FakeRecord
from .fraud_defs import fraud_defs

TOO_LARGE = FakeKafkaError(10, "MSG_SIZE_TOO_LARGE")
TIMED_OUT = FakeKafkaError(-192, "_MSG_TIMED_OUT")


def rec(offset: int, partition: int = 0, value: bytes | None = None) -> FakeRecord:
    payload = (
        value
        if value is not None
        else orjson.dumps(
            {
                "transaction_id": f"t{partition}-{offset}",
                "tx_datetime": "2026-04-10T10:00:00",
                "customer_id": f"c{offset % 3}",
                "terminal_id": "T",
                "tx_amount": 1.0 + offset,
            }
        )
    )
    return FakeRecord(payload, _partition=partition, _offset=offset)


class FlakyStore:
    """An entity store whose calls fail while ``failures[op]`` > 0 (then answer)."""

    def __init__(self, load_failures: int = 0, save_failures: int = 0, fatal_save: bool = False):
        self.failures = {"load": load_failures, "save": save_failures}
        self.fatal_save = fatal_save
        self.saved: dict[str, list[Any]] = {}
        self.calls = {"load": 0, "save": 0}

    def _maybe_fail(self, op: str) -> None:
        self.calls[op] += 1
        if self.failures[op] > 0:
            self.failures[op] -= 1
            if op == "save" and self.fatal_save:
                raise RuntimeError("disk on fire")
            raise StoreUnavailableError(f"{op}: connection refused")

    def load(self, customer_ids: Iterable[str]) -> dict[str, list[Any]]:
        self._maybe_fail("load")
        return {cid: list(self.saved.get(cid, [])) for cid in customer_ids}

    def save(self, writes: EntityWriteSet) -> None:
        self._maybe_fail("save")
        a = writes.added
        for key, event_id, t, s, data in a.json_rows():
            self.saved.setdefault(key, []).append(StoredEntry(event_id, t, s, data))

    def first_day(self) -> int | None:
        return None

    def record_first_day(self, day: int) -> None:
        return None


def make_worker(
    registry: ModelRegistry,
    consumer: FakeConsumer,
    producer: FakeProducer,
    store: Any = None,
    exactly_once: bool = False,
) -> ScoringWorker:
    settings = load_settings(
        worker={
            "max_in_flight_batches": 8,
            "drain_timeout_s": 1.0,
            "pause_after_s": 0,
            "store_retry_initial_s": 0.001,
            "store_retry_max_s": 0.01,
            "transaction_interval_ms": 1e6,
        },
        metrics={"enabled": False},
    )
    model = load_model(registry, "fraud", FEATURE_NAMES)
    features = FeatureComputer(fraud_defs(), store=store, write_behind=store is not None)
    txn = Transactions(producer, consumer, TP, interval_s=1e3) if exactly_once else None
    return ScoringWorker(
        settings,
        ScoringPipeline(model, features),
        consumer,
        producer,
        topic_partition=TP,
        transactions=txn,
    )


def sample(worker: ScoringWorker, name: str, **labels: str) -> float | None:
    return worker.metrics.registry.get_sample_value(name, labels)


def scored_ids(producer: FakeProducer, topic: str = "scores") -> list[str]:
    return [orjson.loads(v)["transaction_id"] for t, v, _k, _kw in producer.produced if t == topic]


def test_failed_batch_then_good_batch_commits_nothing_at_or_past_it(
    registry: ModelRegistry,
) -> None:
    # batch 0 ok, batch 1's delivery fails (the cluster, not the record), batch 2 ok.
    consumer = FakeConsumer([[rec(0)], [rec(1)], [rec(2)]])
    producer = FakeProducer(
        auto_ack=False, fail_values=lambda _t, v: b'"t0-1"' in v, fail_error=TIMED_OUT
    )
    worker = make_worker(registry, consumer, producer)
    for _ in range(3):
        worker._handle(consumer.consume(10, 0))
    producer.deliver()  # batch 2 is acknowledged after batch 1 failed
    worker._service()
    worker._shutdown()  # drains and commits: what a SIGTERM after the failure does
    assert isinstance(worker.error, DeliveryError) and "_MSG_TIMED_OUT" in str(worker.error)
    assert consumer.stored_offsets() == [(0, 1)]  # batch 0 only: never 2 or 3
    assert consumer.commits == 1 and consumer.closed


def test_shutdown_after_a_failed_state_write_never_stores_later_batches(
    registry: ModelRegistry,
) -> None:
    # Today's bug: the failed batch was popped, later acknowledged batches were stored and
    # committed on shutdown. Batch 1's state write fails for good; batch 2 succeeds.
    store = FlakyStore()
    consumer = FakeConsumer([[rec(0)], [rec(1)], [rec(2)]])
    producer = FakeProducer()
    worker = make_worker(registry, consumer, producer, store=store)
    worker._handle(consumer.consume(10, 0))
    worker._drain(1.0)
    store.failures["save"], store.fatal_save = 1, True
    worker._handle(consumer.consume(10, 0))
    worker._handle(consumer.consume(10, 0))
    worker._drain(1.0)
    worker._shutdown()
    assert isinstance(worker.error, StateWriteError)
    assert consumer.stored_offsets() == [(0, 1)]
    assert consumer.closed


def test_run_raises_the_first_failure_after_storing_only_what_precedes_it(
    registry: ModelRegistry,
) -> None:
    consumer = FakeConsumer([[rec(0)], [rec(1)], [rec(2)], [rec(3)]])
    producer = FakeProducer(fail_values=lambda _t, v: b'"t0-2"' in v, fail_error=TIMED_OUT)
    worker = make_worker(registry, consumer, producer)
    with pytest.raises(DeliveryError):
        worker.run(max_events=100)
    offsets = consumer.stored_offsets()
    assert offsets and max(o for _p, o in offsets) <= 2, offsets


def test_a_score_kafka_refuses_as_too_large_is_dead_lettered(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(0), rec(1), rec(2)]])
    producer = FakeProducer(
        fail_values=lambda t, v: t == "scores" and b'"t0-1"' in v, fail_error=TOO_LARGE
    )
    worker = make_worker(registry, consumer, producer)
    stats = worker.run(max_events=3)
    assert worker.error is None
    letters = [orjson.loads(v) for t, v, _k, _kw in producer.produced if t == "transactions-dlq"]
    assert len(letters) == 1
    assert "produce refused" in letters[0]["reason"] and letters[0]["source_offset"] == 1
    assert consumer.stored_offsets() == [(0, 3)]  # stored once the dead letter was acked
    assert (stats.scored, stats.dead_lettered) == (2, 1)


def test_a_record_produce_refuses_at_once_is_dead_lettered(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(0), rec(1)]])
    producer = FakeProducer(refuse=lambda t, v: t == "scores" and b'"t0-0"' in v)
    worker = make_worker(registry, consumer, producer)
    worker.run(max_events=2)
    assert worker.error is None
    assert scored_ids(producer) == ["t0-1"]
    assert producer.topics().count("transactions-dlq") == 1
    assert consumer.stored_offsets() == [(0, 2)]


def test_a_refused_dead_letter_stops_the_worker_without_storing(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(0), rec(1, value=b"not json")]])
    producer = FakeProducer(fail_topic="transactions-dlq", fail_error=TOO_LARGE)
    worker = make_worker(registry, consumer, producer)
    with pytest.raises(DeliveryError, match="transactions-dlq"):
        worker.run(max_events=10)
    assert consumer.stored == []


def test_revoke_whose_drain_times_out_never_stores_the_revoked_partition(
    registry: ModelRegistry,
) -> None:
    consumer = FakeConsumer([[rec(0, partition=1)]])
    producer = FakeProducer(auto_ack=False)
    worker = make_worker(registry, consumer, producer)
    worker.settings = worker.settings.model_copy(
        update={"worker": worker.settings.worker.model_copy(update={"drain_timeout_s": 0.05})}
    )
    producer.flush = lambda _timeout: len(producer.pending)  # type: ignore[method-assign]
    worker._handle(consumer.consume(10, 0))
    worker._on_revoke(consumer, [TP("transactions", 1)])
    assert consumer.commits == 1
    producer.deliver()  # the ack arrives after the partition went to another worker
    worker._service()
    assert consumer.stored == [] and len(worker.ledger) == 0


def test_lost_partitions_are_never_stored_or_committed(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(0, partition=0), rec(0, partition=1)]])
    producer = FakeProducer(auto_ack=False)
    worker = make_worker(registry, consumer, producer)
    worker._handle(consumer.consume(10, 0))
    worker._on_lost(consumer, [TP("transactions", 1)])
    producer.deliver()
    worker._service()
    assert consumer.stored_offsets() == [(0, 1)]
    assert consumer.commits == 0


def test_store_outage_on_read_pauses_retries_and_resumes(registry: ModelRegistry) -> None:
    store = FlakyStore(load_failures=5)
    consumer = FakeConsumer([[rec(0), rec(1)], [rec(2)]])
    producer = FakeProducer()
    worker = make_worker(registry, consumer, producer, store=store)
    stats = worker.run(max_events=3)
    assert worker.error is None and stats.scored == 3
    assert consumer.paused == 1 and consumer.resumed == 1
    assert sample(worker, "stream_infer_state_errors_total", op="read") == 5
    assert consumer.stored_offsets() == [(0, 2), (0, 3)]


def test_store_outage_on_write_holds_offsets_until_durable(registry: ModelRegistry) -> None:
    store = FlakyStore(save_failures=4)
    consumer = FakeConsumer([[rec(0)], [rec(1)]])
    producer = FakeProducer()
    worker = make_worker(registry, consumer, producer, store=store)
    stats = worker.run(max_events=2)
    assert worker.error is None and stats.scored == 2
    assert store.calls["save"] >= 5
    assert sorted(e.event_id for es in store.saved.values() for e in es) == ["t0-0", "t0-1"]
    assert consumer.stored_offsets() == [(0, 1), (0, 2)]


def test_stop_during_a_store_outage_stores_nothing_of_the_held_batch(
    registry: ModelRegistry,
) -> None:
    store = FlakyStore(load_failures=10**9)
    consumer = FakeConsumer([[rec(0)]])
    producer = FakeProducer()
    worker = make_worker(registry, consumer, producer, store=store)
    consumer.before_consume = lambda c: store.calls["load"] > 3 and worker.stop()
    worker.run()
    assert worker.error is None and producer.produced == [] and consumer.stored == []


class FailingModel:
    name, version = "fraud", 7

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def predict(self, rows: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("CUDA error: an illegal memory access")
        return np.full(len(rows), 0.25, dtype=np.float32)

    def rule(self, default_threshold: float) -> ScoreRule:
        """Probabilities, high is positive (what a manifest with no verdict fields means)."""
        return ScoreRule(default_threshold)


def test_a_model_error_is_retried_once(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(0)]])
    producer = FakeProducer()
    worker = make_worker(registry, consumer, producer)
    worker.pipeline.model = FailingModel(failures=1)  # type: ignore[assignment]
    worker.run(max_events=1)
    assert worker.error is None and scored_ids(producer) == ["t0-0"]
    assert sample(worker, "stream_infer_model_errors_total", version="7") == 1


def test_a_model_failing_twice_stops_without_storing_its_batch(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(0)], [rec(1)]])
    producer = FakeProducer()
    worker = make_worker(registry, consumer, producer)
    consumer.before_consume = lambda c: (
        not c.batches
        or setattr(
            worker.pipeline,
            "model",
            FailingModel(failures=2) if len(c.batches) == 1 else worker.pipeline.model,
        )
    )
    with pytest.raises(ModelError, match="version 7 failed twice"):
        worker.run(max_events=10)
    assert consumer.stored_offsets() == [(0, 1)]  # batch 0 only
    assert scored_ids(producer) == ["t0-0"]


def test_exactly_once_commits_output_and_offsets_in_one_transaction(
    registry: ModelRegistry,
) -> None:
    consumer = FakeConsumer([[rec(0), rec(1)], [rec(2, value=b"bad")]])
    producer = FakeProducer(auto_ack=False)
    worker = make_worker(registry, consumer, producer, exactly_once=True)
    worker.run(max_events=3)
    assert producer.transactions == ["init", "begin", "offsets:0@3", "commit"]
    assert consumer.stored == []  # offsets travel in the transaction, never stored


def test_exactly_once_aborts_and_rewinds_when_a_delivery_fails(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(5), rec(6)]])
    producer = FakeProducer(fail_topic="scores", fail_error=TIMED_OUT)
    worker = make_worker(registry, consumer, producer, exactly_once=True)
    worker.run(max_events=2)
    assert producer.transactions == ["init", "begin", "abort"]
    assert consumer.seeks == [TP("transactions", 0, 5)]
