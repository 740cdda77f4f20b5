"""Transport-free core of the label processor.

Labels arrive 7 days after their transaction, keyed by terminal. Per input partition they come
in event-time order, so once a partition has shown a label of day d + 1, its labels of day d
are all in. The global watermark (the last complete day) is the minimum over every partition
of the topic. Once day C is complete, every terminal's row for day D = C + 8 is final (it reads
days [D - 37, D - 7), all <= C) and is published.

Counts are applied idempotently by partition offset (the store skips offsets it has applied),
so a restart, a rebalance or a re-delivered batch never counts a label twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stream_infer.errors import DeadLetterError
from stream_infer.events import decode_label
from stream_infer.features.definitions import (
    LABEL_DELAY_DAYS,
    SECONDS_PER_DAY,
    TERMINAL_HORIZON_DAYS,
    terminal_features,
)
from stream_infer.features.online import TerminalRow

log = logging.getLogger(__name__)
#: A row for day D is final once day D - FINAL_LAG is complete.
FINAL_LAG = LABEL_DELAY_DAYS + 1


class LabelCountStore(Protocol):
    """Durable per-(terminal, day) counts and per-partition progress."""

    def applied_offset(self, partition: int) -> int:
        """The last offset of ``partition`` whose label is counted (-1: none)."""
        ...

    def apply(
        self,
        partition: int,
        last_offset: int,
        increments: Mapping[tuple[int, str], tuple[int, int]],
        partition_day: int,
    ) -> None:
        """Add ``increments`` ((day, terminal) -> (transactions, frauds)), set the partition's
        applied offset and its latest label day, atomically."""
        ...

    def partition_days(self) -> dict[int, int]:
        """Per partition, the day of the latest label counted."""
        ...

    def counts(self, days: Iterable[int]) -> dict[int, dict[str, tuple[int, int]]]:
        """Counts for ``days``: ``{day: {terminal: (transactions, frauds)}}``."""
        ...


class RowSink(Protocol):
    """Where final terminal rows go (the terminal store; optionally Feast's online store)."""

    def publish(
        self, rows: Mapping[tuple[str, int], TerminalRow], complete_through: int
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """One record from the labels topic."""

    partition: int
    offset: int
    value: bytes | None


@dataclass
class BatchOutcome:
    counted: int = 0
    skipped: int = 0
    dead_letters: list[tuple[LabelRecord, str]] = field(default_factory=list)
    published_days: list[int] = field(default_factory=list)


class LabelAggregator:
    """Counts labels and publishes final terminal rows (see the module docstring)."""

    def __init__(self, store: LabelCountStore, sinks: Sequence[RowSink], partitions: int) -> None:
        self.store = store
        self.sinks = list(sinks)
        self.partitions = partitions
        self.published_through: int | None = None  # last day D whose rows are out

    def complete_through(self) -> int | None:
        """The last day whose labels are all in, over every partition (None: unknown)."""
        days = self.store.partition_days()
        if len(days) < self.partitions:
            return None
        # A partition's latest day may still be receiving labels: complete is the day before.
        return min(days.values()) - 1

    def process(self, records: Sequence[LabelRecord]) -> BatchOutcome:
        """Count a batch (any partitions) and publish the rows it made final."""
        outcome = BatchOutcome()
        by_partition: dict[int, list[LabelRecord]] = {}
        for rec in records:
            by_partition.setdefault(rec.partition, []).append(rec)
        for partition, recs in by_partition.items():
            self._count(partition, recs, outcome)
        self.publish_ready(outcome)
        return outcome

    def _count(self, partition: int, recs: list[LabelRecord], outcome: BatchOutcome) -> None:
        done = self.store.applied_offset(partition)
        increments: dict[tuple[int, str], tuple[int, int]] = {}
        latest_day = -1
        last_offset = done
        for rec in recs:
            if rec.offset <= done:
                outcome.skipped += 1
                continue
            last_offset = max(last_offset, rec.offset)
            try:
                label = decode_label(rec.value)
            except DeadLetterError as exc:
                outcome.dead_letters.append((rec, exc.reason))
                continue
            day = int(label.tx_datetime.timestamp()) // SECONDS_PER_DAY
            n, f = increments.get((day, label.terminal_id), (0, 0))
            increments[(day, label.terminal_id)] = (n + 1, f + label.tx_fraud)
            latest_day = max(latest_day, day)
            outcome.counted += 1
        if last_offset > done:
            previous = self.store.partition_days().get(partition, -1)
            self.store.apply(partition, last_offset, increments, max(previous, latest_day))

    def publish_ready(self, outcome: BatchOutcome | None = None) -> list[int]:
        """Publish rows for every day made final since the last call; returns those days."""
        complete = self.complete_through()
        if complete is None:
            return []
        last_final = complete + FINAL_LAG
        if self.published_through is not None and last_final <= self.published_through:
            return []
        first = (
            self.published_through + 1
            if self.published_through is not None
            else self._first_day() + FINAL_LAG
        )
        days = list(range(first, last_final + 1))
        if not days:
            return []
        needed = range(days[0] - TERMINAL_HORIZON_DAYS, days[-1] - LABEL_DELAY_DAYS)
        counts = self.store.counts(needed)
        per_terminal: dict[str, dict[int, tuple[int, int]]] = {}
        for day, terminals in counts.items():
            for terminal, c in terminals.items():
                per_terminal.setdefault(terminal, {})[day] = c
        rows: dict[tuple[str, int], TerminalRow] = {}
        for d in days:
            window = range(d - TERMINAL_HORIZON_DAYS, d - LABEL_DELAY_DAYS)
            for terminal, daily in per_terminal.items():
                if any(x in daily for x in window):
                    rows[(terminal, d)] = terminal_features(daily, d)
        for sink in self.sinks:
            sink.publish(rows, complete)
        self.published_through = last_final
        if outcome is not None:
            outcome.published_days.extend(days)
        log.info("published %d terminal rows for days %d..%d", len(rows), days[0], days[-1])
        return days

    def _first_day(self) -> int:
        days = self.store.partition_days()
        # Rows before the first labelled day are all zeros: the reader knows that from the
        # watermark, so start one horizon before the earliest partition day we know of.
        return min(days.values()) - TERMINAL_HORIZON_DAYS if days else 0
