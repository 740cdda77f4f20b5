"""Replication as settings (3 replicas, min.insync 2 by default; 1 and 1 on one node) and the
worker's start-up check of its topics."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stream_infer.config import Settings, load_settings
from stream_infer.errors import ConfigError
from stream_infer.kafka.topics import apply, check_worker_topics, specs_for

SPECS = Path(__file__).resolve().parents[2] / "topics"


def _settings(**topics: object) -> Settings:
    return load_settings(topics={"specs_dir": str(SPECS), **topics})


class _Cluster:
    """A cluster's metadata: topic -> (partitions, replicas of each)."""

    def __init__(self, topics: dict[str, tuple[int, int]]) -> None:
        self.topics = topics
        self.created: list[Any] = []

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(
            topics={
                name: SimpleNamespace(
                    partitions={
                        p: SimpleNamespace(leader=1, replicas=list(range(replicas)))
                        for p in range(count)
                    },
                    error=None,
                )
                for name, (count, replicas) in self.topics.items()
            }
        )

    def create_topics(self, topics: list[Any], operation_timeout: float) -> dict[str, Any]:
        self.created.extend(topics)
        for t in topics:
            self.topics[t.topic] = (t.num_partitions, t.replication_factor)
        return {t.topic: SimpleNamespace(result=lambda timeout: None) for t in topics}

    def describe_configs(self, resources: list[Any]) -> dict[Any, Any]:
        limit = {"max.message.bytes": SimpleNamespace(value="1048576")}
        return {r: SimpleNamespace(result=lambda timeout: limit) for r in resources}


def test_production_defaults_are_three_replicas_and_min_insync_two() -> None:
    specs = specs_for(_settings())
    assert {s.replication_factor for s in specs} == {3}
    assert {s.config["min.insync.replicas"] for s in specs} == {"2"}
    admin = _Cluster({})
    apply(admin, specs)
    assert {t.replication_factor for t in admin.created} == {3}
    assert {t.config["min.insync.replicas"] for t in admin.created} == {"2"}


def test_a_single_node_gets_one_replica_and_min_insync_one() -> None:
    settings = _settings().with_bootstrap("127.0.0.1:9092", single_node=True)
    specs = specs_for(settings)
    assert {(s.replication_factor, s.config["min.insync.replicas"]) for s in specs} == {(1, "1")}
    # Only the bootstrap changes without single_node.
    assert specs_for(_settings().with_bootstrap("h:1"))[0].replication_factor == 3


def test_min_insync_above_the_replicas_is_refused() -> None:
    with pytest.raises(ConfigError, match="min_insync_replicas=3 exceeds"):
        specs_for(_settings(replication_factor=2, min_insync_replicas=3))


def test_an_existing_topic_with_other_replicas_is_drift() -> None:
    settings = _settings(partitions=2)
    names = [s.name for s in specs_for(settings)]
    admin = _Cluster({n: (2, 3) for n in names} | {"scores": (2, 1)})
    results = {r.name: r for r in apply(admin, specs_for(settings))}
    assert results["scores"].action == "drift"
    assert "1 replicas, topics.replication_factor is 3" in results["scores"].detail
    assert results["transactions"].action == "exists"


def _worker_topics(**counts: int) -> dict[str, tuple[int, int]]:
    layout = {"transactions": 6, "scores": 6, "scores-shadow": 6, "transactions-dlq": 1}
    layout.update({k.replace("_", "-"): v for k, v in counts.items()})
    return {name: (n, 1) for name, n in layout.items() if n}


def test_the_worker_accepts_co_partitioned_topics() -> None:
    counts = check_worker_topics(_Cluster(_worker_topics()), _settings())
    assert counts == {"transactions": 6, "scores": 6, "scores-shadow": 6, "transactions-dlq": 1}


@pytest.mark.parametrize("missing", ["transactions", "scores", "scores-shadow", "transactions-dlq"])
def test_the_worker_refuses_a_missing_topic_naming_it(missing: str) -> None:
    topics = _worker_topics(**{missing.replace("-", "_"): 0})
    with pytest.raises(ConfigError, match=f"topic '{missing}' does not exist"):
        check_worker_topics(_Cluster(topics), _settings())


def test_the_worker_refuses_outputs_that_break_co_partitioning() -> None:
    with pytest.raises(ConfigError, match="'scores' has 4 partitions but the input 'trans"):
        check_worker_topics(_Cluster(_worker_topics(scores=4)), _settings())
