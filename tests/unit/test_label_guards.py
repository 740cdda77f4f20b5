"""One badly dated label cannot publish rows early, and the label processor's dead letters are
bounded and delivered before their batch may be acked (no network: SQLite store, fake
producer)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_infer.dead_letters import DEFAULT_MAX_BYTES, DEFAULT_PREFIX_BYTES
from stream_infer.errors import DeliveryError
from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.labels.aggregator import LabelAggregator, LabelRecord
from stream_infer.labels.letters import DeadLetterSender, letters_of
from stream_infer.labels.stores import SqliteLabelPartials
from stream_infer.records import Headers

from .label_fixtures import FINAL_LAG, Sink
from .label_fixtures import aggregator as fraud_aggregator

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
D0 = int(DAY0.timestamp()) // SECONDS_PER_DAY
NOW = datetime(2026, 4, 1, 12, tzinfo=UTC).timestamp()
TODAY = int(NOW) // SECONDS_PER_DAY


def label(i: int, when: datetime, terminal: str = "A", fraud: int = 0) -> bytes:
    return orjson.dumps(
        {
            "transaction_id": i,
            "tx_datetime": when.isoformat(),
            "terminal_id": terminal,
            "tx_fraud": fraud,
        }
    )


def days(n: int, first: int = 0) -> list[LabelRecord]:
    return [
        LabelRecord(0, i, label(i, DAY0 + timedelta(days=first + i), fraud=i % 2)) for i in range(n)
    ]


def aggregator(tmp_path: Path, sink: Sink, **kw: Any) -> LabelAggregator:
    return fraud_aggregator(
        SqliteLabelPartials(tmp_path / "l.db"), [sink], partitions=1, clock=lambda: NOW, **kw
    )


def test_a_future_label_is_a_dead_letter_and_moves_no_watermark(tmp_path: Path) -> None:
    with_it, without = Sink(), Sink()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = aggregator(tmp_path / "a", with_it)
    b = aggregator(tmp_path / "b", without)
    batch = days(10)
    bad = LabelRecord(0, 10, label(10, datetime(2999, 1, 1, tzinfo=UTC)), b"A")
    rest = [LabelRecord(0, 11 + r.offset, r.value) for r in days(3, first=10)]
    out = a.process([*batch, bad])
    a.process(rest)
    b.process(batch)
    b.process(rest)
    assert [reason for _rec, reason in out.dead_letters] == [
        "event from the future: tx_datetime 2999-01-01T00:00:00Z is 973 years ahead of the "
        "wall clock (events.max_future_s=3600)"
    ]
    assert a.complete_through() == D0 + 11
    assert with_it.complete == without.complete == [D0 + 6, D0 + 8, D0 + 11]
    assert with_it.rows == without.rows and with_it.rows


def test_the_watermark_never_passes_the_wall_clock(tmp_path: Path) -> None:
    # Labels counted under another clock (an older version, a skewed host) say days past
    # today are complete; a processor on this clock publishes no further than yesterday.
    future = datetime.fromtimestamp(NOW, tz=UTC) + timedelta(days=5)
    skewed = fraud_aggregator(
        SqliteLabelPartials(tmp_path / "l.db"), [Sink()], 1, clock=lambda: NOW + 10 * 86400
    )
    skewed.count([*days(3), LabelRecord(0, 3, label(3, future))])
    sink = Sink()
    agg = aggregator(tmp_path, sink, max_step_days=10_000)
    agg.publish_ready()
    assert agg.complete_through() == TODAY + 4  # what the partition's labels say
    assert sink.complete[-1] == TODAY - 1  # what was published


def test_one_publish_moves_the_watermark_at_most_the_step(tmp_path: Path) -> None:
    sink = Sink()
    agg = aggregator(tmp_path, sink, max_step_days=2)
    agg.process(days(3))
    assert sink.complete == [D0 + 1]
    # One label 20 days ahead of the stream (still in the past): one step per publish.
    jump = LabelRecord(0, 3, label(3, DAY0 + timedelta(days=22)))
    out = agg.process([jump])
    assert sink.complete[-1] == D0 + 3
    assert max(out.published_days) == D0 + 3 + FINAL_LAG
    agg.process([LabelRecord(0, 4, label(4, DAY0 + timedelta(days=22, hours=1)))])
    assert sink.complete[-1] == D0 + 5


class FakeProducer:
    """Acknowledges each produced record, except the first ``fail`` deliveries (an error in
    the delivery report) and the first ``refuse`` produce() calls (BufferError)."""

    def __init__(self, fail: int = 0, buffer_full: int = 0) -> None:
        self.fail = fail
        self.buffer_full = buffer_full
        self.delivered: list[tuple[str, bytes | None, bytes | None]] = []
        self._queued: list[tuple[Callable[[Any, Any], None], tuple[str, Any, Any]]] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: Headers | None = None,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None:
        if self.buffer_full:
            self.buffer_full -= 1
            raise BufferError("queue full")
        assert on_delivery is not None
        self._queued.append((on_delivery, (topic, value, key)))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        for report, record in self._queued:
            if self.fail:
                self.fail -= 1
                report("_TIMED_OUT", None)
            else:
                self.delivered.append(record)
                report(None, None)
        self._queued.clear()
        return 0


def _letters(n: int) -> list[Any]:
    dead = [
        (LabelRecord(0, i, b"{bad" + bytes([48 + i]), b"k"), "not valid JSON") for i in range(n)
    ]
    return letters_of(dead, "transaction-labels", DEFAULT_MAX_BYTES, DEFAULT_PREFIX_BYTES)


def test_failed_deliveries_are_produced_again_until_acknowledged() -> None:
    producer = FakeProducer(fail=2, buffer_full=1)
    sender = DeadLetterSender(producer, "dlq", retry_initial_s=0.001, retry_max_s=0.01)
    letters = _letters(3)
    sender.deliver(letters)
    assert sorted(v or b"" for _t, v, _k in producer.delivered) == sorted(
        x.value or b"" for x in letters
    )
    assert {t for t, _v, _k in producer.delivered} == {"dlq"}


def test_a_stop_while_undelivered_raises_so_the_batch_is_never_acked() -> None:
    producer = FakeProducer(fail=10**9)
    sender = DeadLetterSender(producer, "dlq", retry_initial_s=0.01, retry_max_s=0.05)
    threading.Timer(0.2, sender.stop).start()
    with pytest.raises(DeliveryError):
        sender.deliver(_letters(1))
    assert not producer.delivered


def test_an_oversized_label_makes_a_bounded_letter() -> None:
    huge = b'{"transaction_id": 1, "pad": "' + b"x" * 1_000_000 + b'"'
    (letter,) = letters_of(
        [(LabelRecord(3, 9, huge, b"T1"), "not valid JSON")], "labels", 8192, 2048
    )
    assert letter.size() <= 8192
    body = orjson.loads(letter.value)
    assert body["original_truncated"] is True
    assert body["original_size"] == len(huge)
    assert (body["source_partition"], body["source_offset"]) == (3, 9)
