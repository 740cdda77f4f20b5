"""The replayer against an in-memory producer: headers, keys, bounds, delivery errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from loadgen.replay import ReplayOptions, producer_settings, replay
from loadgen.stream import Dataset
from stream_infer.events import INTENDED_SEND_HEADER


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class FakeMsg:
    def __init__(self, topic: str, value: bytes) -> None:
        self._topic, self._value = topic, value

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value


class FakeProducer:
    """Records produce() calls; poll(t) advances the fake clock; can fail or fill up."""

    def __init__(self, clock: FakeClock, fail_ids: set[str], full_every: int = 0) -> None:
        self.clock = clock
        self.fail_ids = fail_ids
        self.full_every = full_every
        self.sent: list[dict[str, Any]] = []
        self.pending: list[tuple[Callable[[Any, Any], None], str, bytes]] = []
        self.config: dict[str, Any] = {}
        self.calls = 0
        self.stall_on: dict[int, float] = {}

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None:
        self.calls += 1
        if self.full_every and self.calls % self.full_every == 0:
            raise BufferError("queue full")
        self.sent.append(
            {"topic": topic, "value": value, "key": key, "headers": headers, "at": self.clock.now}
        )
        self.clock.now += self.stall_on.get(len(self.sent), 0.0)
        assert on_delivery is not None
        self.pending.append((on_delivery, topic, value))

    def poll(self, timeout: float) -> int:
        self.clock.now += timeout
        for cb, topic, value in self.pending:
            tid = orjson.loads(value)["transaction_id"]
            err = "boom" if topic == "tx" and tid in self.fail_ids else None
            cb(err, FakeMsg(topic, value))
        n, self.pending = len(self.pending), []
        return n

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> None:
        return None


def dataset(n: int = 40, step_s: int = 3600) -> Dataset:
    times = pd.Timestamp("2018-04-01") + pd.to_timedelta(np.arange(n) * step_s, "s")
    return Dataset.from_frame(
        pd.DataFrame(
            {
                "transaction_id": np.arange(n),
                "tx_datetime": times,
                "customer_id": np.arange(n) % 4,
                "terminal_id": np.arange(n) % 5 + 100,
                "tx_amount": np.full(n, 10.5),
                "tx_fraud": np.arange(n) % 2,
            }
        )
    )


def run(
    data: Dataset,
    fail_ids: set[str] | None = None,
    full_every: int = 0,
    stall_on: dict[int, float] | None = None,
    **kw: Any,
) -> tuple[Any, FakeProducer, FakeClock]:
    clock = FakeClock()
    holder: list[FakeProducer] = []

    def factory(config: dict[str, Any]) -> FakeProducer:
        p = FakeProducer(clock, fail_ids or set(), full_every)
        p.config = config
        p.stall_on = stall_on or {}
        holder.append(p)
        return p

    options = ReplayOptions(transactions_topic="tx", labels_topic="lab", **kw)
    result = replay(
        data,
        options,
        {"bootstrap.servers": "x"},
        progress=False,
        clock=clock,
        producer_factory=factory,
    )
    return result, holder[0], clock


def intended(sent: dict[str, Any]) -> int:
    headers = dict(sent["headers"])
    return int(headers[INTENDED_SEND_HEADER].decode("ascii"))


def test_every_transaction_and_label_is_sent_with_keys_and_header() -> None:
    result, producer, _ = run(dataset(), label_delay_s=7 * 3600)
    txs = [s for s in producer.sent if s["topic"] == "tx"]
    labels = [s for s in producer.sent if s["topic"] == "lab"]
    assert result.transactions_sent == len(txs) == 40 and result.labels_sent == len(labels) == 40
    assert [orjson.loads(s["value"])["transaction_id"] for s in txs] == [str(i) for i in range(40)]
    assert all(s["key"] == orjson.loads(s["value"])["customer_id"].encode() for s in txs)
    assert all(s["key"] == orjson.loads(s["value"])["terminal_id"].encode() for s in labels)
    assert all(s["headers"] is None for s in labels)
    assert all(intended(s) > 0 for s in txs)
    # Merged order: label of tx i (at t_i + 7 h) goes after tx i + 7.
    first_label = next(k for k, s in enumerate(producer.sent) if s["topic"] == "lab")
    assert first_label == 8
    assert result.sent_ids.tolist() == list(range(40)) and result.delivery_errors == 0
    assert producer.config["enable.idempotence"] is True and producer.config["linger.ms"] == 5


def test_rate_schedule_is_open_loop_in_the_headers_and_the_sends() -> None:
    # A 2-second stall at the 5th send: later intended times stay on the grid and the
    # overdue sends go out at once.
    result, producer, _ = run(dataset(40), rate=10.0, labels="none", stall_on={5: 2.0})
    txs = producer.sent
    base = intended(txs[0])
    assert [intended(s) - base for s in txs] == [i * 100_000_000 for i in range(40)]
    start = txs[0]["at"]
    sent_at = [round(s["at"] - start, 6) for s in txs]
    assert sent_at[:5] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert sent_at[5:25] == [2.4] * 20  # due 0.5 .. 2.4: overdue, sent back to back
    assert sent_at[25:] == [round(i / 10, 6) for i in range(25, 40)]  # back on the grid
    assert result.max_behind_s == pytest.approx(1.9)
    assert result.target_rate == 10.0


def test_time_scale_follows_event_time() -> None:
    _, producer, _ = run(dataset(5, step_s=3600), time_scale=3600.0, labels="none")
    start = producer.sent[0]["at"]
    assert [round(s["at"] - start, 6) for s in producer.sent] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_count_and_duration_bound_the_replay() -> None:
    result, producer, _ = run(dataset(), count=7, labels="none")
    assert result.transactions_sent == 7 and len(producer.sent) == 7
    result, producer, _ = run(dataset(), rate=10.0, duration_s=1.0, labels="none")
    assert result.transactions_sent == 10 and result.stopped_by == "duration"
    assert result.sent_ids.tolist() == list(range(10))


def test_delivery_errors_are_counted_never_raised_and_backpressure_retries() -> None:
    result, producer, _ = run(dataset(12), fail_ids={"3", "8"}, full_every=5, labels="none")
    assert result.delivery_errors == 2 and result.error_samples == ["boom", "boom"]
    assert sorted(result.failed_ids) == [3, 8]
    assert 3 not in result.sent_ids and 8 not in result.sent_ids
    assert result.sent_ids.tolist() == [i for i in range(12) if i not in (3, 8)]
    assert len(producer.sent) == 12  # BufferError was retried, nothing dropped


def test_shift_to_now_restamps_the_first_event_to_now() -> None:
    _, producer, _ = run(dataset(3), shift_to_now=True, labels="none")
    first = pd.Timestamp(orjson.loads(producer.sent[0]["value"])["tx_datetime"])
    assert abs((pd.Timestamp.now(tz="UTC") - first).total_seconds()) < 5


def test_options_validate_and_producer_settings_keep_overrides() -> None:
    with pytest.raises(ValueError, match="not both"):
        ReplayOptions("a", "b", rate=1.0, time_scale=2.0)
    with pytest.raises(ValueError, match="duration"):
        ReplayOptions("a", "b", duration_s=0)
    cfg = producer_settings({"bootstrap.servers": "h:1", "linger.ms": 50})
    assert cfg["linger.ms"] == 50 and cfg["acks"] == "all"
