"""The SQLite store's columnar save (one JSON statement per write set) stores exactly what the
row-by-row save stores: the same entries, amounts bit for bit, deletions after insertions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.features.write_set import Rows, WriteSet
from stream_infer.state.base import Entry
from stream_infer.state.sqlite_store import SqliteState

Item = tuple[str, str, int, int, float]
_amounts = st.one_of(
    st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.1, 1 / 3, 5e-324, 0.30000000000000004, 12.34, 9007199254740993.0]),
)
_entries = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2", "c3", 'c"4', "c\u00e95"]),
        st.integers(0, 40).map(lambda i: f"t{i}"),
        st.integers(1_500_000_000, 1_800_000_000),
        st.integers(0, 2**40),
        _amounts,
    ),
    max_size=60,
)


def _rows(items: list[Item]) -> Rows:
    return Rows(
        [i[0] for i in items],
        [i[1] for i in items],
        np.array([i[2] for i in items], dtype=np.int64),
        np.array([i[3] for i in items], dtype=np.int64),
        np.array([i[4] for i in items], dtype=np.float64),
    )


def _everything(db: SqliteState) -> dict[str, list[Entry]]:
    loaded = db.load(["c1", "c2", "c3", 'c"4', "c\u00e95"])
    return {c: sorted(es, key=lambda e: e.transaction_id) for c, es in loaded.items()}


def _expected(first: list[Item], added: list[Item], dropped: list[Item]) -> dict[str, list[Entry]]:
    """First insert wins (INSERT OR IGNORE); the second batch's deletions come after its
    inserts."""
    kept: dict[tuple[str, str], Entry] = {}
    for cid, tid, t, seq, amount in first + added:
        kept.setdefault((cid, tid), Entry(tid, t, seq, amount))
    for cid, tid, *_ in dropped:
        kept.pop((cid, tid), None)
    out: dict[str, list[Entry]] = {c: [] for c in ["c1", "c2", "c3", 'c"4', "c\u00e95"]}
    for (cid, _tid), entry in kept.items():
        out[cid].append(entry)
    return {c: sorted(es, key=lambda e: e.transaction_id) for c, es in out.items()}


@settings(max_examples=60, deadline=None)
@given(first=_entries, added=_entries, dropped_at=st.lists(st.integers(0, 200), max_size=30))
def test_columnar_and_row_by_row_saves_store_the_same(
    tmp_path_factory: pytest.TempPathFactory,
    first: list[Item],
    added: list[Item],
    dropped_at: list[int],
) -> None:
    base = tmp_path_factory.mktemp("cols")
    pool = first + added
    dropped = [pool[i] for i in dropped_at if i < len(pool)]
    columnar, by_row = SqliteState(base / "a.db"), SqliteState(base / "b.db")
    try:
        for batch, gone in ((first, []), (added, dropped)):
            ws = WriteSet([0], _rows(batch), _rows(gone))
            columnar.save(ws)  # the columnar path (one JSON statement per table)
            by_row.save(dict(ws.items()))  # a plain mapping: executemany, row by row
        want = _expected(first, added, dropped)
        assert _everything(columnar) == want  # amounts bit for bit: == on floats
        assert _everything(by_row) == want
    finally:
        columnar.close()
        by_row.close()
