"""The worker consumer's group settings: classic with a chosen assignor, or KIP-848's consumer
protocol (librdkafka refuses a consumer that sets the broker-owned keys), and no client ever
auto-creates a topic. Each config is handed to a real librdkafka Consumer, which validates it
without connecting."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer

from stream_infer.config import Settings, load_settings
from stream_infer.kafka.clients import consumer_config, producer_config


def _settings(**worker: object) -> Settings:
    return load_settings(kafka={"bootstrap_servers": "127.0.0.1:1"}, worker=worker)


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range,roundrobin", "range"])
def test_classic_protocol_takes_the_assignment_strategy(strategy: str) -> None:
    cfg = consumer_config(_settings(assignment_strategy=strategy))
    assert cfg["partition.assignment.strategy"] == strategy
    assert "group.protocol" not in cfg
    Consumer(cfg).close()


def test_consumer_protocol_leaves_session_heartbeat_and_assignor_to_the_broker() -> None:
    cfg = consumer_config(_settings(group_protocol="consumer", instance_id="w-0"))
    assert cfg["group.protocol"] == "consumer"
    broker_owned = {"session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"}
    assert not broker_owned & set(cfg)
    assert cfg["group.instance.id"] == "w-0"
    Consumer(cfg).close()


def test_no_client_auto_creates_topics() -> None:
    settings = _settings()
    assert consumer_config(settings)["allow.auto.create.topics"] is False
    assert producer_config(settings)["allow.auto.create.topics"] is False
