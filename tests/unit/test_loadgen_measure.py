"""The measurement math: accounting, percentiles, per-second series, collection, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.accounting import IdTally, account, parse_id
from loadgen.latency import per_second, percentiles
from loadgen.measure import MeasureOptions, ScoreCollector, collect
from loadgen.report import build_report, write_chart, write_json
from stream_infer.events import INTENDED_SEND_HEADER

from .fakes import FakeRecord

NS = 1_000_000_000


def test_accounting_detects_missing_duplicated_and_unexpected() -> None:
    seen = [str(i) for i in range(100) if i not in (3, 42, 77)]
    seen += ["5", "5", "5", "60", "1000", "tx-abc", "-1"]
    acc = account(range(100), seen)
    assert (acc.sent, acc.scored, acc.missing) == (100, 97, 3)
    assert acc.missing_sample == (3, 42, 77)
    assert (acc.duplicated, acc.duplicate_records) == (2, 4)
    assert acc.duplicated_sample == (5, 60)
    assert acc.unexpected == 3  # 1000 was not sent; "tx-abc" and "-1" are not loadgen ids
    assert not acc.complete
    assert account([1, 2], ["1", "2"]).complete


def test_tally_is_incremental_and_counts_repeats_within_a_batch() -> None:
    tally = IdTally(np.array([10, 20, 30], dtype=np.int64))
    tally.add(np.array([20, 20], dtype=np.int64))
    assert tally.distinct_seen == 1 and not tally.complete
    tally.add(np.array([10, 99, 30], dtype=np.int64))
    assert tally.complete
    result = tally.result()
    assert (result.duplicated, result.duplicate_records, result.unexpected) == (1, 1, 1)


def test_parse_id() -> None:
    assert parse_id("17") == 17 and parse_id(17) == 17
    assert parse_id("x1") is None and parse_id(True) is None and parse_id("٣") is None


def test_percentiles_nearest_rank() -> None:
    p = percentiles(np.arange(1, 101, dtype=np.float64))
    assert (p["p50"], p["p90"], p["p99"], p["p99.9"], p["max"]) == (50, 90, 99, 100, 100)
    assert p["count"] == 100 and p["mean"] == 50.5
    one = percentiles(np.array([7.0]))
    assert one["p50"] == one["p99.9"] == one["max"] == 7.0
    empty = percentiles(np.zeros(0))
    assert empty["count"] == 0 and empty["p99"] is None and empty["max"] is None
    p = percentiles(np.arange(1, 1001, dtype=np.float64))
    assert (p["p99"], p["p99.9"]) == (990, 999)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300))
def test_percentiles_match_the_definition(values: list[float]) -> None:
    ordered = sorted(values)
    p = percentiles(np.asarray(values))
    for q, key in ((50, "p50"), (90, "p90"), (99, "p99"), (99.9, "p99.9")):
        # smallest sample with at least q % of the samples at or below it
        want = next(v for v in ordered if sum(x <= v for x in ordered) >= q / 100 * len(ordered))
        assert p[key] == want
    assert p["max"] == ordered[-1]


def test_per_second_buckets_include_empty_seconds() -> None:
    origin = 100 * NS
    received = np.array([100, 100, 100, 102, 102, 99], dtype=np.int64) * NS + 5
    latency = np.array([1.0, 3.0, 2.0, 10.0, 20.0, 4.0])
    series = per_second(received, latency, origin)
    assert series.second.tolist() == [0, 1, 2]
    assert series.count.tolist() == [4, 0, 2]  # the early one falls in second 0
    assert series.p50[0] == 2.0 and series.p99[0] == 4.0 and series.max[2] == 20.0
    assert np.isnan(series.p50[1])
    assert series.as_dict()["p50_ms"] == [2.0, None, 10.0]
    assert len(per_second(np.zeros(0, np.int64), np.zeros(0), 0).second) == 0


def score(tid: object, intended_ns: int | None, ts_ms: int = 0, latency: float = 1.5) -> FakeRecord:
    headers = None if intended_ns is None else [(INTENDED_SEND_HEADER, str(intended_ns).encode())]
    value = orjson.dumps({"transaction_id": tid, "scored_at": "x", "latency_ms": latency})
    return FakeRecord(value, _headers=headers, _ts=(1, ts_ms))


def test_collector_latency_fallback_and_skips() -> None:
    since = 1_000 * NS
    collector = ScoreCollector(since, np.arange(5, dtype=np.int64))
    received = 1_010 * NS
    kept = collector.add(
        [
            score("0", 1_009 * NS),  # 1 s
            score("1", None, ts_ms=1_009_500),  # no header: Kafka timestamp, 0.5 s
            score("2", 999 * NS),  # an earlier run's: skipped
            FakeRecord(b"{not json"),
            score("tx-9", 1_009 * NS),  # not a loadgen id: unexpected
            score("1", 1_008 * NS),  # duplicate
        ],
        received,
    )
    assert kept == 3
    m = collector.result(since, 1.0, "idle")
    assert m.latency_ms.tolist() == [1000.0, 500.0, 2000.0]
    assert (m.header_fallbacks, m.skipped_old, m.undecodable) == (1, 1, 1)
    assert m.accounting is not None
    assert (m.accounting.missing, m.accounting.duplicated, m.accounting.unexpected) == (3, 1, 1)
    summary = m.summary()
    assert summary["latency_ms"]["max"] == 2000.0
    assert summary["service_latency_ms"]["p50"] == 1.5
    assert summary["throughput"]["per_second"]["count"][10] == 3


def test_fallback_timestamps_are_compared_at_millisecond_resolution() -> None:
    since = 1_000 * NS + 400_000  # 0.4 ms into a millisecond
    collector = ScoreCollector(since)
    # Produced in the same millisecond as `since`: its Kafka timestamp (whole ms) is earlier
    # than `since` in ns, but it belongs to this run.
    kept = collector.add([score("1", None, ts_ms=1_000_000), score("2", None, ts_ms=999_999)], 0)
    assert kept == 1 and collector.skipped_old == 1


class FakeConsumer:
    def __init__(self, batches: list[list[FakeRecord]]) -> None:
        self.batches = batches

    def consume(self, n: int, timeout: float) -> list[FakeRecord]:
        return self.batches.pop(0) if self.batches else []


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0  # each loop turn "takes" a second
        return self.now


def test_collect_stops_when_every_expected_id_is_scored() -> None:
    clock = Clock()
    collector = ScoreCollector(None, np.array([1, 2], dtype=np.int64), clock=clock)
    consumer = FakeConsumer([[score("1", 1)], [], [score("2", 1)], [score("3", 1)]])
    reason = collect(consumer, collector, MeasureOptions("s", idle_timeout_s=10), clock=clock)
    assert reason == "complete" and consumer.batches == [[score("3", 1)]]


def test_idle_timeout_waits_for_the_expected_ids() -> None:
    clock = Clock()
    collector = ScoreCollector(None, awaiting_expected=True, clock=clock)
    calls: list[Any] = []

    def on_batch(c: ScoreCollector) -> None:
        calls.append(c.progress())

    consumer = FakeConsumer([[score("1", 1)]] + [[] for _ in range(30)])
    options = MeasureOptions("s", idle_timeout_s=5, max_wait_s=20)
    # Never told what to expect: idleness does not count, the hard cap stops it.
    assert collect(consumer, collector, options, clock=clock, on_batch=on_batch) == "timeout"
    assert calls == [(1, None)]
    collector.expect(np.array([1, 2], dtype=np.int64))  # backlog matched now
    assert collector.progress() == (1, 2)
    consumer = FakeConsumer([])
    assert (
        collect(consumer, collector, MeasureOptions("s", idle_timeout_s=5), clock=clock) == "idle"
    )
    m = collector.result(0, 1.0, "idle")
    assert m.accounting is not None and m.accounting.missing_sample == (2,)


def test_report_json_and_chart(tmp_path: Path) -> None:
    collector = ScoreCollector(0, np.arange(3, dtype=np.int64))
    collector.add([score("0", 1 * NS), score("1", 1 * NS)], 2 * NS)
    collector.add([score("1", 2 * NS)], 4 * NS)
    m = collector.result(0, 4.0, "idle")
    report = build_report(m, {"transactions_sent": 3}, {"command": "test"})
    assert report["meta"] == {"command": "test"} and report["replay"]["transactions_sent"] == 3
    assert report["accounting"]["missing_sample"] == ["2"]
    assert report["accounting"]["duplicated_sample"] == ["1"]
    path = write_json(report, tmp_path / "out" / "r.json")
    assert orjson.loads(path.read_bytes())["latency_ms"]["p50"] == 1000.0
    png = write_chart(m, tmp_path / "out" / "c.png", target_rate=2.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = ScoreCollector(0).result(0, 0.0, "idle")
    assert write_chart(empty, tmp_path / "e.png").exists()
