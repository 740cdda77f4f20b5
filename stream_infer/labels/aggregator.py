"""Transport-free core of the label processor.

Labels arrive 7 days after their transaction, keyed by terminal. Per input partition they come
in event-time order, so once a partition has shown a label of day d + 1, its labels of day d
are all in. The global watermark (the last complete day) is the minimum over every partition
of the topic, read from the shared count store, so processors that split the partitions
between them agree on it. Once day C is complete, every terminal's row for day D = C + 8 is
final (it reads days [D - 37, D - 7), all <= C) and is published.

Two guards keep one badly dated label from publishing rows early (docs/ARCHITECTURE.md,
"Events from the future"): a label dated more than ``max_future_s`` ahead of the wall clock is
a dead letter, so it moves no partition's day; and one publish moves the watermark at most
``max_step_days`` past the last one this process published (never past the wall clock).

Counts are applied idempotently by partition offset: each batch's update per partition names
the applied offset it was counted against, and the store refuses it if another processor has
moved that partition on meanwhile (the batch is then recounted against the new offset). So a
restart, a rebalance or a re-delivered batch never counts a label twice.

A store failure leaves nothing half done: :meth:`LabelAggregator.count` and
:meth:`LabelAggregator.publish_ready` may each be called again with the same arguments until
they succeed (the label app does, with backoff). An update whose reply was lost may have been
applied; the retry recognises it (the partition's applied offset is then the update's last
offset) and reports its counts and dead letters instead of skipping them as already counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stream_infer.config import EventSettings, LabelSettings
from stream_infer.errors import DeadLetterError, RetryableError
from stream_infer.event_time import FutureLimit
from stream_infer.features.definitions import (
    LABEL_DELAY_DAYS,
    SECONDS_PER_DAY,
    TERMINAL_HORIZON_DAYS,
)
from stream_infer.features.online import TerminalRow
from stream_infer.labels.decode import decode_counted
from stream_infer.labels.rows import FinalCounts

log = logging.getLogger(__name__)
#: A row for day D is final once day D - FINAL_LAG is complete.
FINAL_LAG = LABEL_DELAY_DAYS + 1
#: Days of rows handed to the sinks in one call (bounds memory when catching up).
PUBLISH_CHUNK_DAYS = 7
#: How often a batch is recounted when other processors keep moving its partitions on.
MAX_ATTEMPTS = 5
DEFAULT_MAX_FUTURE_S: float = EventSettings.model_fields["max_future_s"].default
DEFAULT_MAX_STEP_DAYS: int = LabelSettings.model_fields["max_watermark_step_days"].default


@dataclass(frozen=True, slots=True)
class PartitionUpdate:
    """One batch's counts for one partition, applied only if the partition's applied offset is
    still ``expected_offset`` (-1: none applied yet)."""

    partition: int
    expected_offset: int
    last_offset: int
    increments: Mapping[tuple[int, str], tuple[int, int]]  # (day, terminal) -> (n, frauds)
    latest_day: int  # latest label day in the batch (-1: no valid label)


class LabelCountStore(Protocol):
    """Durable per-(terminal, day) counts and per-partition progress. Every method raises
    :class:`~stream_infer.errors.StoreUnavailableError`, and only that, when the store cannot
    be reached, answers too late or is locked."""

    def applied_offsets(self) -> dict[int, int]:
        """Per partition, the last offset whose label is counted (absent: none)."""
        ...

    def apply(self, updates: Sequence[PartitionUpdate]) -> set[int]:
        """In one atomic step, for each update whose partition's applied offset equals its
        ``expected_offset``: add its increments, set the applied offset to ``last_offset``
        and the partition's day to the larger of the stored one and ``latest_day``. Returns
        the partitions whose updates were refused (applied offset moved on).

        Raises:
            StoreUnavailableError: the store could not be reached or locked in time (the
                update may or may not have been applied).
        """
        ...

    def partition_days(self) -> dict[int, int]:
        """Per partition, the day of the latest label counted."""
        ...

    def counts(self, days: Iterable[int]) -> dict[int, dict[str, tuple[int, int]]]:
        """Counts for ``days``: ``{day: {terminal: (transactions, frauds)}}``."""
        ...


class RowSink(Protocol):
    """Where final terminal rows go (the terminal store; optionally Feast's online store).
    ``publish`` is idempotent and raises
    :class:`~stream_infer.errors.StoreUnavailableError` when the sink cannot be reached."""

    def publish(
        self, rows: Mapping[tuple[str, int], TerminalRow], complete_through: int
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """One record from the labels topic (``key``: for its dead letter)."""

    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None


@dataclass
class BatchOutcome:
    """What a batch did: labels counted, records skipped as already counted, dead letters
    (record, reason) and the days whose rows it published."""

    counted: int = 0
    skipped: int = 0
    dead_letters: list[tuple[LabelRecord, str]] = field(default_factory=list)
    published_days: list[int] = field(default_factory=list)


@dataclass
class _Counted:
    update: PartitionUpdate | None
    earliest_day: int | None = None  # earliest label day counted
    counted: int = 0
    skipped: int = 0
    dead_letters: list[tuple[LabelRecord, str]] = field(default_factory=list)


def _count(
    partition: int, recs: Sequence[LabelRecord], applied: int, future: FutureLimit
) -> _Counted:
    out = _Counted(update=None)
    increments: dict[tuple[int, str], tuple[int, int]] = {}
    latest_day = -1
    last_offset = applied
    for rec in recs:
        if rec.offset <= applied:
            out.skipped += 1
            # Counted already, but the batch that counted it may have stopped before its dead
            # letters were delivered (it was then never acknowledged): make them again. A
            # duplicate letter is at-least-once; a lost one is not allowed.
            try:
                decode_counted(rec.value, future)
            except DeadLetterError as exc:
                out.dead_letters.append((rec, exc.reason))
            continue
        last_offset = max(last_offset, rec.offset)
        try:
            label = decode_counted(rec.value, future)
        except DeadLetterError as exc:
            out.dead_letters.append((rec, exc.reason))
            continue
        key = (label.day, label.terminal_id)
        n, f = increments.get(key, (0, 0))
        increments[key] = (n + 1, f + label.fraud)
        latest_day = max(latest_day, label.day)
        if out.earliest_day is None or label.day < out.earliest_day:
            out.earliest_day = label.day
        out.counted += 1
    if last_offset > applied:
        out.update = PartitionUpdate(partition, applied, last_offset, increments, latest_day)
    return out


@dataclass
class _Batch:
    """What :meth:`LabelAggregator.count` knows of a batch across its retries."""

    key: frozenset[tuple[int, int, int]]  # (partition, first offset, last offset)
    first_rows: list[int]
    future: FutureLimit  # one limit for every attempt: a retry decides as the first did
    claimed: dict[int, _Counted] = field(default_factory=dict)  # applied, or maybe applied


class LabelAggregator:
    """Counts labels and publishes final terminal rows (see the module docstring).

    ``max_future_s``: labels dated more than this ahead of ``clock()`` (epoch seconds) are
    dead letters. ``max_step_days``: the most days one publish moves the watermark past the
    last one this process published.
    """

    def __init__(
        self,
        store: LabelCountStore,
        sinks: Sequence[RowSink],
        partitions: int,
        *,
        max_future_s: float = DEFAULT_MAX_FUTURE_S,
        max_step_days: int = DEFAULT_MAX_STEP_DAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sinks = list(sinks)
        self.partitions = partitions
        self.max_future_s = max_future_s
        self.max_step_days = max_step_days
        self.clock = clock
        self.published_through: int | None = None  # last day D whose rows are out
        self._first_row_day: int | None = None  # the first day whose rows may need publishing
        self._final = FinalCounts()
        self._batch: _Batch | None = None  # the batch a failed count() left, for its retry

    def complete_through(self, days: Mapping[int, int] | None = None) -> int | None:
        """The last day whose labels are all in, over every partition (None: unknown).

        ``days``: the store's partition days if just read, else they are read now.
        """
        known = {p: d for p, d in (days or self.store.partition_days()).items() if d >= 0}
        if len(known) < self.partitions:
            return None  # a partition has shown no label yet
        # A partition's latest day may still be receiving labels: complete is the day before.
        return min(known.values()) - 1

    def process(self, records: Sequence[LabelRecord]) -> BatchOutcome:
        """Count a batch (any partitions) and publish the rows it made final.

        Raises:
            RetryableError: the store failed (:class:`~stream_infer.errors.StoreUnavailableError`),
                or other processors kept moving this batch's partitions on for
                :data:`MAX_ATTEMPTS` attempts. Retry :meth:`count` and :meth:`publish_ready`
                separately (each may be repeated), not this: after a failed publish the batch
                is counted, and a second count would skip it.
        """
        outcome = self.count(records)
        self.publish_ready(outcome)
        return outcome

    def count(self, records: Sequence[LabelRecord]) -> BatchOutcome:
        """Count a batch (any partitions) into the store; publishes nothing.

        After it raises, call it again with the same records: what the failed call applied is
        recognised and reported, never counted twice nor lost from the outcome.

        Raises:
            RetryableError: as :meth:`process`.
        """
        pending: dict[int, list[LabelRecord]] = {}
        for rec in records:
            pending.setdefault(rec.partition, []).append(rec)
        key = frozenset((p, recs[0].offset, recs[-1].offset) for p, recs in pending.items())
        batch = self._batch if self._batch is not None and self._batch.key == key else None
        if batch is None:
            # First rows to publish: those whose window holds the earliest label this process
            # counts (earlier windows are empty: all-zero rows, which the reader infers from
            # the watermark) or, after a restart, a horizon before what was counted before it:
            # the rows of those days may not all have been published when it stopped.
            stored = self.store.partition_days() if self._first_row_day is None else {}
            first = [d - TERMINAL_HORIZON_DAYS + FINAL_LAG for d in stored.values() if d >= 0]
            future = FutureLimit.at(self.clock, self.max_future_s)
            batch = self._batch = _Batch(key, first, future)
        claimed = batch.claimed
        for _attempt in range(MAX_ATTEMPTS):
            applied = self.store.applied_offsets()
            for p, recs in pending.items():
                mine = claimed.get(p)
                if (
                    mine is None
                    or mine.update is None
                    or applied.get(p, -1) != mine.update.last_offset
                ):
                    claimed[p] = _count(p, recs, applied.get(p, -1), batch.future)
                # else: an earlier attempt's update was applied although its reply was lost
            fresh = [
                c.update
                for p in pending
                if (c := claimed[p]).update is not None
                and c.update.expected_offset == applied.get(p, -1)
            ]
            refused = self.store.apply(fresh)
            if not refused:
                break
            # Another processor applied offsets of these partitions since we read them (a
            # rebalance moved them): count them again against the offsets it left. A refused
            # claim stays: if the store now holds exactly its last offset, it was a lost
            # reply's update of ours applied late, and the next attempt recognises it.
            log.info("partitions %s moved on while counting; recounting", sorted(refused))
            pending = {p: pending[p] for p in refused}
        else:
            raise RetryableError(f"partitions {sorted(pending)} kept moving on while counting")
        self._batch = None
        outcome = BatchOutcome()
        first_rows = batch.first_rows
        for c in claimed.values():
            if c.earliest_day is not None:
                first_rows.append(c.earliest_day + FINAL_LAG)
            outcome.counted += c.counted
            outcome.skipped += c.skipped
            outcome.dead_letters.extend(c.dead_letters)
        if first_rows and self._first_row_day is None:
            self._first_row_day = min(first_rows)
        return outcome

    def publish_ready(self, outcome: BatchOutcome | None = None) -> list[int]:
        """Publish rows for every day made final since the last call; returns those days."""
        days_by_partition = self.store.partition_days()
        complete = self.complete_through(days_by_partition)
        if complete is None:
            return []
        complete = self._bounded(complete)
        last_final = complete + FINAL_LAG
        if self.published_through is not None:
            first = self.published_through + 1
        elif self._first_row_day is not None:
            first = self._first_row_day
        else:  # nothing counted by this process yet: a horizon before the stored progress
            first = min(d for d in days_by_partition.values() if d >= 0)
            first += FINAL_LAG - TERMINAL_HORIZON_DAYS
        days = list(range(first, last_final + 1))
        for lo in range(0, len(days), PUBLISH_CHUNK_DAYS):
            self._publish(
                days[lo : lo + PUBLISH_CHUNK_DAYS], last=lo + PUBLISH_CHUNK_DAYS >= len(days)
            )
        if outcome is not None:
            outcome.published_days.extend(days)
        return days

    def _bounded(self, complete: int) -> int:
        """``complete`` held to the wall clock (a day that has not ended, with
        ``max_future_s`` of skew allowed, cannot be complete) and to ``max_step_days`` past
        the watermark this process last published."""
        now = FutureLimit.at(self.clock, self.max_future_s)
        bounded = min(complete, int(now.limit_s // SECONDS_PER_DAY) - 1)
        if self.published_through is not None:
            bounded = min(bounded, self.published_through - FINAL_LAG + self.max_step_days)
        if bounded < complete:
            log.info("label watermark held at day %d (the labels say %d)", bounded, complete)
        return bounded

    def _publish(self, days: Sequence[int], last: bool) -> None:
        # Every day these rows read is <= the complete day, so its counts are final: read
        # each from the store once, keep it while a later row still needs it.
        needed = range(days[0] - TERMINAL_HORIZON_DAYS, days[-1] - LABEL_DELAY_DAYS)
        missing = self._final.missing(needed)
        if missing:
            self._final.add(missing, self.store.counts(missing))
        rows = self._final.rows(days)
        # A chunk without rows (days before the first label) needs no call of its own: the
        # last chunk's watermark covers it.
        if rows or last:
            for sink in self.sinks:
                sink.publish(rows, days[-1] - FINAL_LAG)
        self.published_through = days[-1]
        self._final.forget_before(days[-1] + 1 - TERMINAL_HORIZON_DAYS)
        log.info("published %d terminal rows for days %d..%d", len(rows), days[0], days[-1])
