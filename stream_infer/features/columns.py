"""A batch of transactions as columns: what the feature step reads, one array per field.

The stream decodes straight into these (:func:`stream_infer.wire.decode_batch`); other callers
(the sidecar, tests, offline tools) build them from :class:`TxInput` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__ per field, which
# costs ~0.2 µs an event. Treat instances as immutable all the same.
@dataclass(slots=True)
class TxInput:
    """The fields features need from one transaction, plus its stream position."""

    transaction_id: str
    customer_id: str
    terminal_id: str
    epoch_seconds: int
    amount: float
    partition: int
    offset: int


@dataclass(slots=True)
class TxColumns:
    """Row-aligned columns of a batch; ``offsets`` order a customer's same-second events."""

    transaction_ids: list[str]
    customer_ids: list[str]
    terminal_ids: list[str]
    epoch_seconds: npt.NDArray[np.int64]
    amounts: npt.NDArray[np.float64]
    partitions: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.transaction_ids)

    @classmethod
    def of(cls, txs: Sequence[TxInput]) -> TxColumns:
        """Columns of ``TxInput`` rows."""
        return cls(
            [tx.transaction_id for tx in txs],
            [tx.customer_id for tx in txs],
            [tx.terminal_id for tx in txs],
            np.array([tx.epoch_seconds for tx in txs], dtype=np.int64),
            np.array([tx.amount for tx in txs], dtype=np.float64),
            np.array([tx.partition for tx in txs], dtype=np.int64),
            np.array([tx.offset for tx in txs], dtype=np.int64),
        )

    def take(self, rows: Sequence[int]) -> TxColumns:
        """The rows ``rows``, in that order."""
        idx = np.asarray(rows, dtype=np.int64)
        return TxColumns(
            [self.transaction_ids[i] for i in rows],
            [self.customer_ids[i] for i in rows],
            [self.terminal_ids[i] for i in rows],
            self.epoch_seconds[idx],
            self.amounts[idx],
            self.partitions[idx],
            self.offsets[idx],
        )

    def row(self, i: int) -> TxInput:
        """Row ``i`` as a :class:`TxInput`."""
        return TxInput(
            self.transaction_ids[i],
            self.customer_ids[i],
            self.terminal_ids[i],
            int(self.epoch_seconds[i]),
            float(self.amounts[i]),
            int(self.partitions[i]),
            int(self.offsets[i]),
        )
