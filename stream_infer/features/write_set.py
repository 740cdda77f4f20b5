"""A batch's customer-state writes, in columns, read by a store as ``{customer: [Entry]}``.

The scoring thread only slices arrays (:meth:`Rows.of`); the per-entry
:class:`~stream_infer.state.base.Entry` objects a store reads are built the first time the write
set is read as a mapping, which is in ``CustomerState.save``, on the writer thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt

from stream_infer.features.columns import TxColumns
from stream_infer.state.base import Entry


@dataclass(slots=True)
class Rows:
    """Entries as columns: customer, transaction, time, seq, amount."""

    customer_ids: list[str]
    transaction_ids: list[str]
    epoch_seconds: npt.NDArray[np.int64]
    seqs: npt.NDArray[np.int64]
    amounts: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.transaction_ids)

    @classmethod
    def of(cls, cols: TxColumns, rows: npt.NDArray[np.int64]) -> Rows:
        """Rows ``rows`` of a batch (its offsets are the entries' seqs)."""
        if len(rows) == len(cols):
            return cls(
                cols.customer_ids,
                cols.transaction_ids,
                cols.epoch_seconds,
                cols.offsets,
                cols.amounts,
            )
        picked = rows.tolist()
        return cls(
            [cols.customer_ids[i] for i in picked],
            [cols.transaction_ids[i] for i in picked],
            cols.epoch_seconds[rows],
            cols.offsets[rows],
            cols.amounts[rows],
        )

    @classmethod
    def concat(cls, parts: Sequence[Rows]) -> Rows:
        if len(parts) == 1:
            return parts[0]
        return cls(
            [c for p in parts for c in p.customer_ids],
            [t for p in parts for t in p.transaction_ids],
            np.concatenate([p.epoch_seconds for p in parts] or [np.empty(0, np.int64)]),
            np.concatenate([p.seqs for p in parts] or [np.empty(0, np.int64)]),
            np.concatenate([p.amounts for p in parts] or [np.empty(0, np.float64)]),
        )

    def entries(self, dropped: bool) -> Iterator[tuple[str, Entry]]:
        made = map(
            Entry,
            self.transaction_ids,
            self.epoch_seconds.tolist(),
            self.seqs.tolist(),
            self.amounts.tolist(),
            repeat(dropped),
        )
        return zip(self.customer_ids, made, strict=True)


class WriteSet(Mapping[str, Sequence[Entry]]):
    """New entries (``added``) and deletions (``dropped``) of one or more batches.

    ``ids`` name the batches (write sets merged after a failed save keep all of theirs). As a
    mapping, each customer's new entries come first, then its deletions, as stores expect.
    """

    def __init__(self, ids: list[int], added: Rows, dropped: Rows) -> None:
        self.ids = ids
        self.added = added
        self.dropped = dropped
        self._by_customer: dict[str, list[Entry]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def merge(cls, sets: Sequence[WriteSet]) -> WriteSet:
        if len(sets) == 1:
            return sets[0]
        return cls(
            [i for s in sets for i in s.ids],
            Rows.concat([s.added for s in sets]),
            Rows.concat([s.dropped for s in sets]),
        )

    def __bool__(self) -> bool:
        return bool(len(self.added) or len(self.dropped))

    def _mapping(self) -> dict[str, list[Entry]]:
        with self._lock:
            if self._by_customer is None:
                out: dict[str, list[Entry]] = {}
                for rows, dropped in ((self.added, False), (self.dropped, True)):
                    for cid, entry in rows.entries(dropped):
                        items = out.get(cid)
                        if items is None:
                            out[cid] = [entry]
                        else:
                            items.append(entry)
                self._by_customer = out
            return self._by_customer

    def __getitem__(self, customer_id: str) -> Sequence[Entry]:
        return self._mapping()[customer_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())
