"""Topic specs (co-partitioning is enforced) and lag from librdkafka statistics."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from stream_infer.config import load_settings
from stream_infer.errors import ConfigError
from stream_infer.kafka.stats import consumer_lag
from stream_infer.kafka.topics import apply, load_specs, specs_for

SPECS = Path(__file__).resolve().parents[2] / "topics"


def test_specs_load_with_names_from_settings() -> None:
    settings = load_settings(topics={"specs_dir": str(SPECS), "scores": "s2", "partitions": 3})
    specs = {s.name: s for s in specs_for(settings)}
    assert set(specs) == {
        "transactions",
        "transaction-labels",
        "s2",
        "scores-shadow",
        "transactions-dlq",
        "model-control",
    }
    assert specs["model-control"].config["cleanup.policy"] == "compact"
    assert specs["transactions"].co_partitioned_with == ("s2", "scores-shadow")
    assert all(s.partitions == 3 for s in specs.values())
    assert specs["transactions-dlq"].config["retention.ms"] == "2592000000"


def test_mismatched_specs_are_refused(tmp_path: Path) -> None:
    for f in SPECS.glob("*.toml"):
        text = f.read_text()
        if f.stem == "scores":
            text = text.replace("partitions = 6", "partitions = 4")
        (tmp_path / f.name).write_text(text)
    with pytest.raises(ConfigError, match="must match"):
        load_specs(tmp_path)


class _Admin:
    """Topics and their explicitly set configs, as Tansu describes them."""

    def __init__(self, existing: dict[str, int], configs: dict[str, dict[str, str]] | None = None):
        self.existing = existing
        self.configs = configs if configs is not None else {}
        self.created: list[Any] = []

    def list_topics(self, timeout: float) -> Any:
        part = SimpleNamespace(leader=1, replicas=[])  # Tansu names no replicas
        return SimpleNamespace(
            topics={
                n: SimpleNamespace(partitions=dict.fromkeys(range(c), part), error=None)
                for n, c in self.existing.items()
            }
        )

    def create_topics(self, topics: list[Any], operation_timeout: float) -> dict[str, Any]:
        self.created.extend(topics)
        for t in topics:
            self.existing[t.topic] = t.num_partitions
            self.configs[t.topic] = dict(t.config)
        return {t.topic: SimpleNamespace(result=lambda timeout: None) for t in topics}

    def describe_configs(self, resources: list[Any]) -> dict[Any, Any]:
        def entries(name: str) -> dict[str, Any]:
            return {k: SimpleNamespace(value=v) for k, v in self.configs.get(name, {}).items()}

        return {r: SimpleNamespace(result=lambda timeout, n=r.name: entries(n)) for r in resources}


def test_apply_refuses_existing_topic_breaking_co_partitioning() -> None:
    admin = _Admin({"transactions": 6, "scores": 12})
    with pytest.raises(ConfigError, match="'scores' has 12 partitions but 'transactions' has 6"):
        apply(admin, load_specs(SPECS))
    assert admin.created == []


def test_apply_is_idempotent() -> None:
    admin = _Admin({})
    first = apply(admin, load_specs(SPECS))
    assert {r.action for r in first} == {"created"}
    second = apply(admin, load_specs(SPECS))
    assert {r.action for r in second} == {"exists"}


def test_lag_from_statistics() -> None:
    stats = {
        "topics": {
            "transactions": {
                "partitions": {
                    "0": {"consumer_lag": 12},
                    "1": {"consumer_lag": -1},
                    "-1": {"consumer_lag": 5},
                }
            }
        }
    }
    assert consumer_lag(orjson.dumps(stats)) == {("transactions", 0): 12}


def test_every_spec_states_the_one_size_limit() -> None:
    settings = load_settings(topics={"specs_dir": str(SPECS)})
    specs = specs_for(settings)
    assert {s.max_message_bytes for s in specs} == {settings.kafka.message_max_bytes}
    assert settings.kafka.message_max_bytes == 1_048_576


def test_spec_without_max_message_bytes_is_refused(tmp_path: Path) -> None:
    for f in SPECS.glob("*.toml"):
        text = f.read_text()
        if f.stem == "scores":
            text = "\n".join(ln for ln in text.splitlines() if "max.message.bytes" not in ln)
        (tmp_path / f.name).write_text(text)
    with pytest.raises(ConfigError, match=r"must state a positive 'max\.message\.bytes'"):
        load_specs(tmp_path)


def test_specs_disagreeing_with_message_max_bytes_are_refused() -> None:
    settings = load_settings(
        topics={"specs_dir": str(SPECS)}, kafka={"message_max_bytes": 2_097_152}
    )
    with pytest.raises(ConfigError, match=r"kafka\.message_max_bytes=2097152"):
        specs_for(settings)


def test_apply_reports_size_drift_of_existing_topics() -> None:
    specs = load_specs(SPECS)
    configs = {s.name: dict(s.config) for s in specs}
    configs["scores"]["max.message.bytes"] = "65536"
    del configs["transactions-dlq"]["max.message.bytes"]  # Tansu: not set explicitly
    admin = _Admin({s.name: s.partitions for s in specs}, configs)
    results = {r.name: r for r in apply(admin, specs)}
    assert results["scores"].action == "drift"
    assert "max.message.bytes is 65536, spec says 1048576" in results["scores"].detail
    assert results["transactions-dlq"].action == "drift"
    assert "is not set" in results["transactions-dlq"].detail
    assert results["transactions"].action == "exists"
