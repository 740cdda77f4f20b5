"""Client configs: one size limit from settings, refused at start-up when inconsistent."""

from __future__ import annotations

import pytest

from stream_infer.config import load_settings
from stream_infer.errors import ConfigError
from stream_infer.kafka.clients import (
    RECORD_OVERHEAD_BYTES,
    check_size_limits,
    consumer_config,
    producer_config,
)


def test_producer_and_consumer_take_the_configured_record_size() -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:9092", "message_max_bytes": 2_097_152}
    )
    assert producer_config(settings)["message.max.bytes"] == 2_097_152
    consumer = consumer_config(settings)
    assert consumer["max.partition.fetch.bytes"] == 2_097_152
    assert consumer["fetch.max.bytes"] >= 2_097_152
    assert consumer["receive.message.max.bytes"] >= consumer["fetch.max.bytes"] + 512


def test_defaults_are_consistent() -> None:
    settings = load_settings(kafka={"bootstrap_servers": "127.0.0.1:9092"})
    check_size_limits(settings)
    assert producer_config(settings)["message.max.bytes"] == 1_048_576


@pytest.mark.parametrize(
    "dead_letter_max_bytes", [1_048_576, 1_048_576 - RECORD_OVERHEAD_BYTES + 1]
)
def test_dead_letters_not_below_the_record_limit_are_refused(dead_letter_max_bytes: int) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:9092"},
        worker={"dead_letter_max_bytes": dead_letter_max_bytes},
    )
    with pytest.raises(ConfigError, match="must always be small enough to produce"):
        check_size_limits(settings)
    with pytest.raises(ConfigError):
        producer_config(settings)
    with pytest.raises(ConfigError):
        consumer_config(settings)


def test_a_prefix_that_cannot_fit_is_refused() -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:9092"},
        worker={"dead_letter_max_bytes": 8192, "dead_letter_prefix_bytes": 8192},
    )
    with pytest.raises(ConfigError, match="dead_letter_prefix_bytes=8192"):
        check_size_limits(settings)
