"""Topics as code: the specs in ``topics/*.toml``, applied idempotently.

``apply`` creates missing topics and checks existing ones. It refuses (ConfigError) when a
partition count would break co-partitioning: the worker writes the score of input partition p to
output partition p, so ``transactions`` and ``scores`` must have the same number of partitions.

Every spec states ``max.message.bytes``, and it must equal ``kafka.message_max_bytes``: one size
limit from the topics through the producer and consumer to the dead letters (the chain is
documented in topics/transactions.toml and :mod:`stream_infer.kafka.clients`). An existing topic
whose broker-side ``max.message.bytes`` differs, or is not set explicitly, is reported as drift.

Replication is a setting, not a spec: ``topics.replication_factor`` (3) and
``topics.min_insync_replicas`` (2) apply to every topic created, so one broker may fail without
losing an acknowledged (acks=all) record; a one-node broker gets 1 and 1.

:func:`check_worker_topics` is the worker's start-up check: its input, output and dead-letter
topics must exist (clients never auto-create topics) and keep co-partitioning.
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

#: The topic config every spec must state (the size chain's first link).
MAX_MESSAGE_BYTES = "max.message.bytes"
MIN_INSYNC_REPLICAS = "min.insync.replicas"


@dataclass(frozen=True)
class TopicSpec:
    """One topic's desired layout."""

    name: str
    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)
    co_partitioned_with: tuple[str, ...] = ()

    @property
    def max_message_bytes(self) -> int:
        """The largest record batch the topic takes (``load_specs`` checked it is stated)."""
        return int(self.config[MAX_MESSAGE_BYTES])


@dataclass(frozen=True)
class TopicResult:
    """What ``apply`` did or found for one topic."""

    name: str
    action: Action
    partitions: int
    detail: str = ""


def load_specs(
    specs_dir: Path,
    partitions: int | None = None,
    rename: Mapping[str, str] | None = None,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
) -> list[TopicSpec]:
    """Read every ``*.toml`` spec.

    Args:
        partitions: override every spec's partition count (tests, small demos).
        rename: map spec names to the configured topic names (per-test topics).
        replication_factor: every topic's replicas (``topics.replication_factor``).
        min_insync_replicas: every topic's ``min.insync.replicas`` unless its spec states one.

    Raises:
        ConfigError: a spec is malformed, does not state a positive ``max.message.bytes``, or
            co-partitioned topics disagree.
    """
    rename = rename or {}
    specs: list[TopicSpec] = []
    files = sorted(specs_dir.glob("*.toml"))
    if not files:
        raise ConfigError(f"no topic specs in {specs_dir}")
    for path in files:
        try:
            raw = tomllib.loads(path.read_text())
            config = {str(k): str(v) for k, v in raw.get("config", {}).items()}
            if min_insync_replicas is not None:
                config.setdefault(MIN_INSYNC_REPLICAS, str(min_insync_replicas))
            specs.append(
                TopicSpec(
                    name=rename.get(raw["name"], raw["name"]),
                    partitions=partitions or int(raw["partitions"]),
                    replication_factor=replication_factor,
                    config=config,
                    co_partitioned_with=tuple(
                        rename.get(n, n) for n in raw.get("co_partitioned_with", ())
                    ),
                )
            )
        except (KeyError, ValueError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"bad topic spec {path}: {exc}") from exc
        limit = specs[-1].config.get(MAX_MESSAGE_BYTES, "")
        if not (limit.isdigit() and int(limit) > 0):
            raise ConfigError(
                f"topic spec {path} must state a positive {MAX_MESSAGE_BYTES!r} under [config] "
                f"(got {limit!r}): the size chain starts there"
            )
    check_co_partitioning({s.name: s.partitions for s in specs}, specs)
    return specs


def specs_for(settings: Any) -> list[TopicSpec]:
    """The specs, renamed to the configured topic names (``settings``: a Settings).

    Raises:
        ConfigError: as :func:`load_specs`, or a spec's ``max.message.bytes`` is not
            ``kafka.message_max_bytes`` (producer, consumer and topics must agree on one limit).
    """
    t = settings.topics
    rename = {
        "transactions": t.transactions,
        "transaction-labels": t.labels,
        "scores": t.scores,
        "scores-shadow": t.scores_shadow,
        "transactions-dlq": t.dead_letter,
        "model-control": t.model_control,
    }
    if t.min_insync_replicas > t.replication_factor:
        raise ConfigError(
            f"topics.min_insync_replicas={t.min_insync_replicas} exceeds "
            f"topics.replication_factor={t.replication_factor}: no acks=all write could succeed"
        )
    specs = load_specs(
        Path(t.specs_dir), t.partitions, rename, t.replication_factor, t.min_insync_replicas
    )
    limit = settings.kafka.message_max_bytes
    for spec in specs:
        if spec.max_message_bytes != limit:
            raise ConfigError(
                f"topic {spec.name!r}: {MAX_MESSAGE_BYTES}={spec.max_message_bytes} but "
                f"kafka.message_max_bytes={limit}: they must be the same number"
            )
    return specs


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

    Existing topics are checked for their partition count and their ``max.message.bytes``
    (a difference is reported as ``drift``, not corrected).

    Raises:
        ConfigError: an existing topic's partition count breaks co-partitioning, or the
            broker refused to create a topic.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    metadata = admin.list_topics(timeout=timeout_s).topics
    existing = {name: len(meta.partitions) for name, meta in metadata.items()}
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
    present = [s for s in specs if s.name in existing]
    limits = _max_message_bytes(admin, [s.name for s in present], timeout_s)
    for spec in present:
        have = existing[spec.name]
        drift = []
        if have != spec.partitions:
            drift.append(f"spec says {spec.partitions} partitions")
        # Tansu names no replicas in its metadata: nothing to compare there.
        replicas = min(
            (len(p.replicas) for p in metadata[spec.name].partitions.values()), default=0
        )
        if replicas and replicas != spec.replication_factor:
            drift.append(
                f"{replicas} replicas, topics.replication_factor is {spec.replication_factor}"
            )
        if limits.get(spec.name) != str(spec.max_message_bytes):
            drift.append(
                f"{MAX_MESSAGE_BYTES} is {limits.get(spec.name) or 'not set'}, "
                f"spec says {spec.max_message_bytes}"
            )
        if drift:
            results.append(TopicResult(spec.name, "drift", have, "; ".join(drift)))
        else:
            results.append(TopicResult(spec.name, "exists", have))
    wait_for_topics(admin, [s.name for s in specs], timeout_s)
    return results


def _max_message_bytes(admin: Any, names: Sequence[str], timeout_s: float) -> dict[str, str]:
    """Each topic's broker-side ``max.message.bytes``, where the broker returns one (Tansu
    returns only configs set explicitly; a topic it cannot describe is simply missing)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource, ResourceType

    if not names:
        return {}
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names])
    out: dict[str, str] = {}
    for resource, future in futures.items():
        try:
            entry = future.result(timeout=timeout_s).get(MAX_MESSAGE_BYTES)
        except (KafkaException, TimeoutError):
            continue  # reported as drift ("not set"): we cannot vouch for it
        if entry is not None and entry.value is not None:
            out[resource.name] = str(entry.value)
    return out


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


def check_worker_topics(admin: Any, settings: Any, timeout_s: float = 15.0) -> dict[str, int]:
    """The worker's start-up check: its input, output and dead-letter topics exist, and the
    outputs have as many partitions as the input (a score of input partition p goes to output
    partition p). Returns each topic's partition count.

    Args:
        admin: a ``confluent_kafka.admin.AdminClient``; ``settings``: a Settings.

    Raises:
        ConfigError: a topic is missing or breaks co-partitioning (the message names it and
            says how to fix it).
        FatalError: the cluster did not answer a metadata request within ``timeout_s``.
    """
    from confluent_kafka import KafkaException

    from stream_infer.errors import FatalError

    t = settings.topics
    names = [t.transactions, t.scores, t.scores_shadow, t.dead_letter]
    try:
        topics = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise FatalError(
            f"the cluster at {settings.kafka.bootstrap_servers} did not list its topics: {exc}"
        ) from exc
    counts: dict[str, int] = {}
    for name in names:
        meta = topics.get(name)
        if meta is None or meta.error is not None or not meta.partitions:
            raise ConfigError(
                f"topic {name!r} does not exist (clients never auto-create topics): create it "
                "with `stream-infer topics apply`"
            )
        counts[name] = len(meta.partitions)
    for output in (t.scores, t.scores_shadow):
        if counts[output] != counts[t.transactions]:
            raise ConfigError(
                f"topic {output!r} has {counts[output]} partitions but the input "
                f"{t.transactions!r} has {counts[t.transactions]}: they must match (the score "
                "of input partition p goes to output partition p)"
            )
    return counts
