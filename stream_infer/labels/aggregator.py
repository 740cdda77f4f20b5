"""Transport-free core of the label processor, for any repository's daily views.

Labels (the repository's label source) arrive some days after their event. Per input partition
they come in event-time order, so once a partition has shown a label of day d + 1, its labels
of day d are all in. The global watermark (the last complete day) is the minimum over every
partition of the topic, read from the shared partial store, so processors that split the
partitions between them agree on it. Once day C is complete, each daily view's row of every
join key for day D = C + delay + 1 is final (it reads days [D - delay - n, D - delay), all
<= C): it is computed from the day partials with :mod:`stream_infer.streamdef.daily` and
published, per view.

Two guards keep one badly dated label from publishing rows early (docs/ARCHITECTURE.md,
"Events from the future"): a label dated more than ``max_future_s`` ahead of the wall clock is
a dead letter, so it moves no partition's day; and one publish moves the watermark at most
``max_step_days`` past the last one this process published (never past the wall clock).

Partials (:mod:`stream_infer.labels.partials`: per view, day, join key and partition, the
count, sum, m2, min and max of each column the view reads) are applied idempotently by
partition offset: each batch's update per partition names the applied offset it was folded
against and sets the partition's partials to the folded values; the store refuses it if
another processor has moved that partition on meanwhile (the batch is then folded again
against the new offset and partials). So a restart, a rebalance or a re-delivered batch never
counts a label twice, and a partition's partials are its labels folded in offset order.

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
from itertools import repeat
from typing import Protocol

from stream_infer.config import EventSettings, LabelSettings
from stream_infer.errors import ConfigError, RetryableError
from stream_infer.event_time import FutureLimit
from stream_infer.labels.decode import LabelDecoder
from stream_infer.labels.partials import Partial, fold
from stream_infer.labels.rows import FinalPartials, StoredPartials, ViewRows
from stream_infer.streamdef.daily_source import DailyRow
from stream_infer.streamdef.spec import SECONDS_PER_DAY, StreamDefinitions

log = logging.getLogger(__name__)
#: Watermark days published to the sinks in one call (bounds memory when catching up).
PUBLISH_CHUNK_DAYS = 7
#: How often a batch is recounted when other processors keep moving its partitions on.
MAX_ATTEMPTS = 5
DEFAULT_MAX_FUTURE_S: float = EventSettings.model_fields["max_future_s"].default
DEFAULT_MAX_STEP_DAYS: int = LabelSettings.model_fields["max_watermark_step_days"].default
#: ``(view name, UTC day, join key)``: one partial of a partition.
PartialKey = tuple[str, int, str]


@dataclass(frozen=True, slots=True)
class PartitionUpdate:
    """One batch's partials for one partition (the values to set, folded from the stored
    ones), applied only if the partition's applied offset is still ``expected_offset``
    (-1: none applied yet)."""

    partition: int
    expected_offset: int
    last_offset: int
    partials: Mapping[PartialKey, Partial]
    latest_day: int  # latest label day in the batch (-1: no valid label)


class PartialStore(Protocol):
    """Durable per-(view, day, join key, partition) partials and per-partition progress.
    Every method raises :class:`~stream_infer.errors.StoreUnavailableError`, and only that,
    when the store cannot be reached, answers too late or is locked."""

    def applied_offsets(self) -> dict[int, int]:
        """Per partition, the last offset whose label is counted (absent: none)."""
        ...

    def apply(self, updates: Sequence[PartitionUpdate]) -> set[int]:
        """In one atomic step, for each update whose partition's applied offset equals its
        ``expected_offset``: set its partials, set the applied offset to ``last_offset``
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

    def partials_of(self, partition: int, keys: Iterable[PartialKey]) -> dict[PartialKey, Partial]:
        """``partition``'s stored partials of ``keys`` (absent: none yet)."""
        ...

    def day_partials(self, days: Iterable[int]) -> StoredPartials:
        """Every partition's partials of ``days``: ``{day: {(view, key): {partition: p}}}``."""
        ...


class RowSink(Protocol):
    """Where final daily rows go (the daily-row store; optionally Feast's online store).
    ``rows``: per view name, ``(join key, day) -> row`` (views without rows are absent).
    ``publish`` is idempotent and raises
    :class:`~stream_infer.errors.StoreUnavailableError` when the sink cannot be reached."""

    def publish(
        self, rows: Mapping[str, Mapping[tuple[str, int], DailyRow]], complete_through: int
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
    (record, reason) and the days whose rows it published (of any view)."""

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


@dataclass
class _Batch:
    """What :meth:`LabelAggregator.count` knows of a batch across its retries."""

    key: frozenset[tuple[int, int, int]]  # (partition, first offset, last offset)
    first_complete: list[int]
    future: FutureLimit  # one limit for every attempt: a retry decides as the first did
    claimed: dict[int, _Counted] = field(default_factory=dict)  # applied, or maybe applied


class LabelAggregator:
    """Folds labels into partials and publishes final daily rows (see the module docstring).

    ``defs``: the repository (its label source and daily views). ``max_future_s``: labels
    dated more than this ahead of ``clock()`` (epoch seconds) are dead letters.
    ``max_step_days``: the most days one publish moves the watermark past the last one this
    process published.

    Raises:
        ConfigError: (building) daily views without a label source.
        DefinitionError: (building) the label source's schema does not give its fields' kinds.
    """

    def __init__(
        self,
        store: PartialStore,
        sinks: Sequence[RowSink],
        partitions: int,
        *,
        defs: StreamDefinitions,
        max_future_s: float = DEFAULT_MAX_FUTURE_S,
        max_step_days: int = DEFAULT_MAX_STEP_DAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if defs.label_source is None:
            raise ConfigError(
                f"service {defs.service!r}: the label processor needs a label source "
                "(a daily view's KafkaSource) and the repository declares none"
            )
        self.store = store
        self.sinks = list(sinks)
        self.partitions = partitions
        self.views = defs.daily_views
        self.max_future_s = max_future_s
        self.max_step_days = max_step_days
        self.clock = clock
        self.decoder = LabelDecoder(defs.label_source, self.views)
        # Days before a watermark day whose labels a row published at it may read (restart).
        self._horizon = max((v.horizon_days for v in self.views), default=0)
        # Days of labels one watermark day's rows read (the longest window).
        self._window = max((v.horizon_days - v.delay_days for v in self.views), default=1)
        self.published_complete: int | None = None  # last watermark day whose rows are out
        self._first_complete: int | None = None  # the first watermark day to publish rows at
        self._final = FinalPartials(self.views)
        self._batch: _Batch | None = None  # the batch a failed count() left, for its retry

    def final_lag(self) -> dict[str, int]:
        """Per view, how many days after the watermark its final rows' day is (delay + 1)."""
        return {v.name: v.delay_days + 1 for v in self.views}

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
        """Fold a batch (any partitions) into the store's partials; publishes nothing.

        After it raises, call it again with the same records: what the failed call applied is
        recognised and reported, never counted twice nor lost from the outcome.

        Raises:
            RetryableError: as :meth:`process`.
        """
        pending: dict[int, list[LabelRecord]] = {}
        for rec in records:
            pending.setdefault(rec.partition, []).append(rec)
        for recs in pending.values():
            recs.sort(key=lambda r: r.offset)  # partials fold in offset order
        key = frozenset((p, recs[0].offset, recs[-1].offset) for p, recs in pending.items())
        batch = self._batch if self._batch is not None and self._batch.key == key else None
        if batch is None:
            # First rows to publish: those whose window holds the earliest label this process
            # counts (earlier windows are empty: empty rows, which the reader infers from the
            # watermark) or, after a restart, a horizon before what was counted before it:
            # the rows of those days may not all have been published when it stopped.
            stored = self.store.partition_days() if self._first_complete is None else {}
            first = [d - self._horizon for d in stored.values() if d >= 0]
            future = FutureLimit.at(self.clock, self.max_future_s)
            batch = self._batch = _Batch(key, first, future)
        claimed = batch.claimed
        for _attempt in range(MAX_ATTEMPTS):
            # Offsets before partials: a partial read after them is at least as new, and an
            # update folded from a newer one than its expected offset is refused.
            applied = self.store.applied_offsets()
            for p, recs in pending.items():
                mine = claimed.get(p)
                if (
                    mine is None
                    or mine.update is None
                    or applied.get(p, -1) != mine.update.last_offset
                ):
                    claimed[p] = self._fold(p, recs, applied.get(p, -1), batch.future)
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
            # rebalance moved them): fold them again against what it left. A refused claim
            # stays: if the store now holds exactly its last offset, it was a lost reply's
            # update of ours applied late, and the next attempt recognises it.
            log.info("partitions %s moved on while counting; recounting", sorted(refused))
            pending = {p: pending[p] for p in refused}
        else:
            raise RetryableError(f"partitions {sorted(pending)} kept moving on while counting")
        self._batch = None
        outcome = BatchOutcome()
        first = batch.first_complete
        for c in claimed.values():
            if c.earliest_day is not None:
                first.append(c.earliest_day)
            outcome.counted += c.counted
            outcome.skipped += c.skipped
            outcome.dead_letters.extend(c.dead_letters)
        if first and self.published_complete is None:
            # Until the first publish, any partition may still bring an earlier label (the
            # first batch may hold only a partition whose labels start later).
            held = [] if self._first_complete is None else [self._first_complete]
            self._first_complete = min(first + held)
        return outcome

    def _fold(
        self, partition: int, recs: Sequence[LabelRecord], applied: int, future: FutureLimit
    ) -> _Counted:
        out = _Counted(update=None)
        old = [r for r in recs if r.offset <= applied]
        new = [r for r in recs if r.offset > applied]
        out.skipped = len(old)
        if old:
            # Counted already, but the batch that counted it may have stopped before its dead
            # letters were delivered (it was then never acknowledged): make them again. A
            # duplicate letter is at-least-once; a lost one is not allowed.
            _labels, refused = self.decoder.decode([r.value for r in old], future)
            out.dead_letters += [(old[i], reason) for i, reason in refused]
        if not new:
            return out
        labels, refused = self.decoder.decode([r.value for r in new], future)
        out.dead_letters += [(new[i], reason) for i, reason in refused]
        days = labels.days
        touched: set[PartialKey] = set()
        for name, (keys, _values) in labels.views.items():
            touched.update(zip(repeat(name), days, keys))
        partials: dict[PartialKey, Partial] = dict(self.store.partials_of(partition, touched))
        for name, (keys, values) in labels.views.items():
            # Each view's partials fold its labels one at a time, in offset order.
            for pk, x in zip(zip(repeat(name), days, keys), values, strict=True):
                partials[pk] = fold(partials.get(pk), x)
        if days:
            out.earliest_day = min(days)
        latest_day = max(days, default=-1)
        out.counted = len(labels)
        changed = {pk: partials[pk] for pk in touched}
        out.update = PartitionUpdate(partition, applied, new[-1].offset, changed, latest_day)
        return out

    def publish_ready(self, outcome: BatchOutcome | None = None) -> list[int]:
        """Publish rows for every day made final since the last call; returns those days
        (rows' days, of every view)."""
        days_by_partition = self.store.partition_days()
        complete = self.complete_through(days_by_partition)
        if complete is None:
            return []
        complete = self._bounded(complete)
        if self.published_complete is not None:
            first = self.published_complete + 1
        elif self._first_complete is not None:
            first = self._first_complete
        else:  # nothing counted by this process yet: a horizon before the stored progress
            first = min(d for d in days_by_partition.values() if d >= 0) - self._horizon
        marks = list(range(first, complete + 1))
        for lo in range(0, len(marks), PUBLISH_CHUNK_DAYS):
            chunk = marks[lo : lo + PUBLISH_CHUNK_DAYS]
            self._publish(chunk, last=lo + PUBLISH_CHUNK_DAYS >= len(marks))
        lags = sorted(set(self.final_lag().values()))
        days = sorted({c + lag for c in marks for lag in lags})
        if outcome is not None:
            outcome.published_days.extend(days)
        return days

    def _bounded(self, complete: int) -> int:
        """``complete`` held to the wall clock (a day that has not ended, with
        ``max_future_s`` of skew allowed, cannot be complete) and to ``max_step_days`` past
        the watermark this process last published."""
        now = FutureLimit.at(self.clock, self.max_future_s)
        bounded = min(complete, int(now.limit_s // SECONDS_PER_DAY) - 1)
        if self.published_complete is not None:
            bounded = min(bounded, self.published_complete + self.max_step_days)
        if bounded < complete:
            log.info("label watermark held at day %d (the labels say %d)", bounded, complete)
        return bounded

    def _publish(self, marks: Sequence[int], last: bool) -> None:
        # Every day these rows read is <= the complete day, so its partials are final: read
        # each from the store once, keep it while a later row still needs it.
        needed = range(marks[0] + 1 - self._window, marks[-1] + 1)
        missing = self._final.missing(needed)
        if missing:
            self._final.add(missing, self.store.day_partials(missing))
        rows: ViewRows = {}
        for view in self.views:
            got = self._final.rows(view, [c + view.delay_days + 1 for c in marks])
            if got:
                rows[view.name] = got
        # A chunk without rows (days before the first label) needs no call of its own: the
        # last chunk's watermark covers it.
        if rows or last:
            for sink in self.sinks:
                sink.publish(rows, marks[-1])
        self.published_complete = marks[-1]
        self._final.forget_before(marks[-1] + 2 - self._window)
        log.info(
            "published %d daily rows for watermark days %d..%d",
            sum(map(len, rows.values())),
            marks[0],
            marks[-1],
        )
