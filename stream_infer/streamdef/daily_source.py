"""Published daily-view rows: what the label processor writes and the feature computer reads.

A daily view's row for (join key ``k``, UTC day ``D``) reads the label records of ``k`` dated on
days ``[D - delay - n, D - delay)``; it is *final* once every label of day ``D - delay - 1`` and
before is in, which the label processor says with one watermark per label source
(``complete_through``: the newest UTC day whose labels are all in). So the row of ``D`` is final
when ``D - delay - 1 <= complete_through``. Labels cannot exist before the stream's first day:
a row whose days are all before ``stream_start_day`` (``D - delay <= stream_start_day``) is
final and empty (:func:`empty_row`) without asking anyone.

Implementations: :class:`NoDailyRows` (nothing wired), :class:`InMemoryDailyRows` (tests and
offline replays), and the cached store reader in :mod:`stream_infer.state.daily_cache`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from stream_infer.streamdef.daily import DayAggregate, view_row
from stream_infer.streamdef.spec import DailyView

#: :meth:`DailyRowSource.triage` codes: look the row up / the row is final and empty / no row
#: of that day is final yet.
ASK: Final = 0
FINAL_EMPTY: Final = 1
NOT_FINAL: Final = 2

Ints = npt.NDArray[np.int64]
#: A daily view's features for one (join key, day), in its aggregations' order.
DailyRow = tuple[float, ...]

_EMPTY_IS_ZERO: Final = frozenset({"count", "sum"})


class DailyRowSource(Protocol):
    """Published daily-view rows (the label processor's output)."""

    def rows(
        self,
        view: str,
        keys: Iterable[tuple[str, int]],
        stream_start_day: int | None = None,
    ) -> Mapping[tuple[str, int], DailyRow]:
        """Each final ``(join key, UTC day)``'s row of ``view``; a key whose row is not final
        yet is absent. Rows reading only days before ``stream_start_day`` are final and empty.

        Raises:
            StoreUnavailableError: a store behind the source cannot answer.
        """
        ...

    def triage(self, view: str, days: Ints, stream_start_day: int | None = None) -> Ints:
        """Per event day, what :meth:`rows` would say of any key without asking per key:
        :data:`ASK`, :data:`FINAL_EMPTY` or :data:`NOT_FINAL`."""
        ...


def empty_row(view: DailyView) -> DailyRow:
    """The row of a window without records: count and sum 0.0, every other function NaN."""
    return tuple(0.0 if a.function in _EMPTY_IS_ZERO else math.nan for a in view.aggregations)


def row_is_final(view: DailyView, day: int, complete_through: int | None) -> bool:
    """Whether the row of ``day`` reads only days whose labels are all in."""
    return complete_through is not None and day - view.delay_days - 1 <= complete_through


def reads_before_start(view: DailyView, day: int, stream_start_day: int | None) -> bool:
    """Whether the row of ``day`` reads only days before the stream's first day (final, empty)."""
    return stream_start_day is not None and day - view.delay_days <= stream_start_day


def ask_all(days: Ints) -> Ints:
    """Every day :data:`ASK`: for sources with no cheaper answer."""
    return np.zeros(len(days), dtype=np.int64)


class NoDailyRows:
    """No label processor wired in: no row is ever final (every day :data:`NOT_FINAL`)."""

    def rows(
        self,
        view: str,
        keys: Iterable[tuple[str, int]],
        stream_start_day: int | None = None,
    ) -> Mapping[tuple[str, int], DailyRow]:
        return {}

    def triage(self, view: str, days: Ints, stream_start_day: int | None = None) -> Ints:
        return np.full(len(days), NOT_FINAL, dtype=np.int64)


class InMemoryDailyRows:
    """Rows computed from day partials held in memory (tests, offline replays).

    A day's row is served once ``complete_through`` covers the days it reads (see the module).

    Raises:
        KeyError: (from :meth:`rows`, :meth:`triage`) a view name not among ``views``.
    """

    def __init__(self, views: Iterable[DailyView], complete_through: int | None = None) -> None:
        self._views = {v.name: v for v in views}
        self._partials: dict[tuple[str, Hashable], dict[int, Mapping[str, DayAggregate]]] = {}
        self._complete = complete_through

    def add(self, view: str, key: Hashable, day: int, columns: Mapping[str, DayAggregate]) -> None:
        """Set ``view``'s partials of ``key`` on ``day`` (one aggregate per column it reads)."""
        self._views[view]  # refuse an unknown view here, not at read time
        self._partials.setdefault((view, key), {})[day] = dict(columns)

    def add_partials(
        self, partials: Mapping[tuple[str, Hashable], Mapping[int, Mapping[str, DayAggregate]]]
    ) -> None:
        """Add every ``(view, key) -> day -> columns`` of ``partials`` (as
        :func:`stream_infer.streamdef.daily.day_partials` returns them)."""
        for (view, key), days in partials.items():
            for day, columns in days.items():
                self.add(view, key, day, columns)

    def set_complete_through(self, day: int | None) -> None:
        """Move the watermark (any direction: tests set what they need)."""
        self._complete = day

    def rows(
        self,
        view: str,
        keys: Iterable[tuple[str, int]],
        stream_start_day: int | None = None,
    ) -> Mapping[tuple[str, int], DailyRow]:
        spec = self._views[view]
        out: dict[tuple[str, int], DailyRow] = {}
        for key, day in keys:
            if reads_before_start(spec, day, stream_start_day):
                out[(key, day)] = empty_row(spec)
            elif row_is_final(spec, day, self._complete):
                held = self._partials.get((view, key))
                out[(key, day)] = (
                    empty_row(spec) if held is None else tuple(view_row(spec, held, day))
                )
        return out

    def triage(self, view: str, days: Ints, stream_start_day: int | None = None) -> Ints:
        self._views[view]  # an unknown view is refused as by rows()
        return ask_all(days)
