"""Per-(daily view, UTC day, join key, partition) partial aggregates of label columns.

A label processor keeps, for each daily view, each day and each join key, one
:class:`~stream_infer.streamdef.daily.DayAggregate` (count, sum, m2, min, max) per column the
view reads, *per input partition*: a partition's partial is written only by the processor that
owns the partition's applied offset (compare-and-set), so it is the fold of that partition's
labels one at a time in offset order, whatever the batches were. Days' aggregates are then the
partitions' partials merged in partition order (Chan et al.'s formula). So the result is
deterministic: the same labels on the same partitions give the same bits, whatever the batch
sizes, the number of processors, restarts or re-deliveries.

What is exact: count, min and max always; sum (and so mean) whenever every partial sum is an
integer below 2**53 (0/1 labels, counts); m2 (var, stddev) is to rounding (Welford's update, then
Chan's merge of partitions: relative error of order 1e-15 per label merged, far below the
1e-9 the tests hold it to).

A partial travels and is stored as text: ``repr`` of its floats joined by commas, five per
column in :func:`view_columns` order (``repr`` round-trips a double exactly).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

from stream_infer.streamdef.daily import DayAggregate
from stream_infer.streamdef.spec import DailyView

#: count, sum, m2, min, max of each column, columns in view_columns order.
Partial = tuple[float, ...]


@cache
def view_columns(view: DailyView) -> tuple[str, ...]:
    """The label columns ``view``'s aggregations read, sorted (the layout of its partials)."""
    return tuple(sorted({a.column for a in view.aggregations}))


def fold(partial: Partial | None, values: Sequence[float]) -> Partial:
    """``partial`` (None: no label yet) with one more label, whose column values are
    ``values`` (in :func:`view_columns` order): Welford's update of count, sum and m2."""
    if partial is None:
        out: list[float] = []
        for x in values:
            out += (1.0, x, 0.0, x, x)
        return tuple(out)
    out = list(partial)
    for i, x in enumerate(values):
        j = 5 * i
        n, total = out[j], out[j + 1]
        new_total = total + x
        out[j] = n + 1.0
        out[j + 1] = new_total
        out[j + 2] += (x - total / n) * (x - new_total / (n + 1.0))
        out[j + 3] = min(out[j + 3], x)
        out[j + 4] = max(out[j + 4], x)
    return tuple(out)


def merge(parts: Iterable[Partial]) -> Partial:
    """Partials of one (view, day, key) from several partitions, merged in the given order
    (callers pass partition order)."""
    merged: list[float] | None = None
    for p in parts:
        if merged is None:
            merged = list(p)
            continue
        for j in range(0, len(p), 5):
            n_a, n_b = merged[j], p[j]
            delta = p[j + 1] / n_b - merged[j + 1] / n_a
            merged[j + 2] += p[j + 2] + delta * delta * n_a * n_b / (n_a + n_b)
            merged[j] = n_a + n_b
            merged[j + 1] += p[j + 1]
            merged[j + 3] = min(merged[j + 3], p[j + 3])
            merged[j + 4] = max(merged[j + 4], p[j + 4])
    if merged is None:
        raise ValueError("no partial to merge")
    return tuple(merged)


def aggregates(view: DailyView, partial: Partial) -> dict[str, DayAggregate]:
    """One :class:`DayAggregate` per column ``view`` reads."""
    return {
        c: DayAggregate(int(partial[5 * i]), *partial[5 * i + 1 : 5 * i + 5])
        for i, c in enumerate(view_columns(view))
    }


def encode(partial: Partial) -> str:
    """The stored text of a partial (exact)."""
    return ",".join(map(repr, partial))


def decode(text: str | bytes) -> Partial:
    """A partial from its stored text.

    Raises:
        ValueError: not a partial's text.
    """
    raw = text.decode() if isinstance(text, bytes) else text
    values = tuple(map(float, raw.split(",")))
    if len(values) % 5:
        raise ValueError(f"not a partial: {raw[:80]!r}")
    return values
