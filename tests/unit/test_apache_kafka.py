"""The Apache Kafka launcher's configuration, without starting Java: the pinned version comes
from the packaged pom, listeners and ports are laid out once (and kept for restarts), and the
caller's properties win over the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_infer.errors import ConfigError
from stream_infer.kafka.apache import ApacheKafka, classpath_cache_file, kafka_version


def test_the_version_is_pinned_in_the_packaged_pom() -> None:
    assert kafka_version() == "4.1.1"
    assert f"kafka-classpath-{kafka_version()}-" in classpath_cache_file().name


def test_listeners_ports_and_overrides(tmp_path: Path) -> None:
    node = ApacheKafka(
        tmp_path,
        port=19092,
        extra_listeners=[("sasl", "SASL_SSL", 0), ("MTLS", "ssl", 19094)],
        properties={"min.insync.replicas": "2", "sasl.enabled.mechanisms": "SCRAM-SHA-512"},
    )
    props = node.server_properties()
    sasl_port = int(node.listener_bootstrap("SASL").rsplit(":", 1)[1])
    assert node.bootstrap == "127.0.0.1:19092"
    assert node.listener_bootstrap("mtls") == "127.0.0.1:19094"
    assert sasl_port > 0 and sasl_port not in (19092, 19094, node.controller_port)
    assert props["listeners"] == (
        f"PLAINTEXT://127.0.0.1:19092,SASL://127.0.0.1:{sasl_port},MTLS://127.0.0.1:19094,"
        f"CONTROLLER://127.0.0.1:{node.controller_port}"
    )
    assert "CONTROLLER" not in props["advertised.listeners"]
    assert props["listener.security.protocol.map"] == (
        "PLAINTEXT:PLAINTEXT,SASL:SASL_SSL,MTLS:SSL,CONTROLLER:PLAINTEXT"
    )
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["process.roles"] == "broker,controller"
    assert props["auto.create.topics.enable"] == "false"
    assert props["min.insync.replicas"] == "2"  # the caller's value wins
    assert props["log.dirs"] == str(tmp_path / "data")
    # Laid out once: a restart reuses the same ports.
    assert node.server_properties() == props
    assert not node.alive()


@pytest.mark.parametrize("name", ["PLAINTEXT", "controller"])
def test_reserved_listener_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        ApacheKafka(tmp_path, extra_listeners=[(name, "SSL", 0)])


def test_an_unknown_listener_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no listener named"):
        ApacheKafka(tmp_path).listener_bootstrap("SASL")
