"""Published daily rows, cached: a row for (view, join key, day) never changes once published.

Rows and the completeness watermark are published together: a view's row for day D exists (or
is known to be empty, for a key with no labels in its window) once the watermark covers day
D - delay - 1, and not before. When an event's row is not final yet, :class:`CachedDailyRows`
waits, bounded by ``wait_ms``, for the label processor; after that the caller flags the score
rather than use another day's row.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np
from cachetools import LRUCache

from stream_infer.streamdef.daily_source import (
    ASK,
    FINAL_EMPTY,
    NOT_FINAL,
    DailyRow,
    Ints,
    empty_row,
    reads_before_start,
    row_is_final,
)
from stream_infer.streamdef.spec import DailyView

_WATERMARK_TTL_S = 0.2


class DailyStore(Protocol):
    """Published rows plus the completeness watermark (a DailyRowStore, read side)."""

    def rows(
        self, view: str, keys: Iterable[tuple[str, int]]
    ) -> Mapping[tuple[str, int], DailyRow]: ...

    def complete_through(self) -> int | None: ...


class CachedDailyRows:
    """A :class:`~stream_infer.streamdef.daily_source.DailyRowSource`: a bounded LRU
    (``max_entries`` rows over every view) in front of a daily-row store.

    Store failures propagate (:class:`~stream_infer.errors.StoreUnavailableError`); what was
    cached before the failure stays, and is final, so a repeated call returns the same rows.

    Raises:
        KeyError: (from :meth:`rows`, :meth:`triage`) a view name not among ``views``.
    """

    def __init__(
        self,
        store: DailyStore,
        views: Sequence[DailyView],
        max_entries: int = 200_000,
        wait_ms: float = 0.0,
    ) -> None:
        self._store = store
        self._views = {v.name: v for v in views}
        self._empty = {v.name: empty_row(v) for v in views}
        self._cache: LRUCache[tuple[str, str, int], DailyRow] = LRUCache(maxsize=max_entries)
        self._wait_s = wait_ms / 1000.0
        self.misses = 0
        self._complete: int | None = None
        self._complete_read_at = -1e9

    def rows(
        self,
        view: str,
        keys: Iterable[tuple[str, int]],
        stream_start_day: int | None = None,
    ) -> Mapping[tuple[str, int], DailyRow]:
        """Final rows of ``view`` for ``keys``; keys whose day is not final yet are absent.

        A row reads days [D - horizon, D - delay): if the stream has no data before
        D - delay there is no label to wait for, and the row is final and empty.
        """
        spec = self._views[view]
        empty = self._empty[view]
        cache = self._cache
        found: dict[tuple[str, int], DailyRow] = {}
        missing: list[tuple[str, int]] = []
        for key in keys:
            row = cache.get((view, *key))
            if row is None:
                missing.append(key)
            else:
                found[key] = row
        if not missing:
            return found
        deadline = time.monotonic() + self._wait_s
        if stream_start_day is not None:
            for key in [k for k in missing if reads_before_start(spec, k[1], stream_start_day)]:
                found[key] = cache[(view, *key)] = empty
            missing = [k for k in missing if k not in found]
            if not missing:
                return found
        fresh = False
        while True:
            complete = self._watermark(refresh=fresh)
            fresh = True
            final = [k for k in missing if row_is_final(spec, k[1], complete)]
            if final:
                fetched = self._store.rows(view, final)
                for key in final:
                    found[key] = cache[(view, *key)] = fetched.get(key, empty)
                missing = [k for k in missing if k not in found]
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        self.misses += len(missing)
        return found

    def triage(self, view: str, days: Ints, stream_start_day: int | None = None) -> Ints:
        """Per event day, without a lookup per key: final and empty for a day whose row reads
        only days before the stream's start (as :meth:`rows`), and, when this cache does not
        wait for rows, not final for a day past the watermark; :data:`ASK` otherwise."""
        spec = self._views[view]
        codes = np.full(len(days), ASK, dtype=np.int64)
        if stream_start_day is not None:
            codes[days - spec.delay_days <= stream_start_day] = FINAL_EMPTY
        if self._wait_s == 0:
            complete = self._watermark(refresh=False)
            later = codes == ASK
            if complete is not None:
                later &= days - spec.delay_days - 1 > complete
            codes[later] = NOT_FINAL
            self.misses += int(later.sum())
        return codes

    def _watermark(self, refresh: bool) -> int | None:
        # The watermark moves once a day of event time: re-reading it for every batch would
        # cost a store round trip per batch for nothing. While waiting, always re-read.
        now = time.monotonic()
        if refresh or now - self._complete_read_at > _WATERMARK_TTL_S:
            self._complete = self._store.complete_through()
            self._complete_read_at = now
        return self._complete
