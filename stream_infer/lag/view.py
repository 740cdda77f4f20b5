"""One row per partition with its status: what the CLI prints, the exporter exposes and the
status page shows, built from a :class:`~stream_infer.lag.offsets.Snapshot` and the windows
of :mod:`stream_infer.lag.status`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from stream_infer.lag.offsets import Snapshot
from stream_infer.lag.status import GroupStatus, PartitionStatus, StatusTracker, group_status


@dataclass(frozen=True)
class LagRow:
    """A partition of a group, in ``kafka-consumer-groups.sh --describe`` terms plus lag
    seconds, status and the log-end method. ``None`` lag / status: nothing committed."""

    group: str
    topic: str
    partition: int
    current_offset: int | None
    log_end_offset: int
    lag: int | None
    lag_seconds: float | None
    status: PartitionStatus | None
    consumer_id: str | None
    host: str | None
    client_id: str | None
    method: str

    def as_json(self) -> dict[str, Any]:
        """The row as a JSON object (snake_case fields, status as its name)."""
        out = asdict(self)
        out["status"] = None if self.status is None else self.status.value
        return out


@dataclass(frozen=True)
class GroupSummary:
    """A group's status and totals over its committed partitions."""

    group: str
    state: str
    status: GroupStatus
    sum_lag: int
    max_lag: int
    max_lag_seconds: float
    topic_sum_lag: dict[str, int]


@dataclass(frozen=True)
class LagView:
    """All rows of one sample, its group summaries, when (wall clock) and how log-end
    offsets were read; ``latest_offsets`` is every partition's log-end offset."""

    taken_at: float
    method: str
    rows: tuple[LagRow, ...]
    groups: tuple[GroupSummary, ...]
    latest_offsets: dict[tuple[str, int], int]

    def rows_of(self, group: str) -> list[LagRow]:
        return [r for r in self.rows if r.group == group]


def summarize(group: str, state: str, rows: Sequence[LagRow]) -> GroupSummary:
    """Totals and status of ``group`` from its rows (uncommitted rows count for nothing)."""
    committed = [r for r in rows if r.lag is not None]
    topic_sum: dict[str, int] = {}
    for r in committed:
        topic_sum[r.topic] = topic_sum.get(r.topic, 0) + (r.lag or 0)
    return GroupSummary(
        group=group,
        state=state,
        status=group_status(r.status for r in rows),
        sum_lag=sum(r.lag or 0 for r in committed),
        max_lag=max((r.lag or 0 for r in committed), default=0),
        max_lag_seconds=max((r.lag_seconds or 0.0 for r in committed), default=0.0),
        topic_sum_lag=topic_sum,
    )


def observe(snapshot: Snapshot, tracker: StatusTracker, at: float) -> LagView:
    """Feed ``snapshot`` to ``tracker`` (``at``: a monotonic time) and return its rows with
    their statuses as of this sample."""
    rows: list[LagRow] = []
    summaries: list[GroupSummary] = []
    for g in snapshot.groups:
        group_rows: list[LagRow] = []
        for p in g.partitions:
            status: PartitionStatus | None = None
            lag = p.lag
            if p.committed is not None and lag is not None:
                key = (g.group, p.topic, p.partition)
                status = tracker.observe(key, p.committed, lag, at, g.owned(p))
            member = p.member
            group_rows.append(
                LagRow(
                    group=g.group,
                    topic=p.topic,
                    partition=p.partition,
                    current_offset=p.committed,
                    log_end_offset=p.log_end,
                    lag=lag,
                    lag_seconds=None if p.lag_seconds is None else round(p.lag_seconds, 3),
                    status=status,
                    consumer_id=member.consumer_id if member else None,
                    host=member.host if member else None,
                    client_id=member.client_id if member else None,
                    method=snapshot.method,
                )
            )
        rows.extend(group_rows)
        summaries.append(summarize(g.group, g.state, group_rows))
    return LagView(
        snapshot.taken_at, snapshot.method, tuple(rows), tuple(summaries), snapshot.latest_offsets()
    )
