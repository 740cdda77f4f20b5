"""Features in the stream, compiled from the repository's definitions, per batch.

Event columns in (a decoder's output plus ``SEQ_COLUMN``), the model's input matrix out, in
``defs.inputs`` order:

- stream views: :class:`~stream_infer.state.entities.EntityState` (the compiled kernel over
  bounded, durable entity histories);
- daily views: each event's row of its own UTC day from a
  :class:`~stream_infer.streamdef.daily_source.DailyRowSource` (:class:`DailyTable`). A row
  that is not final yet gives zeros for every feature of the view and flags the event
  (:func:`unavailable_flag`), never silently another day's row;
- on-demand views: :func:`~stream_infer.streamdef.ondemand.apply_on_demand`, once per batch;
- a service input that is a plain event field: the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_infer.features.daily_table import NOT_FINAL_ROW, DailyTable
from stream_infer.state.entities import DROP_DELAY_S, EntityState
from stream_infer.state.entity_rows import EntityStore
from stream_infer.streamdef.daily_source import DailyRowSource, NoDailyRows
from stream_infer.streamdef.ondemand import apply_on_demand
from stream_infer.streamdef.spec import SECONDS_PER_DAY, SEQ_COLUMN, DailyView, StreamDefinitions

__all__ = ["FeatureComputer", "unavailable_flag"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Columns = Mapping[str, npt.NDArray[Any]]


def unavailable_flag(view: DailyView) -> str:
    """The flag of an event whose ``view`` row was not final in time: named by the entity its
    join field holds (``terminal_id`` -> ``terminal_features_unavailable``), so the fraud
    example's flag is the one dashboards and alerts know."""
    return f"{view.join_field.removesuffix('_id')}_features_unavailable"


class FeatureComputer:
    """Fills the ``(n, len(defs.inputs))`` input matrix for a batch and updates the stream
    views' state.

    Args:
        defs: the repository's definitions.
        daily_rows: published daily-view rows (None: nothing wired, every such row flagged).
        store: durable entity histories (None: memory only).
        persist: record new entries (the worker); False for read-only callers (the sidecar).
        write_behind: leave recorded entries for the caller to save (``state.take_pending``)
            instead of saving them inside :meth:`compute`.
        cache: keep histories and rows in memory between batches (the worker owns its
            partitions); False reloads every batch (the sidecar reads what workers wrote).
        entity_cache_size: entities kept in memory (LRU).
        prune_margin_days: history kept past the longest window, for late events.
        drop_delay_s: how long the store keeps an entry after it went out of reach.
        max_daily_rows: published daily rows kept in memory between batches, per view.
    """

    def __init__(
        self,
        defs: StreamDefinitions,
        daily_rows: DailyRowSource | None = None,
        store: EntityStore | None = None,
        *,
        persist: bool = True,
        cache: bool = True,
        write_behind: bool = False,
        entity_cache_size: int = 200_000,
        prune_margin_days: int = 1,
        drop_delay_s: float = DROP_DELAY_S,
        max_daily_rows: int = 200_000,
    ) -> None:
        self.defs = defs
        self.write_behind = write_behind
        self.persist = persist
        self.state = EntityState(
            defs,
            store,
            cache=cache,
            persist=persist,
            max_entities=entity_cache_size,
            margin_s=prune_margin_days * SECONDS_PER_DAY,
            drop_delay_s=drop_delay_s,
        )
        self._store = store
        self._start_day: int | None = None
        self._start_loaded = False
        self.daily_rows: DailyRowSource = daily_rows or NoDailyRows()
        self.tables = [DailyTable(v, keep=cache, max_rows=max_daily_rows) for v in defs.daily_views]
        self._flags = [(unavailable_flag(v),) for v in defs.daily_views]
        self.names = defs.inputs
        stream = defs.stream_features()
        daily = defs.daily_features()
        self._stream_at = {name: j for j, name in enumerate(stream)}
        self._daily_at = {name: j for j, name in enumerate(daily)}
        self._needs_daily = bool(defs.daily_views)

    @property
    def width(self) -> int:
        """Columns of the input matrix (the service's features)."""
        return len(self.names)

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
        self, events: Columns, partitions: Ints | None = None
    ) -> tuple[Floats, list[tuple[str, ...]]]:
        """The feature matrix (rows in ``events`` order, float64, columns in ``defs.inputs``
        order) and per-row flags. ``events``: the source's fields and ``SEQ_COLUMN``;
        ``partitions``: each event's partition (None: all 0).

        Every store read happens before any history changes, so when one fails the state is
        as before the call and calling again with the same events gives the same features.
        Without ``write_behind`` the batch is saved at the end; if that fails, the histories
        keep the batch's entries and still record them for the next save, and a repeated
        call gives the same features (adding an entry twice changes nothing).

        Raises:
            StoreUnavailableError: the state store could not be read or written.
            OnDemandError: an on-demand view's function broke its contract.
            KeyError: a column the definitions read is missing.
        """
        src = self.defs.source
        n = len(events[SEQ_COLUMN])
        out = np.empty((n, self.width), dtype=np.float64)
        if n == 0:
            return out, []
        times = np.asarray(events[src.timestamp_field], dtype=np.int64)
        days = times // SECONDS_PER_DAY
        start_day = self.stream_start_day(int(days.min()))
        found = [
            t.lookup(self.daily_rows, events[t.view.join_field].tolist(), days, start_day)
            for t in self.tables
        ]
        parts = partitions if partitions is not None else np.zeros(n, dtype=np.int64)
        stream = self.state.features(events, parts)
        feats: dict[str, npt.NDArray[Any]] = {}
        if self._needs_daily:
            daily = np.hstack([t.rows[f] for t, f in zip(self.tables, found, strict=True)])
            feats = {name: daily[:, j] for name, j in self._daily_at.items()}
        feats |= {name: stream[:, j] for name, j in self._stream_at.items()}
        if self.defs.on_demand:
            feats |= apply_on_demand(self.defs.on_demand, events, feats, n)
        for j, name in enumerate(self.names):
            out[:, j] = feats[name] if name in feats else events[name]
        flags = self._flag(found, n)
        if self.persist and not self.write_behind:
            self.state.flush()
        return out, flags

    def _flag(self, found: list[Ints], n: int) -> list[tuple[str, ...]]:
        none: tuple[str, ...] = ()
        missing = [f == NOT_FINAL_ROW for f in found]
        if not any(m.any() for m in missing):
            return [none] * n
        if len(missing) == 1:
            flag = self._flags[0]
            return [flag if m else none for m in missing[0].tolist()]
        per_row = np.stack(missing, axis=1).tolist()
        return [tuple(f for (f,), m in zip(self._flags, row, strict=True) if m) for row in per_row]
