"""Published terminal rows, cached: a row for (terminal, day) never changes once published.

Rows and the completeness watermark are published together: the row for day D exists (or is
known to be all zeros, for a terminal with no labelled transactions in its window) once the
watermark covers day D - 8, and not before. When an event's row is not final yet,
:class:`CachedTerminalRows` waits, bounded by ``wait_ms``, for the label processor; after that
the caller flags the score rather than use another day's row.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Protocol

import numpy as np
from cachetools import LRUCache

from stream_infer.features.definitions import LABEL_DELAY_DAYS
from stream_infer.features.online import ASK, FINAL_ZEROS, NOT_FINAL, ZERO_ROW, Ints, TerminalRow

_LAG = LABEL_DELAY_DAYS + 1
_WATERMARK_TTL_S = 0.2


class TerminalSource(Protocol):
    """Published rows plus the completeness watermark (a TerminalStore)."""

    def rows(self, keys: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], TerminalRow]: ...

    def complete_through(self) -> int | None: ...


class CachedTerminalRows:
    """A bounded LRU (``max_entries`` rows) in front of a terminal store.

    Store failures propagate (:class:`~stream_infer.errors.StoreUnavailableError`); what was
    cached before the failure stays, and is final, so a repeated call returns the same rows.
    """

    def __init__(
        self, store: TerminalSource, max_entries: int = 200_000, wait_ms: float = 0.0
    ) -> None:
        self._store = store
        self._cache: LRUCache[tuple[str, int], TerminalRow] = LRUCache(maxsize=max_entries)
        self._wait_s = wait_ms / 1000.0
        self.misses = 0
        self._complete: int | None = None
        self._complete_read_at = -1e9

    def rows(
        self, keys: Iterable[tuple[str, int]], stream_start_day: int | None = None
    ) -> Mapping[tuple[str, int], TerminalRow]:
        """Final rows for ``keys``; keys whose day is not final yet are absent.

        A row reads days [D - 37, D - 7): if the stream has no data before D - 7 there is no
        label to wait for, and the row is final zeros.
        """
        cache = self._cache
        found: dict[tuple[str, int], TerminalRow] = {}
        missing: list[tuple[str, int]] = []
        for key in keys:
            row = cache.get(key)
            if row is None:
                missing.append(key)
            else:
                found[key] = row
        if not missing:
            return found
        deadline = time.monotonic() + self._wait_s
        if stream_start_day is not None:
            for key in [k for k in missing if k[1] - LABEL_DELAY_DAYS <= stream_start_day]:
                found[key] = cache[key] = ZERO_ROW
            missing = [k for k in missing if k not in found]
            if not missing:
                return found
        fresh = False
        while True:
            complete = self._watermark(refresh=fresh)
            fresh = True
            final = [] if complete is None else [k for k in missing if k[1] - _LAG <= complete]
            if final:
                fetched = self._store.rows(final)
                for key in final:
                    found[key] = cache[key] = fetched.get(key, ZERO_ROW)
                missing = [k for k in missing if k not in found]
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        self.misses += len(missing)
        return found

    def triage(self, days: Ints, stream_start_day: int | None = None) -> Ints:
        """Per event day, without a lookup per key: final zeros for a day whose row reads
        only days before the stream's start (as :meth:`rows`), and, when this cache does not
        wait for rows, not final for a day past the watermark; :data:`ASK` otherwise."""
        codes = np.full(len(days), ASK, dtype=np.int64)
        if stream_start_day is not None:
            codes[days - LABEL_DELAY_DAYS <= stream_start_day] = FINAL_ZEROS
        if self._wait_s == 0:
            complete = self._watermark(refresh=False)
            later = codes == ASK
            if complete is not None:
                later &= days - _LAG > complete
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
