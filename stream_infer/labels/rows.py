"""Final daily-view rows from the label store's partials.

A view's row for join key ``k`` on day D reads ``k``'s partials of days
``[D - horizon, D - delay)``; the math is :func:`stream_infer.streamdef.daily.view_row`, as
everywhere else. Rows are only computed for final days, whose partials can no longer change,
so a day's partials are read from the store once and kept here for as long as a row still
needs them (a publish then costs no store read for the days it shares with the previous one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from stream_infer.labels.partials import Partial, aggregates, merge
from stream_infer.streamdef.daily import DayAggregate, view_row
from stream_infer.streamdef.daily_source import DailyRow
from stream_infer.streamdef.spec import DailyView

#: ``{day: {(view, key): {partition: partial}}}``: what the store holds of some days.
StoredPartials = Mapping[int, Mapping[tuple[str, str], Mapping[int, Partial]]]
#: Published rows: per view name, ``(join key, day) -> row``.
ViewRows = dict[str, dict[tuple[str, int], DailyRow]]


class FinalPartials:
    """Partials of final days, loaded once per day, and the rows computed from them."""

    def __init__(self, views: Sequence[DailyView]) -> None:
        self._views = {v.name: v for v in views}
        # day -> (view, key) -> column -> aggregate (partitions merged)
        self._days: dict[int, dict[tuple[str, str], Mapping[str, DayAggregate]]] = {}

    def __len__(self) -> int:
        return len(self._days)

    def missing(self, days: Iterable[int]) -> list[int]:
        """The days of ``days`` not held yet."""
        return [d for d in days if d not in self._days]

    def add(self, days: Iterable[int], stored: StoredPartials) -> None:
        """Hold ``stored`` for ``days``; a day without an entry had no labels. Partitions
        merge in partition order (deterministic). Only final days belong here."""
        for day in days:
            held: dict[tuple[str, str], Mapping[str, DayAggregate]] = {}
            for (view, key), parts in stored.get(day, {}).items():
                spec = self._views.get(view)
                if spec is not None:  # a view no longer defined: its partials are unread
                    held[(view, key)] = aggregates(spec, merge(parts[p] for p in sorted(parts)))
            self._days[day] = held

    def forget_before(self, day: int) -> None:
        """Drop held days before ``day`` (no row still to publish reads them)."""
        for d in [d for d in self._days if d < day]:
            del self._days[d]

    def rows(self, view: DailyView, days: Sequence[int]) -> dict[tuple[str, int], DailyRow]:
        """``view``'s rows for ``days`` (their windows must be held: see :meth:`missing`),
        keyed ``(join key, day)``; keys without a label in a day's window get no row (the
        reader takes the empty row for them, from the watermark)."""
        if not days:
            return {}
        horizon, delay = view.horizon_days, view.delay_days
        per_key: dict[str, dict[int, Mapping[str, DayAggregate]]] = {}
        for d in range(min(days) - horizon, max(days) - delay):
            for (name, key), columns in self._days.get(d, {}).items():
                if name == view.name:
                    per_key.setdefault(key, {})[d] = columns
        out: dict[tuple[str, int], DailyRow] = {}
        for key, daily in per_key.items():
            labelled = sorted(daily)
            for d in days:
                lo, hi = d - horizon, d - delay
                if any(lo <= x < hi for x in labelled):
                    out[(key, d)] = tuple(view_row(view, daily, d))
        return out
