"""The replay stream: labels trail their transaction by exactly the delay, in event-time order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.stream import NS_PER_S, Dataset, encode_messages, merge_order
from stream_infer.events import decode_label, decode_transaction
from stream_infer.wire import decode

DAY_NS = 86_400 * NS_PER_S


def frame(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    seconds = np.sort(rng.integers(0, 20 * 86_400, n))
    return pd.DataFrame(
        {
            "transaction_id": np.arange(n, dtype=np.int64),
            "tx_datetime": pd.Timestamp("2018-04-01") + pd.to_timedelta(seconds, "s"),
            "customer_id": rng.integers(0, 5, n),
            "terminal_id": rng.integers(0, 7, n),
            "tx_amount": rng.uniform(0, 300, n).round(2),
            "tx_fraud": rng.integers(0, 2, n).astype(np.int8),
        }
    )


def check_merged(times: np.ndarray, delay: int, mode: str = "all") -> None:
    order = merge_order(times, delay, mode)  # type: ignore[arg-type]
    # Monotone in event time.
    assert (np.diff(order.time_ns) >= 0).all()
    tx = ~order.is_label
    # Every transaction once, in row order.
    assert (order.row[tx] == np.arange(len(times))).all()
    assert (order.slot[tx] == np.arange(len(times))).all()
    # Each label is at its transaction's time + delay, after it, and its slot counts the
    # transactions before it.
    position = {int(r): k for k, r in enumerate(order.row[tx])}
    tx_index = np.flatnonzero(tx)
    for k in np.flatnonzero(order.is_label):
        row = int(order.row[k])
        assert order.time_ns[k] == times[row] + delay
        assert tx_index[position[row]] < k
        assert order.slot[k] == np.count_nonzero(tx[:k])
    labels = order.row[order.is_label]
    if mode == "all":
        assert sorted(labels.tolist()) == list(range(len(times)))
    elif mode == "none":
        assert len(labels) == 0
    elif len(times):
        assert (order.time_ns[order.is_label] <= times[-1]).all()
        assert len(labels) == np.count_nonzero(times + delay <= times[-1])


def test_labels_trail_by_the_delay_in_the_merged_order() -> None:
    times = np.array([0, 1, 2, 5, 9], dtype=np.int64) * DAY_NS
    order = merge_order(times, 3 * DAY_NS)
    kinds = ["L" if lab else "T" for lab in order.is_label]
    # tx 0@0 1@1 2@2 L0@3 L1@4 tx3@5 L2@5 (tx first on a tie) L3@8 tx4@9 L4@12
    assert "".join(kinds) == "TTTLLTLLTL"
    assert order.row.tolist() == [0, 1, 2, 0, 1, 3, 2, 3, 4, 4]
    assert order.slot.tolist() == [0, 1, 2, 3, 3, 3, 4, 4, 4, 5]


def test_zero_delay_puts_each_label_right_after_same_time_transactions() -> None:
    times = np.array([10, 10, 20], dtype=np.int64)
    order = merge_order(times, 0)
    assert order.is_label.tolist() == [False, False, True, True, False, True]
    assert order.row.tolist() == [0, 1, 0, 1, 2, 2]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 50), max_size=40),
    st.integers(0, 30),
    st.sampled_from(["all", "inline", "none"]),
)
def test_merge_invariants(raw: list[int], delay: int, mode: str) -> None:
    check_merged(np.sort(np.asarray(raw, dtype=np.int64)), delay, mode)


def test_merge_rejects_unsorted_times_and_negative_delay() -> None:
    with pytest.raises(ValueError, match="sorted"):
        merge_order(np.array([2, 1], dtype=np.int64), 0)
    with pytest.raises(ValueError, match="negative"):
        merge_order(np.array([1], dtype=np.int64), -1)


def test_messages_decode_with_the_service_schemas() -> None:
    df = frame()
    data = Dataset.from_frame(df.sample(frac=1.0, random_state=1))  # any row order in
    assert (data.transaction_id == np.arange(len(df))).all()
    order = merge_order(data.time_ns, 7 * DAY_NS)
    messages = list(encode_messages(data, order, chunk=7))
    assert len(messages) == 2 * len(df)
    txs = [m for m in messages if m.topic_kind == "transaction"]
    labels = [m for m in messages if m.topic_kind == "label"]
    for m, row in zip(txs, df.itertuples(), strict=True):
        tx = decode_transaction(m.value)
        assert decode(m.value).tx_amount == tx.tx_amount == row.tx_amount
        assert tx.transaction_id == str(row.transaction_id) == str(m.transaction_id)
        assert tx.customer_id == str(row.customer_id) and m.key == tx.customer_id.encode()
        assert tx.tx_datetime.replace(tzinfo=None) == row.tx_datetime
    for m in labels:
        label = decode_label(m.value)
        row = df.iloc[int(label.transaction_id)]
        assert m.key == str(row.terminal_id).encode() and label.tx_fraud == row.tx_fraud
        assert label.tx_datetime.replace(tzinfo=None) == row.tx_datetime
        assert m.event_time_ns == row.tx_datetime.value + 7 * DAY_NS


def test_shift_moves_payload_times_but_not_the_schedule_clock() -> None:
    df = frame(5)
    data = Dataset.from_frame(df)
    order = merge_order(data.time_ns, DAY_NS, "none")
    shift = 1000 * DAY_NS
    for m, row in zip(encode_messages(data, order, shift), df.itertuples(), strict=True):
        tx = decode_transaction(m.value)
        assert tx.tx_datetime.replace(tzinfo=None) == row.tx_datetime + pd.Timedelta(days=1000)
        assert m.event_time_ns == row.tx_datetime.value


def test_dataset_validation_and_head() -> None:
    with pytest.raises(ValueError, match="lacks"):
        Dataset.from_frame(frame().drop(columns=["terminal_id"]))
    with pytest.raises(ValueError, match="integer"):
        Dataset.from_frame(
            frame().assign(transaction_id=lambda d: "tx-" + d.transaction_id.astype(str))
        )
    data = Dataset.from_frame(frame().drop(columns=["tx_fraud"]))
    assert (data.fraud == 0).all()
    assert len(data.head(4)) == 4 and data.head(4).transaction_id.tolist() == [0, 1, 2, 3]
    aware = frame().assign(tx_datetime=lambda d: d.tx_datetime.dt.tz_localize("UTC"))
    assert (Dataset.from_frame(aware).time_ns == data.time_ns).all()
