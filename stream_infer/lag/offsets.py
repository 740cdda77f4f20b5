"""Committed and log-end offsets of consumer groups, read from the broker alone.

Nothing here needs a running member of the group: committed offsets come from OffsetFetch
(``AdminClient.list_consumer_group_offsets``), members from DescribeGroups, log-end offsets
from the broker, so lag is known while every worker is down.

Log-end offsets, two ways (``lag.end_offsets`` / ``--end-offsets``; the snapshot names the
one used):

- ``listoffsets``: ListOffsets(latest). Cheap; right on Apache Kafka, wrong on Tansu
  (it answers 1 for every partition).
- ``fetch`` (default): the high watermark carried by a fetch response, read by a throwaway
  consumer assigned to the partitions (no group join, no commit). Right on every broker.

Lag seconds are exact, not interpolated: the age of the oldest unconsumed record, i.e. the
timestamp of the first record at or after the committed offset, against the wall clock when
the snapshot was taken (0 when lag is 0). The same throwaway consumer reads it: assigned at
the committed offset, it gets that record and, in the same fetch, the high watermark.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from stream_infer.config import Settings
from stream_infer.errors import RetryableError

EndOffsetMethod = Literal["fetch", "listoffsets"]
TP = tuple[str, int]

#: Group states in which some consumer is a member (it commits as it goes).
_LIVE_STATES = frozenset(
    {
        ConsumerGroupState.STABLE,
        ConsumerGroupState.PREPARING_REBALANCING,
        ConsumerGroupState.COMPLETING_REBALANCING,
    }
)


def label_group_id(settings: Settings) -> str:
    """The label processor's group: its faust app id (stream_infer/labels/app.py)."""
    return f"{settings.worker.group_id}-labels"


def default_groups(settings: Settings) -> dict[str, tuple[str, ...]]:
    """The groups ``stream-infer lag`` watches by default, each with the topics it reads
    (listed even before anything is committed): the scoring group and the label group."""
    return {
        settings.worker.group_id: (settings.topics.transactions,),
        label_group_id(settings): (settings.topics.labels,),
    }


@dataclass(frozen=True)
class Member:
    """The group member a partition is assigned to (DescribeGroups)."""

    consumer_id: str
    host: str
    client_id: str


@dataclass(frozen=True)
class PartitionOffsets:
    """One partition of one group: offsets, lag (None: nothing committed), lag seconds
    (None: unknown, e.g. no record timestamp) and its member (None: unassigned)."""

    group: str
    topic: str
    partition: int
    committed: int | None
    log_end: int
    lag_seconds: float | None
    member: Member | None

    @property
    def lag(self) -> int | None:
        if self.committed is None:
            return None
        return max(0, self.log_end - self.committed)


@dataclass(frozen=True)
class GroupOffsets:
    """A group's state (``STABLE``, ``EMPTY``, ...), whether a consumer is in it, and its
    partitions sorted by (topic, partition)."""

    group: str
    state: str
    live: bool
    partitions: tuple[PartitionOffsets, ...]

    def owned(self, p: PartitionOffsets) -> bool:
        """Whether a live consumer owns ``p``. Tansu answers DescribeGroups with no members
        even for a live group: then a live group is taken to own all its partitions."""
        if p.member is not None:
            return True
        return self.live and all(q.member is None for q in self.partitions)


@dataclass(frozen=True)
class Snapshot:
    """Every watched group at one moment. ``taken_at`` is wall-clock seconds (record
    timestamps are wall-clock); ``method`` says how log-end offsets were read."""

    taken_at: float
    method: EndOffsetMethod
    groups: tuple[GroupOffsets, ...]

    def latest_offsets(self) -> dict[TP, int]:
        """Log-end offset of every partition in the snapshot."""
        return {(p.topic, p.partition): p.log_end for g in self.groups for p in g.partitions}


@dataclass(frozen=True)
class _GroupRead:
    state: ConsumerGroupState
    members: dict[TP, Member]
    committed: dict[TP, int]


def _result(future: Any, timeout_s: float, what: str) -> Any:
    try:
        return future.result(timeout=timeout_s)
    except (KafkaException, TimeoutError) as exc:
        raise RetryableError(
            f"{what}: {exc or 'no answer within ' + str(timeout_s) + 's'}"
        ) from exc


def probe_config(settings: Settings) -> dict[str, Any]:
    """The throwaway consumer: assigned (never subscribed), never commits, reports EOF so an
    empty or caught-up partition answers too, fetches little."""
    cfg = settings.kafka.client_config()
    cfg.update(
        {
            # A group id is required by librdkafka, never joined: assign() needs no group.
            "group.id": f"{settings.kafka.client_id}-lag-probe-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_uncommitted",
            "fetch.wait.max.ms": 10,
            "max.partition.fetch.bytes": settings.kafka.message_max_bytes,
            "queued.max.messages.kbytes": 1024,
        }
    )
    return cfg


class BrokerOffsets:
    """Reads :class:`Snapshot` s of consumer groups from one cluster.

    ``known_topics`` lists, per group, topics to show even where nothing is committed and
    no member is assigned (a group that never ran).
    """

    def __init__(
        self,
        settings: Settings,
        method: EndOffsetMethod,
        known_topics: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        from confluent_kafka.admin import AdminClient

        self._settings = settings
        self.method: EndOffsetMethod = method
        self._known = {g: tuple(t) for g, t in (known_topics or {}).items()}
        self._timeout_s = settings.lag.timeout_s
        self._admin = AdminClient(settings.kafka.client_config())

    def sample(self, groups: Sequence[str]) -> Snapshot:
        """One snapshot of ``groups``.

        Raises:
            RetryableError: the broker did not answer within ``lag.timeout_s``.
        """
        reads = {g: self._read_group(g) for g in groups}
        partitions: dict[str, list[TP]] = {}
        for group in groups:
            read = reads[group]
            tps = set(read.committed) | set(read.members)
            tps |= set(self._partitions_of(self._known.get(group, ())))
            partitions[group] = sorted(tps)
        all_tps = sorted({tp for tps in partitions.values() for tp in tps})
        wanted = {(tp, read.committed[tp]) for read in reads.values() for tp in read.committed}
        if self.method == "listoffsets":
            log_end = self._list_offsets(all_tps)
            waiting = {(tp, off) for tp, off in wanted if log_end.get(tp, 0) > off}
            heads, _ = self._probe(sorted(waiting), ())
        else:
            covered = {tp for tp, _ in wanted}
            uncommitted = [tp for tp in all_tps if tp not in covered]
            heads, log_end = self._probe(sorted(wanted), uncommitted)
        now = time.time()
        return Snapshot(
            taken_at=now,
            method=self.method,
            groups=tuple(
                self._group(g, reads[g], partitions[g], log_end, heads, now) for g in groups
            ),
        )

    def _group(
        self,
        group: str,
        read: _GroupRead,
        tps: Iterable[TP],
        log_end: Mapping[TP, int],
        heads: Mapping[tuple[TP, int], int | None],
        now: float,
    ) -> GroupOffsets:
        rows = []
        for tp in tps:
            committed = read.committed.get(tp)
            end = log_end.get(tp, 0)
            seconds: float | None = None
            if committed is not None:
                if end <= committed:
                    seconds = 0.0
                else:
                    ts_ms = heads.get((tp, committed))
                    seconds = None if ts_ms is None else max(0.0, now - ts_ms / 1000.0)
            rows.append(
                PartitionOffsets(group, tp[0], tp[1], committed, end, seconds, read.members.get(tp))
            )
        return GroupOffsets(group, read.state.name, read.state in _LIVE_STATES, tuple(rows))

    def _read_group(self, group: str) -> _GroupRead:
        described = self._admin.describe_consumer_groups([group], request_timeout=self._timeout_s)[
            group
        ]
        desc = _result(described, self._timeout_s, f"describe group {group}")
        members: dict[TP, Member] = {}
        for m in desc.members:
            member = Member(m.member_id, m.host, m.client_id)
            for tp in m.assignment.topic_partitions if m.assignment else ():
                members[(tp.topic, tp.partition)] = member
        request = [ConsumerGroupTopicPartitions(group)]
        listed = self._admin.list_consumer_group_offsets(request, request_timeout=self._timeout_s)
        answer = _result(listed[group], self._timeout_s, f"committed offsets of {group}")
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in answer.topic_partitions or ()
            if tp.error is None and tp.offset >= 0
        }
        return _GroupRead(desc.state, members, committed)

    def _partitions_of(self, topics: Iterable[str]) -> list[TP]:
        wanted = list(topics)
        if not wanted:
            return []
        try:
            # All topics, not one by name: a request naming a missing topic makes some
            # brokers (Tansu) create it.
            listed = self._admin.list_topics(timeout=self._timeout_s).topics
        except KafkaException as exc:
            raise RetryableError(f"topic metadata: {exc}") from exc
        out: list[TP] = []
        for topic in wanted:
            meta = listed.get(topic)
            if meta is not None and meta.error is None:
                out.extend((topic, p) for p in meta.partitions)
        return out

    def _list_offsets(self, tps: Sequence[TP]) -> dict[TP, int]:
        if not tps:
            return {}
        from confluent_kafka.admin import OffsetSpec

        request = {TopicPartition(t, p): OffsetSpec.latest() for t, p in tps}
        futures = self._admin.list_offsets(request, request_timeout=self._timeout_s)
        return {
            (tp.topic, tp.partition): int(_result(f, self._timeout_s, "ListOffsets").offset)
            for tp, f in futures.items()
        }

    def _probe(
        self, starts: Sequence[tuple[TP, int]], uncommitted: Sequence[TP]
    ) -> tuple[dict[tuple[TP, int], int | None], dict[TP, int]]:
        """Assign a throwaway consumer at each ``(tp, offset)`` (and each ``uncommitted`` tp
        at 0), read until every partition answered with a record or EOF; returns the first
        record's timestamp (ms, None if it has none) per start and each tp's high watermark
        from the fetch. Two groups at different offsets of one tp take separate rounds.

        Raises:
            RetryableError: a partition did not answer within ``lag.timeout_s``.
        """
        heads: dict[tuple[TP, int], int | None] = {}
        marks: dict[TP, int] = {}
        rounds: list[dict[TP, int]] = []
        for tp, offset in starts:
            free = next((r for r in rounds if tp not in r), None)
            if free is None:
                rounds.append(free := {})
            free[tp] = offset
        if uncommitted:
            if not rounds:
                rounds.append({})
            for tp in uncommitted:
                rounds[0].setdefault(tp, 0)
        if not rounds:
            return heads, marks
        from confluent_kafka import Consumer

        consumer = Consumer(probe_config(self._settings))
        try:
            for assignment in rounds:
                seen = self._read_heads(consumer, assignment)
                for tp, ts in seen.items():
                    heads[(tp, assignment[tp])] = ts
                    mark = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
                    if mark is not None:
                        marks[tp] = max(marks.get(tp, 0), int(mark[1]))
        finally:
            consumer.close()
        return heads, marks

    def _read_heads(self, consumer: Any, assignment: Mapping[TP, int]) -> dict[TP, int | None]:
        consumer.assign([TopicPartition(t, p, off) for (t, p), off in assignment.items()])
        seen: dict[TP, int | None] = {}
        deadline = time.monotonic() + self._timeout_s
        while len(seen) < len(assignment):
            if time.monotonic() > deadline:
                missing = sorted(set(assignment) - set(seen))
                raise RetryableError(f"no fetch answer within {self._timeout_s}s for {missing}")
            for msg in consumer.consume(num_messages=len(assignment) * 4, timeout=0.2):
                tp = (msg.topic(), msg.partition())
                err = msg.error()
                if tp in seen or tp not in assignment:
                    continue
                if err is None:
                    kind, ts = msg.timestamp()
                    seen[tp] = None if kind == TIMESTAMP_NOT_AVAILABLE else int(ts)
                elif err.code() == KafkaError._PARTITION_EOF:
                    seen[tp] = None
                else:
                    raise RetryableError(f"fetch of {tp}: {err}")
        consumer.unassign()
        return seen
