"""Features in the stream: customer window state and terminal daily rows, per batch.

The math is :mod:`stream_infer.features.definitions`; this module only keeps the state it reads
and fills the model's input matrix for a batch. Customer state is kept per Kafka partition (the
worker owns whole partitions), so a revoked partition's state can be flushed and dropped.
Customer histories live in a bounded :class:`~stream_infer.state.customers.CustomerState`.
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
    request_features,
    terminal_features,
)
from stream_infer.state.base import Entry
from stream_infer.state.customers import (
    DROP_DELAY_S,
    PRUNE_AT,
    PRUNE_STALE,
    CustomerState,
    CustomerStore,
)

FLAG_TERMINAL_MISSING = "terminal_features_unavailable"


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


class FeatureComputer:
    """Fills the (n, 15) input matrix for a batch and updates customer state.

    Args:
        terminal_rows: published terminal daily rows.
        store: durable customer histories (None: memory only; an evicted customer then
            starts over, so size the cache for tests and benchmarks that use none).
        persist: record new entries (the worker); False for read-only callers (the sidecar).
        write_behind: leave recorded entries for the caller to save (``state.take_pending``)
            instead of saving them inside :meth:`compute`.
        cache: keep histories in memory between batches (the worker owns its partitions);
            False reloads every batch (the sidecar reads what workers wrote).
        customer_cache_size: customers kept in memory (LRU).
        prune_margin_days: history kept past the 30-day window, for late events.
        drop_delay_s: how long the store keeps an entry after it went out of reach (see
            :mod:`stream_infer.state.customers`).
    """

    def __init__(
        self,
        terminal_rows: TerminalRows | None = None,
        store: CustomerStore | None = None,
        *,
        persist: bool = True,
        cache: bool = True,
        write_behind: bool = False,
        customer_cache_size: int = 200_000,
        prune_margin_days: int = 1,
        drop_delay_s: float = DROP_DELAY_S,
    ) -> None:
        self.write_behind = write_behind
        self.state = CustomerState(
            store,
            cache,
            max_customers=customer_cache_size,
            margin_days=prune_margin_days,
            persist=persist,
            drop_delay_s=drop_delay_s,
        )
        self._store = store
        self._start_day: int | None = None
        self._start_loaded = False
        self.terminal_rows: TerminalRows = terminal_rows or NoTerminalRows()
        self.persist = persist

    def stream_start_day(self, batch_first_day: int) -> int | None:
        """The first UTC day this stream has data for (persisted with the state).

        Only the writer (the worker) extends it; read-only callers just read it.

        Raises:
            StoreUnavailableError: the store failed; the day in memory is unchanged.
        """
        if not self._start_loaded and self._store is not None:
            self._start_day = self._store.first_day()
            self._start_loaded = True
        if self.persist and (self._start_day is None or batch_first_day < self._start_day):
            if self._store is not None:
                self._store.record_first_day(batch_first_day)  # the store first: see compute
            self._start_day = batch_first_day
        return self._start_day

    def compute(
        self, txs: Sequence[TxInput]
    ) -> tuple[npt.NDArray[np.float64], list[tuple[str, ...]]]:
        """The feature matrix (rows in ``txs`` order, float64) and per-row flags.

        Terminal features use exactly the row of the event's own day; when that row is not
        published the values are zeros and the row is flagged, never silently stale.

        Every store read happens before any customer history changes, so when one fails the
        state is as before the call and calling again with the same ``txs`` gives the same
        features. Without ``write_behind`` the batch is saved at the end; if that fails, the
        histories keep the batch's entries and still record them for the next save, and a
        repeated call gives the same features (adding an entry twice changes nothing).

        Raises:
            StoreUnavailableError: the state store could not be read or written.
        """
        rows_out: list[tuple[float, ...]] = []
        append = rows_out.append
        flags: list[tuple[str, ...]] = []
        days = [tx.epoch_seconds // SECONDS_PER_DAY for tx in txs]
        start_day = self.stream_start_day(min(days)) if days else None
        rows = self.terminal_rows.rows(
            {(tx.terminal_id, d) for tx, d in zip(txs, days, strict=True)}, start_day
        )
        state = self.state
        keys = [(tx.partition, tx.customer_id) for tx in txs]
        by_key = state.checkout(keys)
        hists = [by_key[key] for key in keys]
        record = state.record
        record_stale = state.record_stale
        keep_s = state.keep_s
        margin_s = state.margin_s
        persist = self.persist
        none: tuple[str, ...] = ()
        missing = (FLAG_TERMINAL_MISSING,)
        for i, tx in enumerate(txs):
            hist = hists[i]
            times = hist.times
            before = len(times)
            idx = hist.add(tx.epoch_seconds, tx.offset, tx.amount, tx.transaction_id)
            if persist and len(times) != before:
                record(
                    tx.customer_id,
                    Entry(tx.transaction_id, tx.epoch_seconds, tx.offset, tx.amount),
                )
                # The oldest entry out of reach: drop from the store what no window reaches.
                if before and times[0] <= times[-1] - keep_s:
                    stale = record_stale(tx.customer_id, hist, idx, before)
                    if stale >= PRUNE_STALE or before > PRUNE_AT:
                        hist.prune(times[-1] - margin_s)
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
