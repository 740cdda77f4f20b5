"""Features in the stream: customer window state and terminal daily rows, per batch.

The math is :mod:`stream_infer.features.definitions`; this module only keeps the state it reads
and fills the model's input matrix for a batch. Customer state is kept per Kafka partition (the
worker owns whole partitions), so a revoked partition's state can be flushed and dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from stream_infer.features.definitions import (
    LABEL_DELAY_DAYS,
    N_FEATURES,
    SECONDS_PER_DAY,
    CustomerHistory,
    request_features,
    terminal_features,
)

FLAG_TERMINAL_MISSING = "terminal_features_unavailable"


TerminalRow = tuple[float, float, float, float, float, float]
ZERO_ROW: TerminalRow = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class TerminalRows(Protocol):
    """Published terminal daily rows (the label processor's output)."""

    def rows(self, keys: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], TerminalRow]:
        """The 6 terminal features for each published ``(terminal_id, day)``; absent if the
        day's row is not published yet."""
        ...


class NoTerminalRows:
    """No label processor wired in: terminal features are zeros and every score is flagged."""

    def rows(self, keys: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], TerminalRow]:
        return {}


class InMemoryTerminalRows:
    """Rows computed from per-(terminal, day) counts held in memory (tests, offline replays).

    A day's row is served only once ``complete_through`` covers the days it reads (D - 8).
    """

    def __init__(self, complete_through: int | None = None) -> None:
        self._counts: dict[str, dict[int, tuple[int, int]]] = {}
        self._complete = complete_through

    def add(self, terminal_id: str, day: int, transactions: int, frauds: int) -> None:
        self._counts.setdefault(terminal_id, {})[day] = (transactions, frauds)

    def set_complete_through(self, day: int) -> None:
        self._complete = day

    def rows(self, keys: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], TerminalRow]:
        if self._complete is None:
            return {}
        return {
            (t, d): terminal_features(self._counts.get(t, {}), d)
            for t, d in keys
            if d - LABEL_DELAY_DAYS - 1 <= self._complete
        }


@dataclass(frozen=True, slots=True)
class TxInput:
    """The fields features need from one transaction, plus its stream position."""

    transaction_id: str
    customer_id: str
    terminal_id: str
    epoch_seconds: int
    amount: float
    partition: int
    offset: int


class CustomerState:
    """Customer histories for the partitions this process owns."""

    def __init__(self) -> None:
        self._by_partition: dict[int, dict[str, CustomerHistory]] = {}

    def history(self, partition: int, customer_id: str) -> CustomerHistory:
        customers = self._by_partition.setdefault(partition, {})
        hist = customers.get(customer_id)
        if hist is None:
            hist = customers[customer_id] = CustomerHistory()
        return hist

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions' customers (their new owner has the same history)."""
        for p in partitions:
            self._by_partition.pop(p, None)

    def customers(self) -> int:
        return sum(len(c) for c in self._by_partition.values())


class FeatureComputer:
    """Fills the (n, 15) input matrix for a batch and updates customer state in place."""

    def __init__(self, terminal_rows: TerminalRows | None = None) -> None:
        self.state = CustomerState()
        self.terminal_rows: TerminalRows = terminal_rows or NoTerminalRows()

    def compute(
        self, txs: Sequence[TxInput]
    ) -> tuple[npt.NDArray[np.float64], list[tuple[str, ...]]]:
        """The feature matrix (rows in ``txs`` order, float64) and per-row flags.

        Terminal features use exactly the row of the event's own day; when that row is not
        published the values are zeros and the row is flagged, never silently stale.
        """
        out = np.empty((len(txs), N_FEATURES), dtype=np.float64)
        flags: list[tuple[str, ...]] = []
        days = [tx.epoch_seconds // SECONDS_PER_DAY for tx in txs]
        rows = self.terminal_rows.rows(
            {(tx.terminal_id, d) for tx, d in zip(txs, days, strict=True)}
        )
        history = self.state.history
        none: tuple[str, ...] = ()
        missing = (FLAG_TERMINAL_MISSING,)
        for i, tx in enumerate(txs):
            hist = history(tx.partition, tx.customer_id)
            idx = hist.add(tx.epoch_seconds, tx.offset, tx.amount, tx.transaction_id)
            term = rows.get((tx.terminal_id, days[i]))
            out[i] = (
                *request_features(tx.epoch_seconds, tx.amount),
                *hist.features_at(idx),
                *(term or ZERO_ROW),
            )
            flags.append(none if term is not None else missing)
        return out, flags
