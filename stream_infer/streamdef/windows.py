"""A compiled stream definition's features at given pool entries, for many entries at once.

The plan (:class:`Plan`) says which columns the pool keeps for a definition: the values every
aggregation reads (``x``), exclusive running sums for sum and mean (``cum``: ``cum[i]`` is the
sum of the segment's values before ``i`` since the segment's origin), shifted running sums and
sums of squares for var and stddev (``c1``, ``c2``, of ``x - shift``, the shift one per entity,
the origin the segment's current start), and min/max sparse tables (:mod:`.minmax`).

Float contract (docs/ARCHITECTURE.md): count, min and max are exact; a sum is
``(cum[e] + x[e]) - cum[s]``, bit for bit what :class:`~stream_infer.features.definitions.
CustomerHistory` computes and exact whenever the running sums are (values on a grid such as
cents below 2^53 / 100 in total); a mean is that sum over the count. Variance takes the
shifted sums when a rounding-error bound shows them good to 1e-10 relative, and otherwise
(short or nearly constant windows inside long histories) two passes over the window's values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_infer.streamdef import minmax
from stream_infer.streamdef.pool import EntityPool, Floats, Ints, spans
from stream_infer.streamdef.spec import AggSpec, StreamDefinitions

_EPS = float(np.finfo(np.float64).eps)
#: Shifted sums are used when their error bound is this many times below the result.
_TRUST = 1e10


@dataclass(frozen=True)
class Plan:
    """What the pool keeps for a definition, and where each aggregation reads it."""

    aggs: tuple[AggSpec, ...]
    #: Columns read by any aggregation but count (rows of ``x``).
    columns: tuple[str, ...]
    #: Columns with running sums (rows of ``cum``), for sum and mean.
    sum_columns: tuple[str, ...]
    #: Columns with shifted sums (rows of ``c1``/``c2``), for var and stddev.
    var_columns: tuple[str, ...]
    min_columns: tuple[str, ...]
    max_columns: tuple[str, ...]
    windows: tuple[int, ...]
    horizon_s: int

    @staticmethod
    def of(defs: StreamDefinitions) -> Plan:
        """The plan of every stream view of ``defs`` (features in ``stream_features()`` order)."""
        aggs = tuple(a for v in defs.stream_views for a in v.aggregations)

        def cols(*functions: str) -> tuple[str, ...]:
            return tuple(sorted({a.column for a in aggs if a.function in functions}))

        return Plan(
            aggs=aggs,
            columns=cols("sum", "mean", "min", "max", "var", "stddev"),
            sum_columns=cols("sum", "mean"),
            var_columns=cols("var", "stddev"),
            min_columns=cols("min"),
            max_columns=cols("max"),
            windows=tuple(sorted({a.window_s for a in aggs})),
            horizon_s=max((a.window_s for a in aggs), default=0),
        )

    def templates(self) -> dict[str, tuple[tuple[int, ...], type]]:
        """The pool arrays this plan needs (leading shape, dtype)."""
        out: dict[str, tuple[tuple[int, ...], type]] = {
            "t": ((), np.int64),
            "seq": ((), np.int64),
            "ids": ((), object),
            "x": ((len(self.columns),), np.float64),
            "cum": ((len(self.sum_columns),), np.float64),
            "c1": ((len(self.var_columns),), np.float64),
            "c2": ((len(self.var_columns),), np.float64),
            "feats": ((len(self.aggs),), np.float64),
        }
        for c in self.min_columns:
            out[f"min:{c}"] = ((1,), np.float64)
        for c in self.max_columns:
            out[f"max:{c}"] = ((1,), np.float64)
        return out

    def x_rows(self, names: tuple[str, ...]) -> list[int]:
        """Rows of ``x`` holding ``names``."""
        return [self.columns.index(c) for c in names]


def first_after(keys: Ints, lo: Ints, hi: Ints, target: Ints) -> Ints:
    """Per row: the first index ``j`` in ``[lo, hi)`` with ``keys[j] > target`` (``hi`` if
    none), every ``keys[lo:hi]`` sorted: a vectorised ``bisect_right`` over many segments."""
    pos = lo - 1
    widest = int((hi - lo).max()) if len(lo) else 0
    step = 1 << max(widest.bit_length() - 1, 0)
    while step and widest:
        probe = pos + step
        ok = (probe < hi) & (keys.take(probe, mode="clip") <= target)
        pos = np.where(ok, probe, pos)
        step >>= 1
    return pos + 1


def features_at(pool: EntityPool, plan: Plan, lo: Ints, end: Ints, shift: Floats) -> Floats:
    """``(n, len(plan.aggs))`` features of the entries at pool indices ``end``, whose segments
    start at ``lo``, each window ``(t - w, t]`` up to and including the entry itself.
    ``shift``: ``(len(plan.var_columns), n)``, each row's entity shift."""
    arrays = pool.arrays
    t = arrays["t"]
    te = t[end]
    # Every window's left edge in one search (one loop of a few numpy steps, not one a window).
    k = len(plan.windows)
    spans_w = np.array(plan.windows, dtype=np.int64)
    found = first_after(
        t, np.tile(lo, k), np.tile(end + 1, k), (te[None, :] - spans_w[:, None]).ravel()
    ).reshape(k, len(end))
    starts = {w: found[i] for i, w in enumerate(plan.windows)}
    counts = {w: (end - found[i] + 1).astype(np.float64) for i, w in enumerate(plan.windows)}
    totals: dict[tuple[str, int], Floats] = {}  # a mean and a sum of one window share it
    out = np.empty((len(end), len(plan.aggs)), dtype=np.float64)
    for j, agg in enumerate(plan.aggs):
        s = starts[agg.window_s]
        count = counts[agg.window_s]
        fn = agg.function
        if fn == "count":
            out[:, j] = count
        elif fn in ("sum", "mean"):
            total = totals.get((agg.column, agg.window_s))
            if total is None:
                x = arrays["x"][plan.columns.index(agg.column)]
                cum = arrays["cum"][plan.sum_columns.index(agg.column)]
                total = totals[(agg.column, agg.window_s)] = (cum[end] + x[end]) - cum[s]
            out[:, j] = total if fn == "sum" else total / count
        elif fn in ("min", "max"):
            out[:, j] = minmax.query(arrays[f"{fn}:{agg.column}"], s, end, fn)
        else:
            v = plan.var_columns.index(agg.column)
            var = _variance(pool, plan, agg.column, v, lo, s, end, shift[v])
            out[:, j] = var if fn == "var" else np.sqrt(var)
    return out


def _variance(
    pool: EntityPool, plan: Plan, column: str, v: int, lo: Ints, s: Ints, end: Ints, shift: Floats
) -> Floats:
    arrays = pool.arrays
    x = arrays["x"][plan.columns.index(column)]
    c1 = arrays["c1"][v]
    c2 = arrays["c2"][v]
    count = (end - s + 1).astype(np.float64)
    d = x[end] - shift
    c2e = c2[end] + d * d
    s1 = (c1[end] + d) - c1[s]
    s2 = c2e - c2[s]
    with np.errstate(divide="ignore", invalid="ignore"):
        m2 = s2 - s1 * s1 / count
        # Running sums of L terms from the segment's start are off by at most gamma * (sum of
        # |terms|) each; |sum of d| <= sqrt(L * sum of d^2) by Cauchy-Schwarz.
        adds = (end - lo + 1).astype(np.float64)
        gamma = 1.01 * adds * _EPS
        e1 = 2 * gamma * np.sqrt((adds + 1) * c2e)
        bound = 2 * gamma * c2e + (2 * np.abs(s1) * e1 + e1 * e1) / count
        bound += 4 * _EPS * (np.abs(s2) + s1 * s1 / count)
        var = m2 / (count - 1)
    var[count < 2] = np.nan
    redo = np.flatnonzero((count >= 2) & ~(m2 > _TRUST * bound))
    if len(redo):
        var[redo] = _two_pass(x, s[redo], end[redo])
    return np.asarray(var, dtype=np.float64)


def _two_pass(x: Floats, s: Ints, end: Ints) -> Floats:
    """Sample variance of each ``x[s..end]`` (at least two values): mean first, then the
    squared deviations."""
    counts = end - s + 1
    idx = spans(s, counts)
    vals = x[idx]
    offsets = np.cumsum(counts) - counts
    mean = np.add.reduceat(vals, offsets) / counts
    dev = vals - np.repeat(mean, counts)
    m2: Floats = np.add.reduceat(dev * dev, offsets)
    return m2 / (counts - 1)
