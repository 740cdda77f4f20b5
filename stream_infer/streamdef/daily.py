"""Daily (label-derived) views from per-(entity, day) partial aggregates.

What a label processor publishes, per daily view, entity and UTC day, is one
:class:`DayAggregate` per column the view reads: count, sum, the sum of squared deviations from
the day's mean (``m2``, not a raw sum of squares: days merge by Chan's formula without the
cancellation ``sumsq - sum^2 / n`` suffers), min and max. :class:`DailyRows` turns them into each
event's daily features for its day ``D`` from days ``[D - delay - n, D - delay)``, days merged
oldest first. Held to :func:`stream_infer.streamdef.reference.daily_features` by
tests/unit/test_streamdef_kernel_property.py: count, min and max exactly, sum and mean exactly
where the day sums are exact (0/1 labels), var and stddev to 1e-9.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_infer.streamdef.reference import Column
from stream_infer.streamdef.spec import SECONDS_PER_DAY, AggFunction, DailyView, StreamDefinitions

#: ``(view name, entity key)``: whose days a :data:`DayPartials` value holds.
ViewKey = tuple[str, Hashable]
#: Per view and entity, per UTC day, one :class:`DayAggregate` per column the view reads.
DayPartials = Mapping[ViewKey, Mapping[int, Mapping[str, "DayAggregate"]]]


@dataclass(frozen=True)
class DayAggregate:
    """One column's values of one entity on one day (at least one value)."""

    count: int
    sum: float
    m2: float
    min: float
    max: float

    @staticmethod
    def of(values: Sequence[float]) -> DayAggregate:
        """The aggregate of ``values`` (non-empty), summed in order."""
        total = 0.0
        for v in values:
            total += v
        mean = total / len(values)
        m2 = 0.0
        for v in values:
            m2 += (v - mean) ** 2
        return DayAggregate(len(values), total, m2, min(values), max(values))


def day_partials(
    defs: StreamDefinitions, labels: Mapping[str, Column]
) -> dict[ViewKey, dict[int, dict[str, DayAggregate]]]:
    """Every daily view's partials from label records (deduplicated by event id, the first
    stays), in record order within a day."""
    src = defs.label_source
    if src is None or not defs.daily_views or not labels:
        return {}
    n = len(labels[src.event_id_field])
    seen: set[Any] = set()
    keep = []
    for j in range(n):
        if labels[src.event_id_field][j] not in seen:
            seen.add(labels[src.event_id_field][j])
            keep.append(j)
    out: dict[ViewKey, dict[int, dict[str, DayAggregate]]] = {}
    for view in defs.daily_views:
        columns = sorted({a.column for a in view.aggregations})
        groups: dict[tuple[Hashable, int], list[int]] = {}
        for j in keep:
            day = int(labels[src.timestamp_field][j]) // SECONDS_PER_DAY
            groups.setdefault((labels[view.entity][j], day), []).append(j)
        for (key, day), rows in groups.items():
            out.setdefault((view.name, key), {})[day] = {
                c: DayAggregate.of([float(labels[c][j]) for j in rows]) for c in columns
            }
    return out


class DailyRows:
    """Each event's daily-view features from published day partials.

    Rows that read only *final* days (see :meth:`evaluate`) are kept between calls, up to
    ``max_rows`` of them (then all are forgotten at once): most events of a stream share their
    entity's row of the day with earlier ones, and a row costs a few dozen lookups.
    """

    def __init__(self, defs: StreamDefinitions, *, max_rows: int = 200_000) -> None:
        self.defs = defs
        self.features = defs.daily_features()
        self._max_rows = max_rows
        self._final: dict[tuple[str, Hashable, int], list[float]] = {}

    def evaluate(
        self,
        events: Mapping[str, npt.NDArray[Any]],
        partials: DayPartials,
        final_through: int | None = None,
    ) -> npt.NDArray[np.float64]:
        """``(n, len(defs.daily_features()))`` features, rows in input order; an entity or a
        day without partials counts as no records.

        ``final_through``: the newest UTC day whose partials can no longer change (every label
        of it and before is in). A row reading only days up to it is kept and served again
        without looking at ``partials``; None keeps nothing.
        """
        if len(self._final) > self._max_rows:
            self._final = {}
        days = np.asarray(events[self.defs.source.timestamp_field], dtype=np.int64)
        days = days // SECONDS_PER_DAY
        out = np.empty((len(days), len(self.features)), dtype=np.float64)
        col = 0
        for view in self.defs.daily_views:
            width = len(view.aggregations)
            empty = [_finish(a.function, []) for a in view.aggregations]
            rows: list[list[float]] = []
            memo: dict[tuple[Hashable, int], list[float]] = {}
            # A row for day D reads days before D - delay: final when D - delay - 1 is.
            final_day = None if final_through is None else final_through + view.delay_days + 1
            kept = self._final
            keys = events[view.join_field].tolist()
            if not kept and not any(partials.get((view.name, k)) for k in set(keys)):
                out[:, col : col + width] = empty  # nothing published for any of them
                col += width
                continue
            for key, day in zip(keys, days.tolist(), strict=True):
                row = memo.get((key, day))
                if row is None:
                    row = kept.get((view.name, key, day))
                    if row is None:
                        held = partials.get((view.name, key))
                        row = empty if held is None else view_row(view, held, day)
                        if final_day is not None and day <= final_day:
                            kept[(view.name, key, day)] = row
                    memo[(key, day)] = row
                rows.append(row)
            if rows:
                out[:, col : col + width] = rows
            col += width
        return out


def view_row(
    view: DailyView, held: Mapping[int, Mapping[str, DayAggregate]], day: int
) -> list[float]:
    """``view``'s features for an event on ``day`` from one entity's day partials ``held``
    (a day absent from ``held`` has no records), in the view's aggregations' order."""
    end = day - view.delay_days
    first = end - view.horizon_days + view.delay_days
    if len(held) > end - first:
        present = [d for d in range(first, end) if d in held]
    else:
        present = sorted(d for d in held if first <= d < end)
    row = []
    for agg in view.aggregations:
        start = end - agg.window_s // SECONDS_PER_DAY
        row.append(_finish(agg.function, [held[d][agg.column] for d in present if d >= start]))
    return row


def _finish(function: AggFunction, days: list[DayAggregate]) -> float:
    """``function`` over the merged days (oldest first)."""
    count = 0
    total = 0.0
    m2 = 0.0
    for p in days:
        if count:  # Chan et al.: merge two groups' squared deviations about their means
            delta = p.sum / p.count - total / count
            m2 += p.m2 + delta * delta * count * p.count / (count + p.count)
        else:
            m2 = p.m2
        count += p.count
        total += p.sum
    if function == "count":
        return float(count)
    if function == "sum":
        return total
    if not count:
        return math.nan
    if function == "mean":
        return total / count
    if function == "min":
        return min(p.min for p in days)
    if function == "max":
        return max(p.max for p in days)
    if count < 2:
        return math.nan
    var = m2 / (count - 1)
    return var if function == "var" else math.sqrt(var)
