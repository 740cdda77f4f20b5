"""Features in the stream: customer window state and terminal daily rows, per batch.

The math is :mod:`stream_infer.features.definitions`; this module only keeps the state it reads
and fills the model's input matrix for a batch. Customer state is kept per Kafka partition (the
worker owns whole partitions), so a revoked partition's state can be flushed and dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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
#: Histories longer than this are pruned of entries no window can reach any more.
PRUNE_AT = 256


TerminalRow = tuple[float, float, float, float, float, float]
ZERO_ROW: TerminalRow = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class TerminalRows(Protocol):
    """Published terminal daily rows (the label processor's output)."""

    def rows(
        self, keys: Iterable[tuple[str, int]], stream_start_day: int | None = None
    ) -> Mapping[tuple[str, int], TerminalRow]:
        """The 6 terminal features for each final ``(terminal_id, day)``; absent if the day's
        row is not final yet. ``stream_start_day``: the first day the stream has data for;
        no label can exist before it, so rows reading only earlier days are final zeros."""
        ...


class NoTerminalRows:
    """No label processor wired in: terminal features are zeros and every score is flagged."""

    def rows(
        self, keys: Iterable[tuple[str, int]], stream_start_day: int | None = None
    ) -> Mapping[tuple[str, int], TerminalRow]:
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

    def rows(
        self, keys: Iterable[tuple[str, int]], stream_start_day: int | None = None
    ) -> Mapping[tuple[str, int], TerminalRow]:
        if self._complete is None:
            return {}
        return {
            (t, d): terminal_features(self._counts.get(t, {}), d)
            for t, d in keys
            if d - LABEL_DELAY_DAYS - 1 <= self._complete
        }


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__ per field, which
# costs ~0.2 µs an event on the hot path. Treat instances as immutable all the same.
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


class CustomerStore(Protocol):
    """Durable customer histories (see :mod:`stream_infer.state.base`)."""

    def load(self, customer_ids: Iterable[str]) -> Mapping[str, Sequence[Any]]: ...

    def save(self, entries: Mapping[str, Sequence[Any]]) -> None: ...

    def first_day(self) -> int | None: ...

    def record_first_day(self, day: int) -> None: ...


class CustomerState:
    """Customer histories for the partitions this process owns, backed by a store.

    A customer seen for the first time (after start, restart or rebalance) is loaded from the
    store, so a new owner continues exactly where the old one stopped. New entries of a batch
    are saved in one call before the batch's scores are produced.
    """

    def __init__(self, store: CustomerStore | None = None, cache: bool = True) -> None:
        self._by_partition: dict[int, dict[str, CustomerHistory]] = {}
        self._store = store
        self._cache = cache
        self._pending: dict[str, list[Any]] = {}

    def prepare(self, wanted: Iterable[tuple[int, str]]) -> None:
        """Load the histories of customers not in memory (one store round trip)."""
        if self._store is None:
            return
        missing: dict[str, int] = {}
        for partition, cid in wanted:
            customers = self._by_partition.get(partition)
            if not self._cache or customers is None or cid not in customers:
                missing[cid] = partition
        if not missing:
            return
        for cid, entries in self._store.load(missing).items():
            hist = CustomerHistory()
            for e in entries:
                hist.add(e.epoch_seconds, e.seq, e.amount, e.transaction_id)
            self._by_partition.setdefault(missing[cid], {})[cid] = hist

    def history(self, partition: int, customer_id: str) -> CustomerHistory:
        customers = self._by_partition.setdefault(partition, {})
        hist = customers.get(customer_id)
        if hist is None:
            hist = customers[customer_id] = CustomerHistory()
        return hist

    def record(self, customer_id: str, entry: Any) -> None:
        """Remember a new entry to save with the batch."""
        self._pending.setdefault(customer_id, []).append(entry)

    def take_pending(self) -> dict[str, list[Any]]:
        """The new entries recorded since the last call (for the caller to save)."""
        pending, self._pending = self._pending, {}
        return pending

    def save(self, entries: Mapping[str, Sequence[Any]]) -> None:
        """Write entries to the store; durable when this returns. Thread-safe if the store is.

        Raises:
            RetryableError: the store failed.
        """
        if self._store is not None and entries:
            self._store.save(entries)

    def flush(self) -> None:
        """Save the batch's new entries now; durable when this returns."""
        self.save(self.take_pending())

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions' customers (the new owner reloads them from the store)."""
        for p in partitions:
            self._by_partition.pop(p, None)

    def customers(self) -> int:
        return sum(len(c) for c in self._by_partition.values())


class FeatureComputer:
    """Fills the (n, 15) input matrix for a batch and updates customer state.

    Args:
        terminal_rows: published terminal daily rows.
        store: durable customer histories (None: memory only).
        persist: record new entries (the worker); False for read-only callers (the sidecar).
        write_behind: leave recorded entries for the caller to save (``state.take_pending``)
            instead of saving them inside :meth:`compute`.
        cache: keep histories in memory between batches (the worker owns its partitions);
            False reloads every batch (the sidecar reads what workers wrote).
    """

    def __init__(
        self,
        terminal_rows: TerminalRows | None = None,
        store: CustomerStore | None = None,
        *,
        persist: bool = True,
        cache: bool = True,
        write_behind: bool = False,
    ) -> None:
        self.write_behind = write_behind
        self.state = CustomerState(store, cache)
        self._store = store
        self._start_day: int | None = None
        self._start_loaded = False
        self.terminal_rows: TerminalRows = terminal_rows or NoTerminalRows()
        self.persist = persist

    def stream_start_day(self, batch_first_day: int) -> int | None:
        """The first UTC day this stream has data for (persisted with the state).

        Only the writer (the worker) extends it; read-only callers just read it.
        """
        if not self._start_loaded and self._store is not None:
            self._start_day = self._store.first_day()
            self._start_loaded = True
        if self.persist and (self._start_day is None or batch_first_day < self._start_day):
            self._start_day = batch_first_day
            if self._store is not None:
                self._store.record_first_day(batch_first_day)
        return self._start_day

    def compute(
        self, txs: Sequence[TxInput]
    ) -> tuple[npt.NDArray[np.float64], list[tuple[str, ...]]]:
        """The feature matrix (rows in ``txs`` order, float64) and per-row flags.

        Terminal features use exactly the row of the event's own day; when that row is not
        published the values are zeros and the row is flagged, never silently stale.

        Raises:
            RetryableError: the state store could not be read or written.
        """
        from stream_infer.state.base import Entry

        rows_out: list[tuple[float, ...]] = []
        append = rows_out.append
        flags: list[tuple[str, ...]] = []
        days = [tx.epoch_seconds // SECONDS_PER_DAY for tx in txs]
        start_day = self.stream_start_day(min(days)) if days else None
        rows = self.terminal_rows.rows(
            {(tx.terminal_id, d) for tx, d in zip(txs, days, strict=True)}, start_day
        )
        state = self.state
        state.prepare((tx.partition, tx.customer_id) for tx in txs)
        history = state.history
        record = state.record
        persist = self.persist
        none: tuple[str, ...] = ()
        missing = (FLAG_TERMINAL_MISSING,)
        for i, tx in enumerate(txs):
            hist = history(tx.partition, tx.customer_id)
            before = len(hist.times)
            idx = hist.add(tx.epoch_seconds, tx.offset, tx.amount, tx.transaction_id)
            if persist and len(hist.times) != before:
                record(
                    tx.customer_id,
                    Entry(tx.transaction_id, tx.epoch_seconds, tx.offset, tx.amount),
                )
                if before > PRUNE_AT:
                    hist.prune(hist.times[-1])
                    idx = hist.add(tx.epoch_seconds, tx.offset, tx.amount, tx.transaction_id)
            term = rows.get((tx.terminal_id, days[i]))
            append(
                request_features(tx.epoch_seconds, tx.amount)
                + hist.features_at(idx)
                + (term or ZERO_ROW)
            )
            flags.append(none if term is not None else missing)
        out = (
            np.array(rows_out, dtype=np.float64)
            if rows_out
            else np.empty((0, N_FEATURES), dtype=np.float64)
        )
        if persist and not self.write_behind:
            state.flush()
        return out, flags
