"""Published terminal rows, cached: a row for (terminal, day) never changes once published.

When an event's row is not published yet, :class:`CachedTerminalRows` waits (bounded by
``wait_ms``) for the label processor to publish it; after that the caller flags the score.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Protocol

from stream_infer.features.definitions import LABEL_DELAY_DAYS
from stream_infer.features.online import ZERO_ROW, TerminalRow


class TerminalSource(Protocol):
    """Published rows plus the completeness watermark (a TerminalStore)."""

    def rows(self, keys: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], TerminalRow]: ...

    def complete_through(self) -> int | None: ...


class CachedTerminalRows:
    """A bounded LRU in front of a terminal store.

    A terminal with no labelled transactions in a final row's window has no row: once the
    watermark covers day D - 8, its absence means all zeros, not "not published yet".
    """

    def __init__(
        self, store: TerminalSource, max_entries: int = 200_000, wait_ms: float = 0.0
    ) -> None:
        self._store = store
        self._cache: OrderedDict[tuple[str, int], TerminalRow] = OrderedDict()
        self._max = max_entries
        self._wait_s = wait_ms / 1000.0
        self.misses = 0

    def rows(self, keys: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], TerminalRow]:
        cache = self._cache
        found: dict[tuple[str, int], TerminalRow] = {}
        missing: list[tuple[str, int]] = []
        for key in keys:
            row = cache.get(key)
            if row is None:
                missing.append(key)
            else:
                found[key] = row
        deadline = time.monotonic() + self._wait_s
        while missing:
            fetched = self._store.rows(missing)
            for key, row in fetched.items():
                found[key] = cache[key] = row
            missing = [k for k in missing if k not in fetched]
            if missing:
                complete = self._store.complete_through()
                if complete is not None:
                    final = [k for k in missing if k[1] - LABEL_DELAY_DAYS - 1 <= complete]
                    for key in final:
                        found[key] = cache[key] = ZERO_ROW
                    missing = [k for k in missing if k[1] - LABEL_DELAY_DAYS - 1 > complete]
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        self.misses += len(missing)
        while len(cache) > self._max:
            cache.popitem(last=False)
        return found
