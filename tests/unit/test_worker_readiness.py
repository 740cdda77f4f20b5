"""Readiness means assigned, warm and store answering; Kafka's refusals stop the worker, named."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError

from stream_infer.config import load_settings
from stream_infer.errors import KafkaAccessError, StoreUnavailableError
from stream_infer.features.compiled import FeatureComputer
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.registry import ModelRegistry
from stream_infer.model.session import load_model
from stream_infer.pipeline import ScoringPipeline
from stream_infer.worker import ScoringWorker

from .fakes import TP, FakeConsumer, FakeProducer, FakeRecord
from .fraud_defs import fraud_defs


@dataclass
class ErrorRecord(FakeRecord):
    """A consumer error event, as librdkafka hands it out of consume()."""

    _error: Any = None

    def error(self) -> Any:  # type: ignore[override]
        return self._error


def make_worker(
    registry: ModelRegistry, consumer: FakeConsumer, probe: Any = None
) -> ScoringWorker:
    settings = load_settings(worker={"drain_timeout_s": 1.0}, metrics={"enabled": False})
    model = load_model(registry, "fraud", FEATURE_NAMES)
    return ScoringWorker(
        settings,
        ScoringPipeline(model, FeatureComputer(fraud_defs())),
        consumer,
        FakeProducer(),
        topic_partition=TP,
        store_probe=probe,
    )


def ready(worker: ScoringWorker) -> float:
    return worker.metrics.registry.get_sample_value("stream_infer_ready") or 0.0


def test_ready_only_once_the_assignment_is_held(registry: ModelRegistry) -> None:
    seen: list[float] = []
    consumer = FakeConsumer([[], [], []])

    def step(c: FakeConsumer) -> None:
        seen.append(ready(worker))
        if len(seen) == 2:
            c.callbacks["on_assign"](c, [TP("transactions", 0)])

    consumer.before_consume = step
    worker = make_worker(registry, consumer)

    def stop_after_three(c: FakeConsumer) -> None:
        step(c)
        if len(seen) == 3:
            worker.stop()

    consumer.before_consume = stop_after_three
    worker.run()
    assert seen == [0.0, 0.0, 1.0]
    assert ready(worker) == 0.0  # stopped


def test_not_ready_while_the_store_does_not_answer_at_assignment(
    registry: ModelRegistry,
) -> None:
    def probe() -> None:
        raise StoreUnavailableError("redis down")

    consumer = FakeConsumer([[]])
    worker = make_worker(registry, consumer, probe)
    seen: list[float] = []

    def step(c: FakeConsumer) -> None:
        c.callbacks["on_assign"](c, [TP("transactions", 0)])
        seen.append(ready(worker))
        worker.stop()

    consumer.before_consume = step
    worker.run()
    assert seen == [0.0]


@pytest.mark.parametrize(
    "code", [KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED]
)
def test_an_authorization_error_event_stops_the_worker_named(
    registry: ModelRegistry, code: int
) -> None:
    event = ErrorRecord(None, _error=KafkaError(code, "no ACL"))
    consumer = FakeConsumer([[event]] + [[] for _ in range(100)])
    worker = make_worker(registry, consumer)
    with pytest.raises(KafkaAccessError, match=KafkaError(code).name()):
        worker.run()
    assert ready(worker) == 0.0


def test_an_authentication_failure_from_error_cb_stops_the_worker(
    registry: ModelRegistry,
) -> None:
    consumer = FakeConsumer([[] for _ in range(100)])
    worker = make_worker(registry, consumer)

    def fail_auth(_c: FakeConsumer) -> None:
        worker.on_client_error(KafkaError(KafkaError._AUTHENTICATION, "SASL: invalid credentials"))

    consumer.before_consume = fail_auth
    with pytest.raises(KafkaAccessError, match=r"authentication failed.*invalid credentials"):
        worker.run()


def test_a_transport_error_from_error_cb_is_left_to_librdkafka(
    registry: ModelRegistry,
) -> None:
    consumer = FakeConsumer([[] for _ in range(5)])
    worker = make_worker(registry, consumer)
    calls = 0

    def flaky(_c: FakeConsumer) -> None:
        nonlocal calls
        calls += 1
        worker.on_client_error(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
        if calls == 3:
            worker.stop()

    consumer.before_consume = flaky
    worker.run()  # no raise: a transport error is retried by the client
    assert worker.error is None and calls == 3
