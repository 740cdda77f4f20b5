"""Latency percentiles and per-second series (pure numpy).

Percentiles use the nearest-rank definition: the p-th percentile is the smallest sample with at
least p % of the samples at or below it (rank ``ceil(p / 100 * n)``), so every reported figure is
a latency some event really had, and p100 is the max. Ranks are computed in exact integer
arithmetic: with floats, 99.9 % of 1000 is 999.0000000000001 and the rank would be off by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)
NS_PER_S: Final = 1_000_000_000
#: How long before the first record a per-second series may start.
MAX_LEAD_S: Final = 3600


def percentile_label(q: float) -> str:
    """``p50``, ``p99``, ``p99.9``: the report's key for a percentile."""
    return f"p{q:g}"


def percentiles(values: Floats, qs: Sequence[float] = PERCENTILES) -> dict[str, float | int | None]:
    """Nearest-rank percentiles of ``values`` plus count, mean and max.

    Returns:
        ``{"count", "mean", "p50", "p90", "p99", "p99.9", "max"}`` (for the default ``qs``);
        every figure is None when ``values`` is empty.
    """
    values = np.asarray(values, dtype=np.float64)
    out: dict[str, float | int | None] = {"count": len(values)}
    if len(values) == 0:
        out["mean"] = None
        out.update({percentile_label(q): None for q in qs})
        out["max"] = None
        return out
    out["mean"] = float(values.mean())
    ordered = np.sort(values)
    n = np.array([len(values)], dtype=np.int64)
    for q in qs:
        out[percentile_label(q)] = float(ordered[rank_index(n, q)[0]])
    out["max"] = float(ordered[-1])
    return out


def rank_index(counts: Ints, q: float) -> Ints:
    """0-based index of the nearest-rank ``q``-th percentile in sorted runs of ``counts``.

    Raises:
        ValueError: ``q`` is outside [0, 100].
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside [0, 100]")
    frac = Fraction(str(q)) / 100  # exact: 99.9 -> 999/1000
    num, den = frac.numerator, frac.denominator
    rank = -((-num * np.asarray(counts, dtype=np.int64)) // den)  # ceil(q/100 * n), exactly
    index: Ints = np.maximum(rank, 1) - 1
    return index


@dataclass(frozen=True)
class SecondSeries:
    """One entry per whole second since the origin, empty seconds included.

    ``second[i]``: seconds since the origin; ``count[i]``: records received in it;
    ``p50``/``p99``/``max``: their latency (NaN for an empty second).
    """

    second: Ints
    count: Ints
    p50: Floats
    p99: Floats
    max: Floats

    def as_dict(self) -> dict[str, list[Any]]:
        """JSON-ready (NaN becomes None)."""

        def clean(a: Floats) -> list[float | None]:
            return [None if np.isnan(v) else round(float(v), 3) for v in a]

        return {
            "second": self.second.tolist(),
            "count": self.count.tolist(),
            "p50_ms": clean(self.p50),
            "p99_ms": clean(self.p99),
            "max_ms": clean(self.max),
        }


def _nearest_rank(sorted_values: Floats, starts: Ints, counts: Ints, q: float) -> Floats:
    picked: Floats = sorted_values[starts + rank_index(counts, q)]
    return picked


def per_second(received_ns: Ints, latency_ms: Floats, origin_ns: int) -> SecondSeries:
    """Bucket records by the whole second (since ``origin_ns``) in which they were received.

    Records received before the origin fall in second 0. An origin more than
    :data:`MAX_LEAD_S` before the first record is moved up to it, so a stale origin cannot
    allocate years of empty seconds.
    """
    received_ns = np.asarray(received_ns, dtype=np.int64)
    latency_ms = np.asarray(latency_ms, dtype=np.float64)
    if len(received_ns) == 0:
        empty_i = np.zeros(0, dtype=np.int64)
        empty_f = np.zeros(0, dtype=np.float64)
        return SecondSeries(empty_i, empty_i, empty_f, empty_f, empty_f)
    origin_ns = max(origin_ns, int(received_ns.min()) - MAX_LEAD_S * NS_PER_S)
    bucket = np.clip((received_ns - origin_ns) // NS_PER_S, 0, None)
    n_buckets = int(bucket.max()) + 1
    counts = np.bincount(bucket, minlength=n_buckets).astype(np.int64)
    order = np.lexsort((latency_ms, bucket))
    sorted_lat = latency_ms[order]
    starts = np.zeros(n_buckets, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    p50 = np.full(n_buckets, np.nan)
    p99 = np.full(n_buckets, np.nan)
    mx = np.full(n_buckets, np.nan)
    full = counts > 0
    p50[full] = _nearest_rank(sorted_lat, starts[full], counts[full], 50.0)
    p99[full] = _nearest_rank(sorted_lat, starts[full], counts[full], 99.0)
    mx[full] = sorted_lat[starts[full] + counts[full] - 1]
    return SecondSeries(np.arange(n_buckets, dtype=np.int64), counts, p50, p99, mx)
