"""The label aggregator's watermark and publishing rules (SQLite store, no network)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.labels.aggregator import LabelRecord, PartialKey, PartitionUpdate
from stream_infer.labels.partials import Partial, fold
from stream_infer.labels.rows import StoredPartials
from stream_infer.labels.stores import SqliteLabelPartials

from .label_fixtures import FINAL_LAG, VIEW, Sink, aggregator, counts, counts_row

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
D0 = int(DAY0.timestamp()) // SECONDS_PER_DAY


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
    agg = aggregator(SqliteLabelPartials(tmp_path / "l.db"), [sink], partitions=2)
    agg.process([LabelRecord(0, 0, label(0, 0, "A", 1)), LabelRecord(0, 1, label(1, 1, "A", 0))])
    assert agg.complete_through() is None and not sink.complete  # partition 1 unseen
    out = agg.process([LabelRecord(1, 0, label(2, 1, "B", 0))])
    assert agg.complete_through() == D0  # both partitions are into day 1
    assert sink.complete == [D0]
    final = D0 + FINAL_LAG
    assert max(out.published_days) == final
    assert sink.rows[("A", final)] == counts_row({D0: (1, 1)}, final)
    assert ("B", final) not in sink.rows  # B has no labels on complete days yet


def test_redelivered_batch_is_not_counted_twice(tmp_path: Path) -> None:
    store = SqliteLabelPartials(tmp_path / "l.db")
    agg = aggregator(store, [Sink()], partitions=1)
    batch = [LabelRecord(0, i, label(i, 0, "A", i % 2)) for i in range(4)]
    agg.process(batch)
    again = agg.process(batch)
    assert again.skipped == 4 and again.counted == 0
    assert counts(store, [D0]) == {D0: {"A": (4, 2)}}


def test_bad_labels_are_dead_letters_and_still_advance(tmp_path: Path) -> None:
    store = SqliteLabelPartials(tmp_path / "l.db")
    agg = aggregator(store, [Sink()], partitions=1)
    out = agg.process([LabelRecord(0, 0, b"nope"), LabelRecord(0, 1, label(1, 0, "A", 0))])
    assert len(out.dead_letters) == 1
    assert out.dead_letters[0][1].startswith("not valid JSON")
    assert store.applied_offset(0) == 1


class Interleaved:
    """The shared store, with another processor's batch slipped in before our first apply."""

    def __init__(self, store: SqliteLabelPartials, meanwhile: Callable[[], object]) -> None:
        self.store = store
        self.meanwhile: Callable[[], object] | None = meanwhile

    def applied_offsets(self) -> dict[int, int]:
        return self.store.applied_offsets()

    def apply(self, updates: Sequence[PartitionUpdate]) -> set[int]:
        if self.meanwhile is not None:
            run, self.meanwhile = self.meanwhile, None
            run()
        return self.store.apply(updates)

    def partition_days(self) -> dict[int, int]:
        return self.store.partition_days()

    def partials_of(self, partition: int, keys: Iterable[PartialKey]) -> dict[PartialKey, Partial]:
        return self.store.partials_of(partition, keys)

    def day_partials(self, days: Iterable[int]) -> StoredPartials:
        return self.store.day_partials(days)


def test_a_partition_moved_on_meanwhile_is_recounted_not_double_counted(tmp_path: Path) -> None:
    batch = [LabelRecord(0, i, label(i, 0, "A", i % 2)) for i in range(8)]
    other = aggregator(SqliteLabelPartials(tmp_path / "l.db"), [Sink()], partitions=1)
    # The other processor (the partition's new owner) applies offsets 0..3 while we count 0..7.
    shared = Interleaved(SqliteLabelPartials(tmp_path / "l.db"), lambda: other.process(batch[:4]))
    ours = aggregator(shared, [Sink()], partitions=1)
    out = ours.process(batch)
    assert (out.counted, out.skipped) == (4, 4)  # recounted against offset 3
    assert counts(shared.store, [D0]) == {D0: {"A": (8, 4)}}
    assert shared.store.applied_offset(0) == 7


def test_a_stale_update_is_refused_by_the_store(tmp_path: Path) -> None:
    store = SqliteLabelPartials(tmp_path / "l.db")
    first = PartitionUpdate(0, -1, 3, {(VIEW, D0, "A"): _counted(4, 1)}, D0)
    assert store.apply([first]) == set()
    stale = PartitionUpdate(0, -1, 5, {(VIEW, D0, "A"): _counted(6, 1)}, D0 + 1)
    fresh = PartitionUpdate(1, -1, 0, {(VIEW, D0, "B"): _counted(1, 0)}, D0)
    assert store.apply([stale, fresh]) == {0}  # partition 1's update still applies
    assert counts(store, [D0]) == {D0: {"A": (4, 1), "B": (1, 0)}}
    assert store.partition_days() == {0: D0, 1: D0}
    assert store.applied_offsets() == {0: 3, 1: 0}


def test_a_partition_with_only_dead_letters_holds_the_watermark(tmp_path: Path) -> None:
    agg = aggregator(SqliteLabelPartials(tmp_path / "l.db"), [Sink()], partitions=2)
    agg.process([LabelRecord(0, 0, label(0, 1, "A", 0)), LabelRecord(1, 0, b"{broken")])
    assert agg.complete_through() is None
    agg.process([LabelRecord(1, 1, label(1, 2, "B", 0))])
    assert agg.complete_through() == D0


def test_catching_up_publishes_every_day_in_chunks(tmp_path: Path) -> None:
    sink = Sink()
    agg = aggregator(SqliteLabelPartials(tmp_path / "l.db"), [sink], partitions=1)
    records = [LabelRecord(0, d, label(d, d, f"T{d % 3}", int(d % 4 == 0))) for d in range(40)]
    agg.process(records)
    complete = D0 + 38
    assert sink.complete == sorted(sink.complete) and sink.complete[-1] == complete
    assert len(sink.complete) > 1  # more than one chunk of days carried rows
    daily: dict[str, dict[int, tuple[int, int]]] = {}
    for d in range(39):  # day 39 is not complete yet
        n, f = daily.setdefault(f"T{d % 3}", {}).get(D0 + d, (0, 0))
        daily[f"T{d % 3}"][D0 + d] = (n + 1, f + int(d % 4 == 0))
    want = {
        (t, day): counts_row(per, day)
        for t, per in daily.items()
        for day in range(D0, complete + FINAL_LAG + 1)
        if any(x in per for x in range(day - 37, day - 7))
    }
    assert sink.rows == want


def _counted(n: int, frauds: int) -> Partial:
    """The partial of ``n`` labels of which ``frauds`` are 1 (folded one at a time)."""
    p = None
    for i in range(n):
        p = fold(p, (1.0 if i < frauds else 0.0,))
    assert p is not None
    return p


def test_a_first_batch_of_a_later_partition_does_not_skip_earlier_rows(tmp_path: Path) -> None:
    sink = Sink()
    agg = aggregator(SqliteLabelPartials(tmp_path / "l.db"), [sink], partitions=2)
    agg.process([LabelRecord(1, 0, label(0, 5, "B", 0))])  # partition 1 starts on day 5
    agg.process([LabelRecord(0, 0, label(1, 0, "A", 1)), LabelRecord(0, 1, label(2, 6, "A", 0))])
    assert sink.complete[-1] == D0 + 4
    assert sink.rows[("A", D0 + FINAL_LAG)] == counts_row({D0: (1, 1)}, D0 + FINAL_LAG)
