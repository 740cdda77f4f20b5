"""The SQLite entity store: its one-statement JSON save stores exactly what the row-by-row save
stores (the same entries, every float bit for bit, NaN included; deletions after insertions;
the first insert of an id wins), and int event ids stay ints."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.state.entity_rows import EntityRows, EntityWriteSet, StoredEntry
from stream_infer.state.sqlite_entities import SqliteEntityStore

KEYS = ["c1", "c2", 'c"3', "c\u00e94"]
Item = tuple[str, str, int, int, list[float]]
_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=False),
    st.sampled_from([0.1, 1 / 3, 5e-324, 0.30000000000000004, 12.34, 9007199254740993.0]),
)
_entries = st.lists(
    st.tuples(
        st.sampled_from(KEYS),
        st.integers(0, 40).map(lambda i: f"t{i}"),
        st.integers(1_500_000_000, 1_800_000_000),
        st.integers(0, 2**40),
        st.lists(_floats, min_size=3, max_size=3),
    ),
    max_size=40,
)


def _rows(items: list[Item]) -> EntityRows:
    return EntityRows(
        [i[0] for i in items],
        [i[1] for i in items],
        np.array([i[2] for i in items], dtype=np.int64),
        np.array([i[3] for i in items], dtype=np.int64),
        np.array([i[4] for i in items], dtype=np.float64).reshape(len(items), 3),
    )


def _key(e: StoredEntry) -> tuple[Any, ...]:
    # Floats by their bits (-0.0 is not 0.0); any NaN is NaN (a store keeps no NaN payload).
    data = np.array(e.data, dtype=np.float64)
    data[np.isnan(data)] = math.nan
    return (e.event_id, e.time, e.seq, tuple(data.view(np.int64).tolist()))


def _everything(db: SqliteEntityStore) -> dict[str, list[tuple[Any, ...]]]:
    return {k: sorted(map(_key, es)) for k, es in db.load(KEYS).items()}


def _expected(first: list[Item], added: list[Item], dropped: list[Item]) -> dict[str, Any]:
    kept: dict[tuple[str, str], StoredEntry] = {}
    for key, eid, t, seq, data in first + added:
        kept.setdefault((key, eid), StoredEntry(eid, t, seq, data))
    for key, eid, *_ in dropped:
        kept.pop((key, eid), None)
    out: dict[str, list[tuple[Any, ...]]] = {k: [] for k in KEYS}
    for (key, _eid), entry in kept.items():
        out[key].append(_key(entry))
    return {k: sorted(v) for k, v in out.items()}


@settings(max_examples=30, deadline=None)
@given(first=_entries, added=_entries, dropped_at=st.lists(st.integers(0, 100), max_size=20))
def test_json_and_row_by_row_saves_store_the_same(
    tmp_path_factory: pytest.TempPathFactory,
    first: list[Item],
    added: list[Item],
    dropped_at: list[int],
) -> None:
    base = tmp_path_factory.mktemp("entities")
    pool = first + added
    dropped = [pool[i] for i in dropped_at if i < len(pool)]
    stores = [SqliteEntityStore(base / "a.db"), SqliteEntityStore(base / "b.db", json_rows=False)]
    try:
        for batch, gone in ((first, []), (added, dropped)):
            ws = EntityWriteSet([0], _rows(batch), _rows(gone))
            for db in stores:
                db.save(ws)
        want = _expected(first, added, dropped)
        for db in stores:
            assert _everything(db) == want
    finally:
        for db in stores:
            db.close()


def test_int_event_ids_stay_ints_and_nan_round_trips(tmp_path: Any) -> None:
    db = SqliteEntityStore(tmp_path / "s.db")
    rows = EntityRows(["7"], [42], np.array([1_700_000_000]), np.array([3]), np.array([[math.nan]]))
    db.save(EntityWriteSet([0], rows, EntityRows.empty(1)))
    [entry] = db.load(["7"])["7"]
    assert entry.event_id == 42 and isinstance(entry.event_id, int)
    assert math.isnan(entry.data[0])
    db.close()
