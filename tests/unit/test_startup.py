"""Honest start-up without a broker: no implicit embedded broker, refusals named."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError

from stream_infer.cli import cli
from stream_infer.config import load_settings
from stream_infer.errors import ConfigError
from stream_infer.kafka.startup import access_failure
from stream_infer.runtime import kafka_cluster


@pytest.fixture
def no_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    for key in [k for k in os.environ if k.startswith("STREAM_INFER_KAFKA__")]:
        monkeypatch.delenv(key)


@pytest.mark.parametrize("command", [["worker"], ["labels"], ["serve"]])
@pytest.mark.usefixtures("no_bootstrap")
def test_long_running_commands_without_bootstrap_exit_with_a_message(
    command: list[str],
) -> None:
    result = CliRunner().invoke(cli, command)
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "KAFKA_BOOTSTRAP" in str(result.exception)
    assert "--embedded" in str(result.exception)


@pytest.mark.usefixtures("no_bootstrap")
def test_kafka_cluster_starts_no_broker_unless_asked() -> None:
    with (
        pytest.raises(ConfigError, match="no Kafka cluster configured"),
        kafka_cluster(load_settings()),
    ):
        pass
    with kafka_cluster(load_settings(kafka={"bootstrap_servers": "h:1"})) as s:
        assert s.kafka.bootstrap_servers == "h:1"


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        (KafkaError._AUTHENTICATION, "authentication failed"),
        (KafkaError.SASL_AUTHENTICATION_FAILED, "SASL authentication failed"),
        (KafkaError._SSL, "TLS handshake failed"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "not authorized on a topic"),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, "not authorized on the consumer group"),
        (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactional.id"),
    ],
)
def test_refusals_are_named(code: int, needle: str) -> None:
    cause = access_failure(KafkaError(code, "broker said no"))
    assert cause is not None and needle in cause and "broker said no" in cause


def test_transient_errors_are_not_refusals() -> None:
    assert access_failure(KafkaError(KafkaError._TRANSPORT, "Connection refused")) is None
    assert access_failure(KafkaError(KafkaError._ALL_BROKERS_DOWN, "down")) is None
    assert access_failure(KafkaError(KafkaError._TIMED_OUT, "slow")) is None
    down = KafkaError(KafkaError._TRANSPORT, "ssl://h:1/bootstrap: Connection refused")
    assert access_failure(down) is None
    cut = KafkaError(
        KafkaError._TRANSPORT,
        "ssl://h:1/bootstrap: Receive failed: error:0A000416:SSL routines::sslv3 alert "
        "certificate unknown: SSL alert number 46",
    )
    assert access_failure(cut) is not None
