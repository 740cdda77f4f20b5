"""The replay stream: a dataset's transactions and their delayed labels, merged in event time.

A transaction at event time ``t`` is emitted at ``t``; its label at ``t + label_delay``. The two
sequences are merged by emission time (a transaction before a label at the same instant, so a
label always follows its own transaction even with a zero delay). Every message has a *slot*: the
number of transactions emitted before it, itself excluded for a label. The rate pacer uses slots
so a label goes out with the transaction it precedes.

The merge is index arithmetic on numpy arrays (a few int64 arrays of the stream's length); the
JSON is encoded a chunk at a time, so memory stays bounded whatever the dataset's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

Ints = npt.NDArray[np.int64]
LabelMode = Literal["all", "inline", "none"]

NS_PER_S: Final = 1_000_000_000
#: Columns a dataset must have to be replayed.
REQUIRED_COLUMNS: Final = (
    "transaction_id",
    "tx_datetime",
    "customer_id",
    "terminal_id",
    "tx_amount",
)


@dataclass(frozen=True)
class Dataset:
    """A dataset's columns as arrays, sorted by (event time, transaction_id).

    ``time_ns``: naive-UTC event times in epoch ns; ``fraud``: 0/1, or all zeros when the
    dataset has no ``tx_fraud`` column.
    """

    transaction_id: Ints
    time_ns: Ints
    customer_id: npt.NDArray[Any]  # as stored (int64 or str objects); stringified per chunk
    terminal_id: npt.NDArray[Any]
    amount: npt.NDArray[np.float64]
    fraud: Ints

    def __len__(self) -> int:
        return len(self.transaction_id)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> Dataset:
        """Columns of :data:`REQUIRED_COLUMNS` (``tx_fraud`` optional) in replay order.

        Raises:
            ValueError: a required column is missing or ``transaction_id`` is not integer.
        """
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"dataset lacks columns {missing}")
        if not pd.api.types.is_integer_dtype(df["transaction_id"]):
            raise ValueError("transaction_id must be an integer column (loadgen ids)")
        times = pd.to_datetime(df["tx_datetime"])
        if isinstance(times.dtype, pd.DatetimeTZDtype):
            times = times.dt.tz_convert("UTC").dt.tz_localize(None)
        time_ns = times.to_numpy("datetime64[ns]").view(np.int64)
        tid = df["transaction_id"].to_numpy(np.int64)
        order = np.lexsort((tid, time_ns))
        fraud = (
            df["tx_fraud"].to_numpy(np.int64)
            if "tx_fraud" in df.columns
            else np.zeros(len(df), dtype=np.int64)
        )
        return cls(
            transaction_id=tid[order],
            time_ns=time_ns[order],
            customer_id=df["customer_id"].to_numpy()[order],
            terminal_id=df["terminal_id"].to_numpy()[order],
            amount=df["tx_amount"].to_numpy(np.float64)[order],
            fraud=fraud[order],
        )

    @property
    def ids(self) -> Ints:
        """Transaction ids in replay order."""
        return self.transaction_id

    @property
    def id_field(self) -> str:
        """The id's field in a produced value."""
        return "transaction_id"

    def id_of(self, raw: Any) -> int:
        """A produced value's id (a decimal string) as an int."""
        return int(raw)

    def messages(self, order: MergedOrder, shift_ns: int) -> Iterator[Message]:
        """The merged stream's messages (:func:`encode_messages`)."""
        return encode_messages(self, order, shift_ns)

    def head(self, n: int) -> Dataset:
        """The first ``n`` transactions in replay order."""
        return Dataset(
            self.transaction_id[:n],
            self.time_ns[:n],
            self.customer_id[:n],
            self.terminal_id[:n],
            self.amount[:n],
            self.fraud[:n],
        )


@dataclass(frozen=True)
class MergedOrder:
    """The merged sequence as parallel arrays, one entry per message in send order.

    ``is_label[k]``: message k is a label; ``row[k]``: its transaction's row in the dataset;
    ``time_ns[k]``: its emission (event) time; ``slot[k]``: transactions emitted before it
    (for a transaction: its own index among transactions).
    """

    is_label: npt.NDArray[np.bool_]
    row: Ints
    time_ns: Ints
    slot: Ints

    def __len__(self) -> int:
        return len(self.row)


def merge_order(tx_time_ns: Ints, label_delay_ns: int, labels: LabelMode = "all") -> MergedOrder:
    """Merge transactions (sorted by time) with their labels at ``time + label_delay_ns``.

    Args:
        tx_time_ns: transaction event times, non-decreasing.
        labels: ``all`` every label; ``inline`` only labels due no later than the last
            transaction (nothing trails the transactions); ``none`` transactions only.

    Raises:
        ValueError: times are not sorted or the delay is negative.
    """
    if label_delay_ns < 0:
        raise ValueError("label delay must not be negative")
    n = len(tx_time_ns)
    if n > 1 and bool(np.any(np.diff(tx_time_ns) < 0)):
        raise ValueError("transaction times must be sorted")
    tx_rows = np.arange(n, dtype=np.int64)
    lab_time = tx_time_ns + label_delay_ns
    if labels == "none" or n == 0:
        lab_rows = np.zeros(0, dtype=np.int64)
    elif labels == "inline":
        lab_rows = tx_rows[: int(np.searchsorted(lab_time, tx_time_ns[-1], side="right"))]
    else:
        lab_rows = tx_rows
    lab_time = lab_time[lab_rows]
    # A transaction at the same instant as a label goes first (side="right" / "left" below).
    lab_slot = np.searchsorted(tx_time_ns, lab_time, side="right").astype(np.int64)
    tx_pos = tx_rows + np.searchsorted(lab_time, tx_time_ns, side="left")
    lab_pos = np.arange(len(lab_rows), dtype=np.int64) + lab_slot
    total = n + len(lab_rows)
    is_label = np.zeros(total, dtype=np.bool_)
    row = np.empty(total, dtype=np.int64)
    time_ns = np.empty(total, dtype=np.int64)
    slot = np.empty(total, dtype=np.int64)
    is_label[lab_pos] = True
    row[tx_pos], row[lab_pos] = tx_rows, lab_rows
    time_ns[tx_pos], time_ns[lab_pos] = tx_time_ns, lab_time
    slot[tx_pos], slot[lab_pos] = tx_rows, lab_slot
    return MergedOrder(is_label, row, time_ns, slot)


class Message(NamedTuple):
    """One record to produce, with what the pacer needs to schedule it (a tuple: cheap)."""

    topic_kind: Literal["transaction", "label"]
    key: bytes
    value: bytes
    transaction_id: int
    slot: int
    event_time_ns: int


def iso_seconds(time_ns: Ints) -> list[str]:
    """RFC 3339 UTC strings (``2018-04-01T00:00:29Z``; fractions kept only when present)."""
    whole = time_ns % NS_PER_S == 0
    stamps: npt.NDArray[np.datetime64] = time_ns.astype("datetime64[ns]")
    text = np.datetime_as_string(stamps, unit="s" if bool(whole.all()) else "us")
    return [t + "Z" for t in text.tolist()]


def encode_messages(
    data: Dataset, order: MergedOrder, shift_ns: int = 0, chunk: int = 20_000
) -> Iterator[Message]:
    """Yield the merged stream's messages, encoding ``chunk`` of them at a time.

    Transaction values follow :class:`stream_infer.events.Transaction`, label values
    :class:`stream_infer.events.Label`; ids are strings, times RFC 3339 UTC, shifted by
    ``shift_ns`` in the payload only (``Message.event_time_ns`` stays in the dataset's clock,
    which is what the pacer schedules on). Keys: customer_id for transactions, terminal_id for
    labels.
    """
    dumps = orjson.dumps
    for lo in range(0, len(order), chunk):
        hi = min(lo + chunk, len(order))
        rows = order.row[lo:hi]
        labels = order.is_label[lo:hi].tolist()
        tx_times = iso_seconds(data.time_ns[rows] + shift_ns)
        tids = data.transaction_id[rows].tolist()
        customers = [str(c) for c in data.customer_id[rows].tolist()]
        terminals = [str(t) for t in data.terminal_id[rows].tolist()]
        amounts = data.amount[rows].tolist()
        frauds = data.fraud[rows].tolist()
        slots = order.slot[lo:hi].tolist()
        emitted = order.time_ns[lo:hi].tolist()
        for i, is_label in enumerate(labels):
            tid = tids[i]
            if is_label:
                value = dumps(
                    {
                        "transaction_id": str(tid),
                        "tx_datetime": tx_times[i],
                        "terminal_id": terminals[i],
                        "tx_fraud": frauds[i],
                    }
                )
                yield Message("label", terminals[i].encode(), value, tid, slots[i], emitted[i])
            else:
                value = dumps(
                    {
                        "transaction_id": str(tid),
                        "tx_datetime": tx_times[i],
                        "customer_id": customers[i],
                        "terminal_id": terminals[i],
                        "tx_amount": amounts[i],
                    }
                )
                yield Message(
                    "transaction", customers[i].encode(), value, tid, slots[i], emitted[i]
                )
