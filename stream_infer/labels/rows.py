"""Final daily-view rows from the label store's partials.

A view's row for join key ``k`` on day D reads ``k``'s partials of days
``[D - horizon, D - delay)``. Rows are only computed for final days, whose partials can no
longer change, so a day's partials are read from the store once and kept here for as long as a
row still needs them (a publish then costs no store read for the days it shares with the
previous one).

The math is :func:`stream_infer.streamdef.daily.view_row`'s, bit for bit (a hypothesis test
holds it to it): days merge oldest first by the same formula, but each (column, window) is
merged once for every function that reads it, over plain tuples, since a publish computes a
row for every key with a label in its window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from stream_infer.labels.partials import Partial, merge, view_columns
from stream_infer.streamdef.daily_source import DailyRow
from stream_infer.streamdef.spec import SECONDS_PER_DAY, DailyView

#: ``{day: {(view, key): {partition: partial}}}``: what the store holds of some days.
StoredPartials = Mapping[int, Mapping[tuple[str, str], Mapping[int, Partial]]]
#: Published rows: per view name, ``(join key, day) -> row``.
ViewRows = dict[str, dict[tuple[str, int], DailyRow]]


class FinalPartials:
    """Partials of final days, loaded once per day, and the rows computed from them."""

    def __init__(self, views: Sequence[DailyView]) -> None:
        self._views = {v.name for v in views}
        # day -> (view, key) -> partial (partitions merged)
        self._days: dict[int, dict[tuple[str, str], Partial]] = {}

    def __len__(self) -> int:
        return len(self._days)

    def missing(self, days: Iterable[int]) -> list[int]:
        """The days of ``days`` not held yet."""
        return [d for d in days if d not in self._days]

    def add(self, days: Iterable[int], stored: StoredPartials) -> None:
        """Hold ``stored`` for ``days``; a day without an entry had no labels. Partitions
        merge in partition order (deterministic). Only final days belong here."""
        for day in days:
            self._days[day] = {
                vk: merge(parts[p] for p in sorted(parts))
                for vk, parts in stored.get(day, {}).items()
                if vk[0] in self._views  # a view no longer defined: its partials are unread
            }

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
        per_key: dict[str, dict[int, Partial]] = {}
        for d in range(min(days) - horizon, max(days) - delay):
            for (name, key), partial in self._days.get(d, {}).items():
                if name == view.name:
                    per_key.setdefault(key, {})[d] = partial
        plan = _plan(view)
        out: dict[tuple[str, int], DailyRow] = {}
        for key, daily in per_key.items():
            labelled = sorted(daily)
            for d in days:
                lo, hi = d - horizon, d - delay
                present = [x for x in labelled if lo <= x < hi]
                if present:
                    out[(key, d)] = _row(plan, daily, present, hi)
        return out


#: Per (column offset in a partial, window in days): the positions and functions reading it.
_Plan = list[tuple[int, int, list[tuple[int, str]]]]


def _plan(view: DailyView) -> _Plan:
    columns = view_columns(view)
    groups: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for i, agg in enumerate(view.aggregations):
        key = (5 * columns.index(agg.column), agg.window_s // SECONDS_PER_DAY)
        groups.setdefault(key, []).append((i, agg.function))
    return [(j, n, reads) for (j, n), reads in groups.items()]


def _row(plan: _Plan, daily: Mapping[int, Partial], present: list[int], end: int) -> DailyRow:
    row = [0.0] * sum(len(reads) for _j, _n, reads in plan)
    for j, n, reads in plan:
        count = 0.0
        total = 0.0
        m2 = 0.0
        low = high = math.nan
        for d in present:  # oldest first, as streamdef.daily merges them
            if d < end - n:
                continue
            p = daily[d]
            c, s = p[j], p[j + 1]
            if count:  # Chan et al., exactly as streamdef.daily._finish
                delta = s / c - total / count
                m2 += p[j + 2] + delta * delta * count * c / (count + c)
                low = min(low, p[j + 3])
                high = max(high, p[j + 4])
            else:
                m2 = p[j + 2]
                low, high = p[j + 3], p[j + 4]
            count += c
            total += s
        for i, function in reads:
            row[i] = _finish(function, count, total, m2, low, high)
    return tuple(row)


def _finish(function: str, count: float, total: float, m2: float, low: float, high: float) -> float:
    if function == "count":
        return count
    if function == "sum":
        return total
    if not count:
        return math.nan
    if function == "mean":
        return total / count
    if function == "min":
        return low
    if function == "max":
        return high
    if count < 2:
        return math.nan
    var = m2 / (count - 1)
    return var if function == "var" else math.sqrt(var)
