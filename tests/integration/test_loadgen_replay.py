"""loadgen replay on a real broker: every transaction once, per-customer order, headers, labels."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pandas as pd
import pytest

from loadgen.replay import ReplayOptions, replay
from loadgen.simulator import SimulationConfig, generate
from loadgen.stream import Dataset
from stream_infer.config import Settings
from stream_infer.events import INTENDED_SEND_HEADER, decode_label, decode_transaction

from .conftest import make_test_settings
from .kafka_io import read_topic, setup_topics


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(SimulationConfig(60, 120, 10, seed=3), progress=False)


def _options(settings: Settings, **kw: object) -> ReplayOptions:
    return ReplayOptions(settings.topics.transactions, settings.topics.labels, **kw)  # type: ignore[arg-type]


def _header(msg: object) -> int:
    headers = dict(msg.headers() or [])  # type: ignore[attr-defined]
    return int(headers[INTENDED_SEND_HEADER].decode("ascii"))


def test_replay_sends_every_transaction_once_in_customer_order_with_labels(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, frame: pd.DataFrame
) -> None:
    settings = make_test_settings(base_settings, kafka_bootstrap, tmp_path)
    setup_topics(settings)
    n = len(frame)
    result = replay(
        Dataset.from_frame(frame),
        _options(settings, label_delay_s=2 * 86_400),
        settings.kafka.client_config(),
        progress=False,
    )
    assert result.delivery_errors == 0 and result.stopped_by == "end"
    assert (result.transactions_sent, result.labels_sent) == (n, n)
    assert result.sent_ids.tolist() == frame["transaction_id"].tolist()

    txs = read_topic(settings, settings.topics.transactions, lambda r: len(r) >= n, idle_s=0.5)
    ids = Counter(orjson.loads(m.value())["transaction_id"] for m in txs)
    assert len(txs) == n and set(ids) == {str(i) for i in range(n)} and max(ids.values()) == 1

    # Per-customer order: one partition per customer, offsets follow event time and id.
    by_customer: dict[str, list[tuple[int, int, tuple[object, int]]]] = defaultdict(list)
    for m in txs:
        tx = decode_transaction(m.value())
        assert m.key() == tx.customer_id.encode()
        assert _header(m) >= result.started_wall_ns
        by_customer[tx.customer_id].append(
            (m.partition(), m.offset(), (tx.tx_datetime, int(tx.transaction_id)))
        )
    for rows in by_customer.values():
        assert len({p for p, _, _ in rows}) == 1
        in_offset_order = [key for _, _, key in sorted(rows, key=lambda r: r[1])]
        assert in_offset_order == sorted(in_offset_order)

    labels = read_topic(settings, settings.topics.labels, lambda r: len(r) >= n, idle_s=0.5)
    decoded = [decode_label(m.value()) for m in labels]
    assert sorted(int(lab.transaction_id) for lab in decoded) == list(range(n))
    truth = frame.set_index("transaction_id")
    for m, lab in zip(labels, decoded, strict=True):
        row = truth.loc[int(lab.transaction_id)]
        assert m.key() == str(row.terminal_id).encode() and lab.tx_fraud == row.tx_fraud


def test_paced_replay_stamps_the_open_loop_schedule(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, frame: pd.DataFrame
) -> None:
    settings = make_test_settings(base_settings, kafka_bootstrap, tmp_path)
    setup_topics(settings)
    rate, count = 2000.0, 400
    result = replay(
        Dataset.from_frame(frame),
        _options(settings, rate=rate, count=count, labels="none"),
        settings.kafka.client_config(),
        progress=False,
    )
    assert result.transactions_sent == count and result.labels_sent == 0
    assert result.elapsed_s >= (count - 1) / rate
    txs = read_topic(settings, settings.topics.transactions, lambda r: len(r) >= count)
    intended = {int(orjson.loads(m.value())["transaction_id"]): _header(m) for m in txs}
    start = intended[0]
    assert start == result.started_wall_ns
    # Transaction i (the i-th in time order) is stamped start + i / rate, however late it went.
    assert [intended[i] - start for i in range(count)] == [i * 500_000 for i in range(count)]
