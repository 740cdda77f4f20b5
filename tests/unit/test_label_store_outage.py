"""A failing label store: the aggregator's steps repeat safely, StoreRetry waits it out.

The store here is the real SQLite one wrapped by a fake that fails on cue (before an update,
or after it, as a Redis whose reply is lost does); no network.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

from stream_infer.errors import RetryableError, StoreUnavailableError
from stream_infer.labels.aggregator import LabelRecord, PartialKey, PartitionUpdate
from stream_infer.labels.app import StoreRetry
from stream_infer.labels.partials import Partial
from stream_infer.labels.rows import StoredPartials
from stream_infer.labels.stores import SqliteLabelPartials
from stream_infer.streamdef.daily_source import DailyRow

from .label_fixtures import FINAL_LAG, Sink, aggregator, counts, counts_row
from .test_label_aggregator import D0, label


class Flaky:
    """The SQLite store whose ``apply`` fails ``fail_applies`` times (after applying: a lost
    reply, if ``lost_reply``)."""

    def __init__(self, store: SqliteLabelPartials, fail_applies: int, lost_reply: bool) -> None:
        self.store = store
        self.fail_applies = fail_applies
        self.lost_reply = lost_reply

    def applied_offsets(self) -> dict[int, int]:
        return self.store.applied_offsets()

    def apply(self, updates: Sequence[PartitionUpdate]) -> set[int]:
        if self.fail_applies:
            self.fail_applies -= 1
            if self.lost_reply:
                self.store.apply(updates)
            raise StoreUnavailableError("timeout")
        return self.store.apply(updates)

    def partition_days(self) -> dict[int, int]:
        return self.store.partition_days()

    def partials_of(self, partition: int, keys: Iterable[PartialKey]) -> dict[PartialKey, Partial]:
        return self.store.partials_of(partition, keys)

    def day_partials(self, days: Iterable[int]) -> StoredPartials:
        return self.store.day_partials(days)


class FlakySink(Sink):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def publish(
        self, rows: Mapping[str, Mapping[tuple[str, int], DailyRow]], complete_through: int
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("sink down")
        super().publish(rows, complete_through)


def batch() -> list[LabelRecord]:
    good = [LabelRecord(0, i, label(i, i // 3, "A", i % 2)) for i in range(6)]
    return [*good, LabelRecord(0, 6, b"{broken"), LabelRecord(0, 7, label(7, 3, "A", 0))]


@pytest.mark.parametrize("lost_reply", [False, True], ids=["failed-before", "reply-lost"])
def test_a_repeated_count_reports_the_batch_once(tmp_path: Path, lost_reply: bool) -> None:
    flaky = Flaky(SqliteLabelPartials(tmp_path / "l.db"), fail_applies=2, lost_reply=lost_reply)
    agg = aggregator(flaky, [Sink()], partitions=1)
    for _ in range(2):
        with pytest.raises(StoreUnavailableError):
            agg.count(batch())
    out = agg.count(batch())
    assert (out.counted, out.skipped) == (7, 0)
    assert [rec.offset for rec, _ in out.dead_letters] == [6]  # not lost to "already counted"
    assert counts(flaky, [D0, D0 + 1, D0 + 2, D0 + 3]) == {
        D0: {"A": (3, 1)},
        D0 + 1: {"A": (3, 2)},
        D0 + 3: {"A": (1, 0)},
    }
    assert flaky.store.applied_offset(0) == 7
    # A re-delivery after the retry is still skipped, and makes its dead letter again: the
    # first may not have been delivered before the batch stopped (at least once).
    again = agg.count(batch())
    assert (again.counted, again.skipped) == (0, 8)
    assert [rec.offset for rec, _ in again.dead_letters] == [6]


def test_a_failed_publish_is_repeated_without_recounting(tmp_path: Path) -> None:
    sink = FlakySink(failures=1)
    agg = aggregator(SqliteLabelPartials(tmp_path / "l.db"), [sink], partitions=1)
    out = agg.count(batch())
    with pytest.raises(StoreUnavailableError):
        agg.publish_ready(out)
    days = agg.publish_ready(out)
    final = D0 + 2 + FINAL_LAG  # day 3 is the partition's latest: complete through day 2
    assert max(days) == final
    assert sink.rows[("A", final)] == counts_row({D0: (3, 1), D0 + 1: (3, 2)}, final)
    assert out.counted == 7


def test_store_retry_waits_out_an_outage_and_logs_it_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = iter([StoreUnavailableError("down")] * 5)

    def step() -> str:
        exc = next(failures, None)
        if exc is not None:
            raise exc
        return "applied"

    retry = StoreRetry(initial_s=0.001, max_s=0.004)
    with caplog.at_level(logging.WARNING, logger="stream_infer.labels.app"):
        assert retry.call(step) == "applied"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("label store unavailable (down)")
    assert messages[1].startswith("label store is back after") and "5 failed" in messages[1]
    assert not retry.store_down


def test_store_retry_gives_up_when_stopped() -> None:
    retry = StoreRetry(initial_s=30.0, max_s=30.0)  # a backoff far longer than the test
    attempts = threading.Semaphore(0)

    def step() -> None:
        attempts.release()
        raise StoreUnavailableError("still down")

    raised: list[BaseException] = []

    def run() -> None:
        try:
            retry.call(step)
        except RetryableError as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert attempts.acquire(timeout=10)  # it failed once and is in its backoff
    retry.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], StoreUnavailableError)
    assert retry.store_down


def test_store_retry_does_not_retry_other_errors() -> None:
    calls = []

    def step() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        StoreRetry(initial_s=0.001, max_s=0.001).call(step)
    assert calls == [1]
