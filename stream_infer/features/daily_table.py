"""One daily view's published rows for a batch: each event's row, looked up once per
(join key, day) and kept between batches.

Rows are final once published (:mod:`stream_infer.streamdef.daily_source`), so a row fetched
for one batch serves every later event of that key and day. Days the source can answer for
every key at once (:meth:`DailyRowSource.triage`) take no per-event lookup.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from itertools import compress, repeat
from operator import itemgetter, not_

import numpy as np
import numpy.typing as npt

from stream_infer.streamdef.daily_source import (
    ASK,
    FINAL_EMPTY,
    DailyRow,
    DailyRowSource,
    NoDailyRows,
    empty_row,
)
from stream_infer.streamdef.spec import DailyView

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

#: Reserved rows: 0 not final yet (zeros, flagged), 1 final and empty.
NOT_FINAL_ROW = 0
_EMPTY_ROW = 1


class DailyTable:
    """Published rows of one daily view, kept between batches (up to ``max_rows``, then all
    forgotten at once) when ``keep`` (the worker); re-read every batch otherwise (the
    sidecar reads what the label processor writes)."""

    def __init__(self, view: DailyView, *, keep: bool = True, max_rows: int = 200_000) -> None:
        self.view = view
        self.width = len(view.aggregations)
        self._keep = keep
        self._max_rows = max_rows
        self._index: dict[int, dict[Hashable, int]] = {}  # day -> key -> row of ``rows``
        self._n = _EMPTY_ROW
        self.rows = np.zeros((1024, self.width), dtype=np.float64)
        self.rows[_EMPTY_ROW] = empty_row(view)

    def lookup(
        self, source: DailyRowSource, keys: list[Hashable], days: Ints, start_day: int | None
    ) -> Ints:
        """Per event: its row in :attr:`rows` (:data:`NOT_FINAL_ROW`: not final yet).

        Raises:
            StoreUnavailableError: the source could not be read.
        """
        if isinstance(source, NoDailyRows):
            return np.zeros(len(keys), dtype=np.int64)
        codes = source.triage(self.view.name, days, start_day)
        ask = codes == ASK
        if ask.all():
            return self._published(source, keys, days.tolist(), start_day)
        found = np.zeros(len(keys), dtype=np.int64)
        found[codes == FINAL_EMPTY] = _EMPTY_ROW
        if ask.any():
            rows = np.flatnonzero(ask)
            picked = rows.tolist()
            found[rows] = self._published(
                source, [keys[i] for i in picked], days[rows].tolist(), start_day
            )
        return found

    def _forget(self) -> None:
        self._index = {}
        self._n = _EMPTY_ROW

    def _add(self, got: Mapping[tuple[str, int], DailyRow]) -> None:
        base = self._n + 1
        need = base + len(got)
        if need > len(self.rows):
            grown = np.zeros((max(need, 2 * len(self.rows)), self.width), dtype=np.float64)
            grown[:base] = self.rows[:base]
            self.rows = grown
        self.rows[base:need] = np.array(list(got.values()), dtype=np.float64).reshape(
            -1, self.width
        )
        index = self._index
        days = {day for _, day in got}
        if len(days) == 1:  # usual: one day, one dict update in C
            index.setdefault(days.pop(), {}).update(
                zip(map(itemgetter(0), got), range(base, need), strict=True)
            )
        else:
            for (key, day), row in zip(got, range(base, need), strict=True):
                index.setdefault(day, {})[key] = row
        self._n += len(got)

    def _find(self, keys: list[Hashable], days: list[int], one_day: bool) -> list[int]:
        index = self._index
        if one_day:
            return list(map(index.get(days[0], {}).get, keys, repeat(0)))
        return [index.get(d, {}).get(k, 0) for k, d in zip(keys, days, strict=True)]

    def _published(
        self, source: DailyRowSource, keys: list[Hashable], days: list[int], start: int | None
    ) -> Ints:
        if not self._keep:
            self._forget()
        one_day = min(days) == max(days)  # usual: then one dict serves the whole batch
        found = self._find(keys, days, one_day)
        if 0 in found:
            unknown = map(not_, found)
            want: set[tuple[Hashable, int]]
            if one_day:
                want = set(zip(compress(keys, unknown), repeat(days[0])))
            else:
                want = set(compress(zip(keys, days, strict=True), unknown))
            got = source.rows(self.view.name, want, start)  # type: ignore[arg-type]  # any key
            if self._n + len(got) > self._max_rows:
                self._forget()
            if got:
                self._add(got)
                found = self._find(keys, days, one_day)
        return np.array(found, dtype=np.int64)
