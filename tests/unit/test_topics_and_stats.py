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
    }
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
    def __init__(self, existing: dict[str, int]) -> None:
        self.existing = existing
        self.created: list[Any] = []

    def list_topics(self, timeout: float) -> Any:
        part = SimpleNamespace(leader=1)
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
        return {t.topic: SimpleNamespace(result=lambda timeout: None) for t in topics}


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
