"""Window min and max in O(1) a query: sparse tables of ranges that *end* at each entry.

Row ``k`` of a table holds, at pool index ``i``, the min (or max) of ``[i - 2^k + 1, i]``; row 0
is the values themselves. A window ``[s, e]`` of ``c`` entries is then
``op(T[k, e], T[k, s + 2^k - 1])`` with ``k = floor(log2 c)``: two reads, both ranges inside the
window. Because ranges end at their index, appending entries only fills the new indices (one
vectorised step per row, reading the row below), and moving a segment moves its table columns
as they are. A range that reaches before its segment's start holds garbage that no query reads:
a query's ranges lie inside its window, and a window inside its segment.

bench/streamdef_kernel.py measures this against rebuilding the table over each touched segment
per batch (``refresh_segments``); see docs/ARCHITECTURE.md for the figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from stream_infer.streamdef.pool import Floats, Ints

MinMax = Literal["min", "max"]
_OPS: dict[MinMax, Callable[[Floats, Floats], Floats]] = {"min": np.minimum, "max": np.maximum}


def levels_for(longest: int) -> int:
    """Rows above row 0 a table needs for windows of up to ``longest`` entries."""
    return max(int(longest).bit_length() - 1, 0)


def with_levels(table: Floats, levels: int, end: int, op: MinMax) -> Floats:
    """``table`` with at least ``levels`` rows above row 0, new rows filled over ``[0, end)``."""
    have = table.shape[0] - 1
    if levels <= have:
        return table
    grown = np.zeros((levels + 1, table.shape[1]), dtype=np.float64)
    grown[: have + 1] = table
    fill(grown, np.arange(end, dtype=np.int64), op, first=have + 1)
    return grown


def fill(table: Floats, positions: Ints, op: MinMax, first: int = 1) -> None:
    """(Re)compute rows ``first..`` of ``table`` at ``positions`` from row 0 up; every index a
    row reads below ``positions`` must already be right in the row beneath."""
    f = _OPS[op]
    for k in range(first, table.shape[0]):
        back = np.maximum(positions - (1 << (k - 1)), 0)
        table[k, positions] = f(table[k - 1, positions], table[k - 1, back])


def query(table: Floats, starts: Ints, ends: Ints, op: MinMax) -> Floats:
    """The min (or max) of each window ``[starts, ends]`` (pool indices, inclusive, non-empty)."""
    counts = ends - starts + 1
    k = np.frexp(counts.astype(np.float64))[1].astype(np.int64) - 1
    if len(k) and int(k.max()) >= table.shape[0]:
        raise IndexError("sparse table has too few rows for these windows")
    return _OPS[op](table[k, ends], table[k, starts + (np.int64(1) << k) - 1])
