"""Topics as code: the specs in ``topics/*.toml``, applied idempotently.

``apply`` creates missing topics and checks existing ones. It refuses (ConfigError) when a
partition count would break co-partitioning: the worker writes the score of input partition p to
output partition p, so ``transactions`` and ``scores`` must have the same number of partitions.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stream_infer.errors import ConfigError

Action = Literal["created", "exists", "drift"]


@dataclass(frozen=True)
class TopicSpec:
    """One topic's desired layout."""

    name: str
    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)
    co_partitioned_with: tuple[str, ...] = ()


@dataclass(frozen=True)
class TopicResult:
    """What ``apply`` did or found for one topic."""

    name: str
    action: Action
    partitions: int
    detail: str = ""


def load_specs(
    specs_dir: Path, partitions: int | None = None, rename: Mapping[str, str] | None = None
) -> list[TopicSpec]:
    """Read every ``*.toml`` spec.

    Args:
        partitions: override every spec's partition count (tests, small demos).
        rename: map spec names to the configured topic names (per-test topics).

    Raises:
        ConfigError: a spec is malformed or co-partitioned topics disagree.
    """
    rename = rename or {}
    specs: list[TopicSpec] = []
    files = sorted(specs_dir.glob("*.toml"))
    if not files:
        raise ConfigError(f"no topic specs in {specs_dir}")
    for path in files:
        try:
            raw = tomllib.loads(path.read_text())
            specs.append(
                TopicSpec(
                    name=rename.get(raw["name"], raw["name"]),
                    partitions=partitions or int(raw["partitions"]),
                    replication_factor=int(raw.get("replication_factor", 1)),
                    config={str(k): str(v) for k, v in raw.get("config", {}).items()},
                    co_partitioned_with=tuple(
                        rename.get(n, n) for n in raw.get("co_partitioned_with", ())
                    ),
                )
            )
        except (KeyError, ValueError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"bad topic spec {path}: {exc}") from exc
    check_co_partitioning({s.name: s.partitions for s in specs}, specs)
    return specs


def specs_for(settings: Any) -> list[TopicSpec]:
    """The specs, renamed to the configured topic names (``settings``: a Settings)."""
    t = settings.topics
    rename = {
        "transactions": t.transactions,
        "transaction-labels": t.labels,
        "scores": t.scores,
        "scores-shadow": t.scores_shadow,
        "transactions-dlq": t.dead_letter,
    }
    return load_specs(Path(t.specs_dir), t.partitions, rename)


def check_co_partitioning(counts: Mapping[str, int], specs: Sequence[TopicSpec]) -> None:
    """Raise ConfigError if any co-partitioned pair has different partition counts."""
    for spec in specs:
        for other in spec.co_partitioned_with:
            mine, theirs = counts.get(spec.name), counts.get(other)
            if mine is not None and theirs is not None and mine != theirs:
                raise ConfigError(
                    f"{spec.name!r} has {mine} partitions but {other!r} has {theirs}: "
                    "they must match (scores of input partition p go to output partition p)"
                )


def apply(admin: Any, specs: Sequence[TopicSpec], timeout_s: float = 15.0) -> list[TopicResult]:
    """Create missing topics, check existing ones; safe to run any number of times.

    Args:
        admin: a ``confluent_kafka.admin.AdminClient``.

    Raises:
        ConfigError: an existing topic's partition count breaks co-partitioning, or the
            broker refused to create a topic.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    existing = {
        name: len(meta.partitions)
        for name, meta in admin.list_topics(timeout=timeout_s).topics.items()
    }
    # Check against what will exist after creation, before creating anything.
    planned = {s.name: existing.get(s.name, s.partitions) for s in specs}
    check_co_partitioning(planned, specs)

    results: list[TopicResult] = []
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config))
                for s in missing
            ],
            operation_timeout=timeout_s,
        )
        for spec in missing:
            try:
                futures[spec.name].result(timeout=timeout_s)
                results.append(TopicResult(spec.name, "created", spec.partitions))
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" in str(exc):  # a concurrent apply won the race
                    results.append(TopicResult(spec.name, "exists", spec.partitions))
                    continue
                raise ConfigError(f"could not create topic {spec.name!r}: {exc}") from exc
    for spec in specs:
        if spec.name in existing:
            have = existing[spec.name]
            if have != spec.partitions:
                results.append(
                    TopicResult(spec.name, "drift", have, f"spec says {spec.partitions} partitions")
                )
            else:
                results.append(TopicResult(spec.name, "exists", have))
    wait_for_topics(admin, [s.name for s in specs], timeout_s)
    return results


def wait_for_topics(admin: Any, names: Sequence[str], timeout_s: float = 15.0) -> None:
    """Block until metadata shows every topic with leaders for all partitions."""

    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=timeout_s).topics
        ready = all(
            n in topics
            and topics[n].error is None
            and topics[n].partitions
            and all(p.leader >= 0 for p in topics[n].partitions.values())
            for n in names
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"topics {list(names)} not ready after {timeout_s}s")
        time.sleep(0.05)
