"""The compiled kernel equals the reference evaluator, for random definitions and streams.

Definitions: 1-3 numeric columns (float64, int64, bool), 1-6 aggregations of any function over
windows from 1 s to 7 days. Streams: in-order events, late events (up to ``LATE_MAX`` behind
their entity's newest), same-second ties (with a larger or a smaller seq than the entries
there), re-deliveries of recent events (same id and second, old or new seq, in the same batch or
a later one), cut into random batches; after a batch random entities are exported and evicted,
and loaded again before the next batch that needs them; optionally pruned with margin
``LATE_MAX``.

Float contract: count, min and max equal the reference exactly; sum and mean exactly when the
values sit on a grid (quarters: every running sum is exact), to 1e-9 relative / 1e-7 absolute
otherwise; var and stddev to 1e-9 relative / 1e-9 absolute. Evicting and reloading changes
nothing, bit for bit. The daily rows equal the reference's daily features the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.streamdef import reference
from stream_infer.streamdef.daily import DailyRows, day_partials
from stream_infer.streamdef.kernel import EntityHistory, StreamKernel
from stream_infer.streamdef.spec import (
    AGG_FUNCTIONS,
    SEQ_COLUMN,
    AggSpec,
    DailyView,
    StreamDefinitions,
    ValueKind,
)
from tests.unit.streamdef_fixtures import batch, source, stream_only

DAY = 86_400
T0 = 1_700_000_000
LATE_MAX = 2 * 3600
N_ENTITIES = 4

#: Windows and gaps share these lengths, so entries land exactly on a window's left edge.
ROUND = [1, 2, 10, 60, 3600, DAY, 2 * DAY, 7 * DAY]
windows = st.one_of(st.sampled_from(ROUND), st.integers(1, 7 * DAY))


@st.composite
def definitions(draw: st.DrawFn) -> StreamDefinitions:
    kinds: list[ValueKind] = draw(
        st.lists(st.sampled_from(["float64", "int64", "bool"]), min_size=1, max_size=3)
    )
    src = source("events", "user", {f"c{i}": k for i, k in enumerate(kinds)})
    aggs = draw(
        st.lists(
            st.builds(
                lambda j, fn, w: (j, fn, w),
                st.integers(0, len(kinds) - 1),
                st.sampled_from(AGG_FUNCTIONS),
                windows,
            ),
            min_size=1,
            max_size=6,
        )
    )
    return stream_only(src, [AggSpec(f"f{i}", f"c{j}", fn, w) for i, (j, fn, w) in enumerate(aggs)])


@dataclass
class Step:
    entity: int
    kind: str  # "next", "tie", "tie_early", "late", "again"
    gap_s: int
    pick: int
    values: tuple[float, ...]


def steps(on_grid: bool) -> st.SearchStrategy[Step]:
    value = (
        st.integers(-4000, 4000).map(lambda k: k / 4)
        if on_grid
        else st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
    )
    return st.builds(
        Step,
        entity=st.integers(0, N_ENTITIES - 1),
        kind=st.sampled_from(["next", "next", "next", "tie", "tie_early", "late", "again"]),
        gap_s=st.one_of(st.sampled_from(ROUND), st.integers(1, 3 * DAY), st.integers(1, 120)),
        pick=st.integers(0, 10_000),
        values=st.tuples(value, value, value),
    )


def stream(defs: StreamDefinitions, plan: Sequence[Step]) -> dict[str, npt.NDArray[Any]]:
    """The event columns a plan describes; a re-delivery repeats a recent event (within
    ``LATE_MAX`` of its entity's newest, so pruning with that margin keeps it recognisable)."""
    kinds = {f.name: f.kind for f in defs.source.fields if f.name.startswith("c")}
    rows: list[dict[str, Any]] = []
    newest: dict[int, int] = {}
    for n, step in enumerate(plan):
        last = newest.get(step.entity)
        if step.kind == "again" and rows:
            old = rows[step.pick % len(rows)]
            if old["ts"] >= newest[old["entity"]] - LATE_MAX:
                rows.append({**old, SEQ_COLUMN: old[SEQ_COLUMN] if n % 2 else 10 * n})
                continue
        seq = 10 * n
        if last is None:
            t = T0
        elif step.kind in ("tie", "tie_early"):
            t = last
            seq = 10 * n if step.kind == "tie" else 10 * (n - step.pick % 5) - 5
        elif step.kind == "late":
            t = last - min(step.gap_s, LATE_MAX)
        else:
            t = last + step.gap_s
        newest[step.entity] = max(t, last if last is not None else t)
        row: dict[str, Any] = {
            "id": f"e{n}",
            "user": f"u{step.entity}",
            "entity": step.entity,
            "ts": t,
            SEQ_COLUMN: seq,
        }
        for i, (name, kind) in enumerate(sorted(kinds.items())):
            v = step.values[i]
            row[name] = v > 0 if kind == "bool" else int(v) if kind == "int64" else v
        rows.append(row)
    cols: dict[str, npt.NDArray[Any]] = {}
    for name in ["id", "user", "ts", SEQ_COLUMN, *sorted(kinds)]:
        values = [r[name] for r in rows]
        if name in ("id", "user"):
            cols[name] = np.empty(len(values), dtype=object)
            cols[name][:] = values
        else:
            kind = kinds.get(name, "int64")
            cols[name] = np.asarray(values, dtype=np.bool_ if kind == "bool" else kind)
    return cols


def through_kernel(
    defs: StreamDefinitions,
    cols: dict[str, npt.NDArray[Any]],
    cuts: Sequence[int],
    evictions: Sequence[set[int]],
    prune: bool = False,
) -> npt.NDArray[np.float64]:
    """``cols`` through one kernel in batches ending at ``cuts``, exporting and evicting the
    entities ``evictions[b]`` after batch ``b`` and loading them back when next needed."""
    kernel = StreamKernel(defs, margin_s=LATE_MAX if prune else None)
    store: dict[str, EntityHistory] = {}
    n = len(cols["id"])
    parts = [np.empty((0, len(defs.stream_features())))]
    bounds = [0, *sorted({c for c in cuts if 0 < c < n}), n]
    for b, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        part = batch(cols, lo, hi)
        for key in set(part["user"].tolist()):
            if key not in kernel and key in store:
                kernel.load_entity(key, store.pop(key))
        parts.append(kernel.evaluate(part))
        if prune:
            kernel.prune(LATE_MAX)
        for e in evictions[b % len(evictions)] if evictions else ():
            key = f"u{e}"
            if key in kernel:
                store[key] = kernel.export_entity(key)
                kernel.evict(key)
    return np.concatenate(parts)


def assert_matches(
    defs: StreamDefinitions,
    got: npt.NDArray[np.float64],
    want: dict[str, list[float]],
    exact_sums: bool,
    aggs: Sequence[AggSpec] | None = None,
) -> None:
    aggs = aggs if aggs is not None else [a for v in defs.stream_views for a in v.aggregations]
    assert got.shape == (len(next(iter(want.values()))), len(aggs))
    for j, agg in enumerate(aggs):
        ref = np.asarray(want[agg.feature], dtype=np.float64)
        exact = agg.function in ("count", "min", "max") or (
            exact_sums and agg.function in ("sum", "mean")
        )
        if exact:
            np.testing.assert_array_equal(got[:, j], ref, err_msg=str(agg))
        elif agg.function in ("sum", "mean"):
            np.testing.assert_allclose(got[:, j], ref, rtol=1e-9, atol=1e-7, err_msg=str(agg))
        else:
            np.testing.assert_allclose(got[:, j], ref, rtol=1e-9, atol=1e-9, err_msg=str(agg))


cuts_st = st.lists(st.integers(0, 120), max_size=12)
evictions_st = st.lists(st.sets(st.integers(0, N_ENTITIES - 1), max_size=2), max_size=6)


@settings(max_examples=200, deadline=None)
@given(
    defs=definitions(),
    plan=st.lists(steps(on_grid=True), min_size=1, max_size=120),
    cuts=cuts_st,
    evictions=evictions_st,
)
def test_the_kernel_equals_the_reference_through_batches_and_evictions(
    defs: StreamDefinitions, plan: list[Step], cuts: list[int], evictions: list[set[int]]
) -> None:
    cols = stream(defs, plan)
    want = reference.stream_features(defs, cols)
    got = through_kernel(defs, cols, cuts, evictions)
    assert_matches(defs, got, want, exact_sums=True)
    # Evicting and reloading changes nothing, bit for bit.
    np.testing.assert_array_equal(got, through_kernel(defs, cols, cuts, []))


@settings(max_examples=100, deadline=None)
@given(
    defs=definitions(),
    plan=st.lists(steps(on_grid=False), min_size=1, max_size=120),
    cuts=cuts_st,
    evictions=evictions_st,
)
def test_the_kernel_holds_the_float_contract_on_any_values_with_pruning(
    defs: StreamDefinitions, plan: list[Step], cuts: list[int], evictions: list[set[int]]
) -> None:
    cols = stream(defs, plan)
    want = reference.stream_features(defs, cols)
    got = through_kernel(defs, cols, cuts, evictions, prune=True)
    assert_matches(defs, got, want, exact_sums=False)


def test_a_long_history_of_nearly_equal_values_keeps_its_variance() -> None:
    """Shifted sums over thousands of entries at 1e6 with spreads of 1e-3: the error bound
    sends those windows to the two-pass path instead of returning cancellation noise."""
    rng = np.random.default_rng(3)
    n = 3000
    defs = stream_only(
        source("events", "user", {"c0": "float64"}),
        [AggSpec("v10", "c0", "var", 10), AggSpec("s1d", "c0", "stddev", DAY)],
    )
    cols: dict[str, npt.NDArray[Any]] = {
        "id": np.array([f"e{i}" for i in range(n)], dtype=object),
        "user": np.array(["u"] * n, dtype=object),
        "ts": T0 + np.arange(n, dtype=np.int64) * 5,
        SEQ_COLUMN: np.arange(n, dtype=np.int64),
        "c0": np.where(np.arange(n) < n // 2, 0.0, 1e6) + rng.normal(0, 1e-3, n),
    }
    want = reference.stream_features(defs, cols)
    got = through_kernel(defs, cols, list(range(0, n, 512)), [])
    assert_matches(defs, got, want, exact_sums=False)


@st.composite
def daily_case(
    draw: st.DrawFn,
) -> tuple[StreamDefinitions, dict[str, list[Any]], dict[str, npt.NDArray[Any]]]:
    labels_src = source("labels", "shop", {"y": "float64"})
    events_src = source("events", "user", {"shop": "string"})
    aggs = draw(
        st.lists(st.tuples(st.sampled_from(AGG_FUNCTIONS), st.integers(1, 10)), min_size=1,
                 max_size=5)
    )  # fmt: skip
    view = DailyView(
        "shop_days",
        "labels",
        "shop",
        "shop",
        draw(st.integers(0, 7)),
        tuple(AggSpec(f"d{i}", "y", fn, n * DAY) for i, (fn, n) in enumerate(aggs)),
    )
    defs = StreamDefinitions(events_src, labels_src, (), (view,), (), "svc", ())
    records = draw(
        st.lists(
            st.tuples(
                st.integers(0, 30),  # label id (repeats: re-delivered labels)
                st.integers(0, 2),
                st.integers(0, 25 * DAY),
                st.integers(-400, 400),
            ),
            max_size=60,
        )
    )
    labels: dict[str, list[Any]] = {
        "id": [f"l{r[0]}" for r in records],
        "shop": [f"s{r[1]}" for r in records],
        "ts": [T0 // DAY * DAY + r[2] for r in records],
        "y": [r[3] / 4 for r in records],
    }
    evs = draw(
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40 * DAY)), min_size=1, max_size=30)
    )
    events: dict[str, npt.NDArray[Any]] = {
        "id": np.array([f"e{i}" for i in range(len(evs))], dtype=object),
        "user": np.array(["u"] * len(evs), dtype=object),
        "shop": np.array([f"s{e[0]}" for e in evs], dtype=object),
        "ts": np.array([T0 // DAY * DAY + e[1] for e in evs], dtype=np.int64),
    }
    return defs, labels, events


@settings(max_examples=150, deadline=None)
@given(case=daily_case())
def test_daily_rows_from_day_partials_equal_the_reference(
    case: tuple[StreamDefinitions, dict[str, list[Any]], dict[str, npt.NDArray[Any]]],
) -> None:
    defs, labels, events = case
    want = reference.daily_features(defs, {k: v.tolist() for k, v in events.items()}, labels)
    got = DailyRows(defs).evaluate(events, day_partials(defs, labels))
    assert_matches(defs, got, want, exact_sums=True, aggs=defs.daily_views[0].aggregations)


@settings(max_examples=100, deadline=None)
@given(case=daily_case(), final_offset=st.integers(-5, 45))
def test_daily_rows_keep_rows_of_final_days_and_only_those(
    case: tuple[StreamDefinitions, dict[str, list[Any]], dict[str, npt.NDArray[Any]]],
    final_offset: int,
) -> None:
    defs, labels, drawn = case
    final_through = T0 // DAY + final_offset
    view = defs.daily_views[0]
    # Besides the drawn events, each shop on the last final row's day and the days around it.
    edge = (final_through + view.delay_days + 1 + np.arange(-1, 2)) * DAY
    shops = np.array([f"s{i}" for i in range(3)] * 3, dtype=object)
    events = {
        "id": np.array([f"e{i}" for i in range(len(drawn["id"]) + 9)], dtype=object),
        "user": np.array(["u"] * (len(drawn["id"]) + 9), dtype=object),
        "shop": np.concatenate([drawn["shop"], shops]),
        "ts": np.concatenate([drawn["ts"], np.repeat(edge, 3)]),
    }
    rows = DailyRows(defs)
    first = rows.evaluate(events, day_partials(defs, labels), final_through)
    # Every partial withdrawn: rows reading only final days are served as they were, the
    # others see no labels at all.
    again = rows.evaluate(events, {}, final_through)
    empty = DailyRows(defs).evaluate(events, {})
    final = events["ts"] // DAY - view.delay_days - 1 <= final_through
    np.testing.assert_array_equal(again[final], first[final])
    np.testing.assert_array_equal(again[~final], empty[~final])
