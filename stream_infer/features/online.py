"""Features in the stream: customer window state and terminal daily rows, per batch.

The math is :mod:`stream_infer.features.definitions`; this module only keeps the state it reads
and fills the model's input matrix for a batch. Customer state is kept per Kafka partition (the
worker owns whole partitions), so a revoked partition's state can be flushed and dropped.
Customer histories live in a bounded :class:`~stream_infer.state.customers.CustomerState`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import compress, repeat
from operator import itemgetter, not_
from typing import Protocol

import numpy as np
import numpy.typing as npt

from stream_infer.features.columns import TxColumns, TxInput
from stream_infer.features.definitions import (
    LABEL_DELAY_DAYS,
    N_FEATURES,
    SECONDS_PER_DAY,
    request_matrix,
    terminal_features,
)
from stream_infer.state.customers import DROP_DELAY_S, CustomerState, CustomerStore

__all__ = [
    "FLAG_TERMINAL_MISSING",
    "FeatureComputer",
    "InMemoryTerminalRows",
    "NoTerminalRows",
    "TerminalRow",
    "TerminalRows",
    "TxColumns",
    "TxInput",
]

FLAG_TERMINAL_MISSING = "terminal_features_unavailable"
#: Reserved rows of the terminal row table: 0 unpublished (zeros, flagged), 1 final zeros.
_FINAL_ZEROS_ROW = 1
_LAST_RESERVED_ROW = _FINAL_ZEROS_ROW


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

    def triage(self, days: Ints, stream_start_day: int | None = None) -> Ints:
        """Per event day, what :meth:`rows` would say of any terminal without asking per key:
        :data:`ASK` (look the row up), :data:`FINAL_ZEROS` (the row is final and all zeros) or
        :data:`NOT_FINAL` (no row of that day is final yet)."""
        ...


#: :meth:`TerminalRows.triage` codes.
ASK, FINAL_ZEROS, NOT_FINAL = 0, 1, 2
Ints = npt.NDArray[np.int64]


def ask_all(days: Ints) -> Ints:
    """Every day :data:`ASK`: for sources with no cheaper answer."""
    return np.zeros(len(days), dtype=np.int64)


class NoTerminalRows:
    """No label processor wired in: terminal features are zeros and every score is flagged."""

    def rows(
        self, keys: Iterable[tuple[str, int]], stream_start_day: int | None = None
    ) -> Mapping[tuple[str, int], TerminalRow]:
        return {}

    def triage(self, days: Ints, stream_start_day: int | None = None) -> Ints:
        return np.full(len(days), NOT_FINAL, dtype=np.int64)


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

    def triage(self, days: Ints, stream_start_day: int | None = None) -> Ints:
        return ask_all(days)


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
        max_terminal_rows: published terminal rows kept in memory between batches.
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
        max_terminal_rows: int = 200_000,
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
        self.state_cache = cache
        # Published terminal rows (final once published): day -> terminal -> row of ``_rows``
        # (row 0 is the zero row of an unpublished day, row 1 the final zeros of a day no
        # label can reach yet).
        self._row_index: dict[int, dict[str, int]] = {}
        self._n_rows = _LAST_RESERVED_ROW
        self._rows = np.zeros((1024, 6), dtype=np.float64)
        self._max_rows = max_terminal_rows

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
        """:meth:`compute_columns` for ``TxInput`` rows."""
        return self.compute_columns(TxColumns.of(txs))

    def compute_columns(
        self, cols: TxColumns
    ) -> tuple[npt.NDArray[np.float64], list[tuple[str, ...]]]:
        """The feature matrix (rows in ``cols`` order, float64) and per-row flags.

        Terminal features use exactly the row of the event's own day; when that row is not
        published the values are zeros and the row is flagged, never silently stale.

        Every store read happens before any customer history changes, so when one fails the
        state is as before the call and calling again with the same ``cols`` gives the same
        features. Without ``write_behind`` the batch is saved at the end; if that fails, the
        histories keep the batch's entries and still record them for the next save, and a
        repeated call gives the same features (adding an entry twice changes nothing).

        Raises:
            StoreUnavailableError: the state store could not be read or written.
        """
        n = len(cols)
        out = np.empty((n, N_FEATURES), dtype=np.float64)
        if n == 0:
            return out, []
        days = cols.epoch_seconds // SECONDS_PER_DAY
        start_day = self.stream_start_day(int(days.min()))
        found = self._terminal_rows(cols.terminal_ids, days, start_day)
        customer = self.state.windows(cols)
        out[:, 0:3] = request_matrix(cols.epoch_seconds, cols.amounts)
        out[:, 3:9] = customer
        out[:, 9:15] = self._rows[found]
        none: tuple[str, ...] = ()
        missing = (FLAG_TERMINAL_MISSING,)
        flags = [none] * n if found.all() else [missing if i == 0 else none for i in found.tolist()]
        if self.persist and not self.write_behind:
            self.state.flush()
        return out, flags

    def _forget_rows(self) -> None:
        self._row_index = {}
        self._n_rows = _LAST_RESERVED_ROW

    def _add_rows(self, got: Mapping[tuple[str, int], TerminalRow]) -> None:
        base = self._n_rows + 1
        need = base + len(got)
        if need > len(self._rows):
            grown = np.zeros((max(need, 2 * len(self._rows)), 6), dtype=np.float64)
            grown[:base] = self._rows[:base]
            self._rows = grown
        self._rows[base:need] = np.array(list(got.values()), dtype=np.float64).reshape(-1, 6)
        index = self._row_index
        days = {day for _, day in got}
        if len(days) == 1:  # usual: one day, one dict update in C
            index.setdefault(days.pop(), {}).update(
                zip(map(itemgetter(0), got), range(base, need), strict=True)
            )
        else:
            for (terminal, day), row in zip(got, range(base, need), strict=True):
                index.setdefault(day, {})[terminal] = row
        self._n_rows += len(got)

    def _lookup(self, terminals: list[str], days: list[int], one_day: bool) -> list[int]:
        """Each event's row in ``self._rows``, 0 where none is kept."""
        index = self._row_index
        if one_day:
            return list(map(index.get(days[0], {}).get, terminals, repeat(0)))
        return [index.get(d, {}).get(t, 0) for t, d in zip(terminals, days, strict=True)]

    def _terminal_rows(self, terminals: list[str], day_array: Ints, start_day: int | None) -> Ints:
        """Per event: the index of its terminal row in ``self._rows`` (0: not published, a
        zero row; 1: final zeros). Days the source can answer for every terminal at once
        (:meth:`TerminalRows.triage`) take no per-event lookup."""
        if isinstance(self.terminal_rows, NoTerminalRows):
            return np.zeros(len(terminals), dtype=np.int64)
        codes = self.terminal_rows.triage(day_array, start_day)
        ask = codes == ASK
        if ask.all():
            return self._published(terminals, day_array.tolist(), start_day)
        found = np.zeros(len(terminals), dtype=np.int64)
        found[codes == FINAL_ZEROS] = _FINAL_ZEROS_ROW
        if ask.any():
            rows = np.flatnonzero(ask)
            picked = rows.tolist()
            found[rows] = self._published(
                [terminals[i] for i in picked], day_array[rows].tolist(), start_day
            )
        return found

    def _published(self, terminals: list[str], days: list[int], start_day: int | None) -> Ints:
        """:meth:`_terminal_rows` for the events to look up, row by row (kept between batches
        when ``state_cache``)."""
        if not self.state_cache:
            self._forget_rows()
        one_day = min(days) == max(days)  # usual: then one dict serves the whole batch
        found = self._lookup(terminals, days, one_day)
        if 0 in found:
            unknown = map(not_, found)
            if one_day:
                want = set(zip(compress(terminals, unknown), repeat(days[0])))
            else:
                want = set(compress(zip(terminals, days, strict=True), unknown))
            got = self.terminal_rows.rows(want, start_day)
            if self._n_rows + len(got) > self._max_rows:
                self._forget_rows()
            if got:
                self._add_rows(got)
                found = self._lookup(terminals, days, one_day)
        return np.array(found, dtype=np.int64)
