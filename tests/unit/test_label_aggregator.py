"""The label aggregator's watermark and publishing rules (SQLite store, no network)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from stream_infer.features.definitions import SECONDS_PER_DAY, terminal_features
from stream_infer.features.online import TerminalRow
from stream_infer.labels.aggregator import FINAL_LAG, LabelAggregator, LabelRecord
from stream_infer.labels.stores import SqliteLabelCounts

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
D0 = int(DAY0.timestamp()) // SECONDS_PER_DAY


class Sink:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], TerminalRow] = {}
        self.complete: list[int] = []

    def publish(self, rows: Mapping[tuple[str, int], TerminalRow], complete_through: int) -> None:
        self.rows.update(rows)
        self.complete.append(complete_through)


def label(i: int, day: int, terminal: str, fraud: int) -> bytes:
    when = DAY0 + timedelta(days=day, seconds=i)
    return orjson.dumps(
        {
            "transaction_id": i,
            "tx_datetime": when.isoformat(),
            "terminal_id": terminal,
            "tx_fraud": fraud,
        }
    )


def test_rows_publish_once_every_partition_passed_the_day(tmp_path: Path) -> None:
    sink = Sink()
    agg = LabelAggregator(SqliteLabelCounts(tmp_path / "l.db"), [sink], partitions=2)
    agg.process([LabelRecord(0, 0, label(0, 0, "A", 1)), LabelRecord(0, 1, label(1, 1, "A", 0))])
    assert agg.complete_through() is None and not sink.complete  # partition 1 unseen
    out = agg.process([LabelRecord(1, 0, label(2, 1, "B", 0))])
    assert agg.complete_through() == D0  # both partitions are into day 1
    assert sink.complete == [D0]
    final = D0 + FINAL_LAG
    assert max(out.published_days) == final
    assert sink.rows[("A", final)] == terminal_features({D0: (1, 1)}, final)
    assert ("B", final) not in sink.rows  # B has no labels on complete days yet


def test_redelivered_batch_is_not_counted_twice(tmp_path: Path) -> None:
    counts = SqliteLabelCounts(tmp_path / "l.db")
    agg = LabelAggregator(counts, [Sink()], partitions=1)
    batch = [LabelRecord(0, i, label(i, 0, "A", i % 2)) for i in range(4)]
    agg.process(batch)
    again = agg.process(batch)
    assert again.skipped == 4 and again.counted == 0
    assert counts.counts([D0]) == {D0: {"A": (4, 2)}}


def test_bad_labels_are_dead_letters_and_still_advance(tmp_path: Path) -> None:
    counts = SqliteLabelCounts(tmp_path / "l.db")
    agg = LabelAggregator(counts, [Sink()], partitions=1)
    out = agg.process([LabelRecord(0, 0, b"nope"), LabelRecord(0, 1, label(1, 0, "A", 0))])
    assert len(out.dead_letters) == 1
    assert out.dead_letters[0][1].startswith("not valid JSON")
    assert counts.applied_offset(0) == 1
