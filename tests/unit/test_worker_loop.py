"""The worker loop's promises with fake clients: offsets after acks, in order, bounded."""

from __future__ import annotations

import orjson
import pytest

from stream_infer.config import load_settings
from stream_infer.errors import DeliveryError
from stream_infer.features.compiled import FeatureComputer
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.registry import ModelRegistry
from stream_infer.model.session import load_model
from stream_infer.pipeline import ScoringPipeline
from stream_infer.worker import ScoringWorker

from .fakes import TP, FakeConsumer, FakeProducer, FakeRecord
from .fraud_defs import fraud_defs


def rec(offset: int, partition: int = 0, value: bytes | None = None) -> FakeRecord:
    payload = (
        value
        if value is not None
        else orjson.dumps(
            {
                "transaction_id": f"t{partition}-{offset}",
                "tx_datetime": "2026-04-10T10:00:00",
                "customer_id": "c",
                "terminal_id": "T",
                "tx_amount": 1.0,
            }
        )
    )
    return FakeRecord(payload, _partition=partition, _offset=offset)


def make_worker(
    registry: ModelRegistry, consumer: FakeConsumer, producer: FakeProducer, in_flight: int = 8
) -> ScoringWorker:
    settings = load_settings(
        worker={"max_in_flight_batches": in_flight, "drain_timeout_s": 1.0, "pause_after_s": 0},
        metrics={"enabled": False},
    )
    model = load_model(registry, "fraud", FEATURE_NAMES)
    return ScoringWorker(
        settings,
        ScoringPipeline(model, FeatureComputer(fraud_defs())),
        consumer,
        producer,
        topic_partition=TP,
    )


def test_offsets_are_stored_only_after_delivery(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(0), rec(1)], [rec(2, value=b"bad")]])
    producer = FakeProducer(auto_ack=False)
    worker = make_worker(registry, consumer, producer)
    worker.run(max_events=3)  # drains (flush) on exit
    assert [[(t.partition, t.offset) for t in batch] for batch in consumer.stored] == [
        [(0, 2)],
        [(0, 3)],
    ]
    topics = [p[0] for p in producer.produced]
    assert topics == ["scores", "scores", "transactions-dlq"]
    assert consumer.closed and consumer.commits == 1


def test_unacked_batch_blocks_later_offsets(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(0)], [rec(1)]])
    producer = FakeProducer(auto_ack=False)
    worker = make_worker(registry, consumer, producer)
    worker._handle(consumer.consume(10, 0))
    worker._handle(consumer.consume(10, 0))
    producer.pending.reverse()  # the second batch is acked first
    producer.deliver(1)
    worker._service()
    assert consumer.stored == []  # batch 1 done, but batch 0 still pending
    producer.deliver()
    worker._service()
    assert [b[0].offset for b in consumer.stored] == [1, 2]


def test_backpressure_pauses_instead_of_buffering(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(i)] for i in range(6)])
    producer = FakeProducer(auto_ack=False)
    worker = make_worker(registry, consumer, producer, in_flight=2)
    for _ in range(2):
        worker._handle(consumer.consume(10, 0))
    assert len(worker.ledger) == 2
    producer.auto_ack = True
    worker._relieve_backpressure()
    assert consumer.paused == 1 and consumer.resumed == 1
    assert len(worker.ledger) <= 1


def test_failed_delivery_stops_without_storing(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(0), rec(1, value=b"bad")]])
    producer = FakeProducer(fail_topic="transactions-dlq")
    worker = make_worker(registry, consumer, producer)
    with pytest.raises(DeliveryError, match="broker down"):
        worker.run(max_events=10)
    assert consumer.stored == []
    assert consumer.closed


def test_brief_ack_delays_do_not_pause(registry: ModelRegistry) -> None:
    consumer = FakeConsumer([[rec(i)] for i in range(4)])
    producer = FakeProducer(auto_ack=False)
    worker = make_worker(registry, consumer, producer, in_flight=2)
    worker.settings = worker.settings.model_copy(
        update={"worker": worker.settings.worker.model_copy(update={"pause_after_s": 5.0})}
    )
    for _ in range(2):
        worker._handle(consumer.consume(10, 0))
    producer.auto_ack = True  # acks arrive on the next poll
    worker._relieve_backpressure()
    assert consumer.paused == 0 and len(worker.ledger) <= 1
