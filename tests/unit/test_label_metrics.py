"""The label processor's metrics: counts per batch, rows per sink, the watermark and its delay
from what the terminal store published, store errors and the store-down gauge."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_infer.errors import StoreUnavailableError
from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.labels.aggregator import BatchOutcome, LabelRecord
from stream_infer.labels.metrics import LabelMetrics
from stream_infer.streamdef.daily_source import DailyRow


def samples(m: LabelMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def publish(
        self, rows: Mapping[str, Mapping[tuple[str, int], DailyRow]], complete_through: int
    ) -> None:
        self.calls.append((sum(len(r) for r in rows.values()), complete_through))


def test_batches_are_counted() -> None:
    m = LabelMetrics()
    rec = LabelRecord(0, 5, b"x")
    m.batch_applied(BatchOutcome(counted=7, skipped=2, dead_letters=[(rec, "bad")]))
    m.batch_applied(BatchOutcome(counted=3))
    got = samples(m)
    assert got[("stream_infer_labels_counted_total", ())] == 10
    assert got[("stream_infer_labels_skipped_total", ())] == 2
    assert got[("stream_infer_labels_dead_lettered_total", ())] == 1


def test_terminal_store_publishes_move_the_watermark() -> None:
    m = LabelMetrics()
    assert math.isnan(samples(m)[("stream_infer_labels_watermark_seconds", ())])
    assert math.isnan(samples(m)[("stream_infer_labels_watermark_delay_seconds", ())])
    store, feast = Sink(), Sink()
    counted_store = m.counting_rows(store, "terminal_store", watermark=True)
    counted_feast = m.counting_rows(feast, "FeastTerminalSink")
    day = 20_000
    row: DailyRow = (1.0, 0.0, 2.0, 1.0, 3.0, 1.0)
    counted_store.publish({"v": {("t1", day + 8): row}, "w": {("t2", day + 8): row}}, day)
    counted_feast.publish({"v": {("t1", day + 8): row}}, day)
    counted_feast.publish({}, day + 5)  # not the terminal store: no watermark move
    assert store.calls == [(2, day)] and feast.calls == [(1, day), (0, day + 5)]
    before = time.time()
    got = samples(m)
    after = time.time()
    assert got[("stream_infer_labels_rows_published_total", (("sink", "terminal_store"),))] == 2
    assert got[("stream_infer_labels_rows_published_total", (("sink", "FeastTerminalSink"),))] == 1
    watermark = (day + 1) * SECONDS_PER_DAY  # the end of the complete day
    assert got[("stream_infer_labels_watermark_seconds", ())] == watermark
    delay = got[("stream_infer_labels_watermark_delay_seconds", ())]
    assert before - watermark <= delay <= after - watermark
    counted_store.publish({}, day - 3)  # a late publish never moves it back
    assert samples(m)[("stream_infer_labels_watermark_seconds", ())] == watermark


def test_store_errors_are_counted_and_raised_on() -> None:
    m = LabelMetrics()
    attempts = iter([StoreUnavailableError("down"), StoreUnavailableError("down"), None])

    def step() -> str:
        exc = next(attempts)
        if exc is not None:
            raise exc
        return "applied"

    counted = m.counting_errors("count", step)
    for _ in range(2):
        with pytest.raises(StoreUnavailableError):
            counted()
    assert counted() == "applied"
    assert samples(m)[("stream_infer_labels_store_errors_total", (("op", "count"),))] == 2


def test_store_down_is_read_at_scrape_time() -> None:
    m = LabelMetrics()
    down = [False]
    m.watch_store(lambda: down[0])
    assert samples(m)[("stream_infer_labels_store_down", ())] == 0
    down[0] = True
    assert samples(m)[("stream_infer_labels_store_down", ())] == 1


def test_registry_has_the_runtime_collectors() -> None:
    names = {n for n, _ in samples(LabelMetrics())}
    assert {"process_cpu_seconds_total", "python_gc_collections_total", "python_info"} <= names
