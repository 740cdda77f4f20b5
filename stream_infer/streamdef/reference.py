"""The plain evaluator of a :class:`~stream_infer.streamdef.spec.StreamDefinitions`: row by row,
obviously correct, slow. The compiled kernel (:mod:`stream_infer.streamdef.kernel`), the daily
rows (:mod:`stream_infer.streamdef.daily`) and the training-set builder are held to it.

Semantics are spec.py's, spelled out here as code:

- stream views: events are taken in the given order; each is compared with its entity's stored
  entries only. A *duplicate* is an event whose entity already holds an entry of the same second
  with the same event id (a re-delivery carries its time): it adds nothing and gets exactly the
  features its first occurrence got. Any other event is stored, then its window is every stored
  entry of its entity with time in ``(t - window, t]`` ordered at or before it by
  ``(time, seq)`` (an entry of the same second and the same seq stored before it counts).
- daily views: label records deduplicated by event id (the first stays), grouped by their UTC
  day; a window reads days ``[D - delay - n, D - delay)``.
- sample variance: ``sum((x - mean)^2) / (k - 1)``, NaN below two values; stddev its root.
  Sums add the window's values in ``(time, seq)`` order from ``0.0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from stream_infer.streamdef.ondemand import OnDemandError
from stream_infer.streamdef.spec import (
    SECONDS_PER_DAY,
    SEQ_COLUMN,
    AggFunction,
    AggSpec,
    StreamDefinitions,
)

#: One column of events or labels: a list, or a numpy array (as the kernel's batches are).
Column = Sequence[Any] | npt.NDArray[Any]


def aggregate(function: AggFunction, values: Sequence[float]) -> float:
    """``function`` over ``values`` (in order); empty: count and sum 0, anything else NaN."""
    k = len(values)
    if function == "count":
        return float(k)
    if function == "sum":
        return _sum(values)
    if k == 0:
        return math.nan
    if function == "mean":
        return _sum(values) / k
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    if k < 2:
        return math.nan
    mean = _sum(values) / k
    var = _sum([(x - mean) ** 2 for x in values]) / (k - 1)
    return var if function == "var" else math.sqrt(var)


def _sum(values: Sequence[float]) -> float:
    total = 0.0
    for x in values:
        total += x
    return total


@dataclass
class _Entry:
    time: int
    seq: int
    event_id: Any
    values: dict[str, float]
    features: list[float]


def stream_features(
    defs: StreamDefinitions, events: Mapping[str, Column]
) -> dict[str, list[float]]:
    """Every stream view's features for each event, in ``defs.stream_features()`` order.

    ``events`` are event columns; ``SEQ_COLUMN`` defaults to the row index when absent.
    """
    src = defs.source
    aggs = [a for v in defs.stream_views for a in v.aggregations]
    columns = sorted({a.column for a in aggs})
    n = _length(events)
    seqs = events[SEQ_COLUMN] if SEQ_COLUMN in events else range(n)
    state: dict[Any, list[_Entry]] = {}
    rows: list[list[float]] = []
    for i in range(n):
        key = events[src.key_field][i]
        time = int(events[src.timestamp_field][i])
        seq = int(seqs[i])
        event_id = events[src.event_id_field][i]
        entries = state.setdefault(key, [])
        first = next((e for e in entries if e.time == time and e.event_id == event_id), None)
        if first is not None:
            rows.append(list(first.features))
            continue
        entry = _Entry(time, seq, event_id, {c: float(events[c][i]) for c in columns}, [])
        entries.append(entry)
        before = sorted(
            (e for e in entries if (e.time, e.seq) <= (time, seq) and e is not entry),
            key=lambda e: (e.time, e.seq),
        )
        ordered = [*before, entry]  # sorted() is stable: equal (time, seq) keep arrival order
        entry.features = [_window(a, ordered, time) for a in aggs]
        rows.append(list(entry.features))
    return {a.feature: [r[j] for r in rows] for j, a in enumerate(aggs)}


def _window(agg: AggSpec, ordered: list[_Entry], time: int) -> float:
    values = [e.values[agg.column] for e in ordered if e.time > time - agg.window_s]
    return aggregate(agg.function, values)


def daily_features(
    defs: StreamDefinitions,
    events: Mapping[str, Column],
    labels: Mapping[str, Column],
) -> dict[str, list[float]]:
    """Every daily view's features for each event, all labels known (the offline, final view).

    Raises:
        ValueError: there are daily views but no label source.
    """
    out: dict[str, list[float]] = {}
    if not defs.daily_views:
        return out
    lsrc = defs.label_source
    if lsrc is None:
        raise ValueError("daily views need a label source")
    m = _length(labels)
    seen: set[Any] = set()
    keep: list[int] = []
    for j in range(m):
        if labels[lsrc.event_id_field][j] not in seen:
            seen.add(labels[lsrc.event_id_field][j])
            keep.append(j)
    n = _length(events)
    for view in defs.daily_views:
        for agg in view.aggregations:
            col = out.setdefault(agg.feature, [])
            days_n = agg.window_s // SECONDS_PER_DAY
            for i in range(n):
                day = int(events[defs.source.timestamp_field][i]) // SECONDS_PER_DAY
                key = events[view.join_field][i]
                end = day - view.delay_days
                dated = sorted(
                    (int(labels[lsrc.timestamp_field][j]) // SECONDS_PER_DAY, j)
                    for j in keep
                    if labels[view.entity][j] == key
                )
                values = [float(labels[agg.column][j]) for d, j in dated if end - days_n <= d < end]
                col.append(aggregate(agg.function, values))
    return out


def on_demand_features(
    defs: StreamDefinitions,
    events: Mapping[str, Column],
    features: Mapping[str, Column],
) -> dict[str, list[Any]]:
    """Every on-demand view's outputs, views in order, each called once with all rows.

    Raises:
        OnDemandError: a view's function returned other names or lengths than declared.
    """
    n = _length(events)
    known: dict[str, Column] = {**events, **features}
    out: dict[str, list[Any]] = {}
    for view in defs.on_demand:
        got = view.function({name: list(known[name]) for name in view.inputs})
        names = [o.name for o in view.outputs]
        if sorted(got) != sorted(names) or any(len(got[k]) != n for k in names):
            raise OnDemandError(f"on-demand view {view.name!r} returned the wrong columns")
        for name in names:
            out[name] = list(got[name])
            known[name] = out[name]
    return out


def feature_rows(
    defs: StreamDefinitions,
    events: Mapping[str, Column],
    labels: Mapping[str, Column] | None = None,
) -> dict[str, list[Any]]:
    """Every feature the service names, keys in ``defs.inputs`` order (no labels: every daily
    window empty). An input that is an event field and no feature is the field itself."""
    feats: dict[str, Column] = dict(stream_features(defs, events))
    if defs.daily_views:
        lsrc = defs.label_source
        empty: dict[str, list[Any]] = {f.name: [] for f in lsrc.fields} if lsrc is not None else {}
        feats.update(daily_features(defs, events, labels if labels is not None else empty))
    feats.update(on_demand_features(defs, events, feats))
    return {name: list(feats[name] if name in feats else events[name]) for name in defs.inputs}


def _length(columns: Mapping[str, Column]) -> int:
    return len(next(iter(columns.values()))) if columns else 0
