"""What an entity store keeps of a stream view's history, and what it promises.

One stored entry per event of an entity's history (the source's key): its event id, time, seq,
and one row of floats, ``data``: the values the aggregations read (the kernel plan's ``x``
columns), the entry's exclusive running sums as the kernel held them when it was added (for
sum and mean), and the stream features the event got. Reloading rebuilds the kernel's
:class:`~stream_infer.streamdef.histories.EntityHistory` from them
(:func:`history_of_entries`): the running sums continue from the oldest entry's stored sum one
addition at a time, as the kernel adds them, so an entity that was evicted and reloaded gets
the same features, bit for bit, as one that never left memory (as long as the oldest entry
loaded is the one memory started at; see docs/ARCHITECTURE.md "Bounded state"); and a
re-delivered event gets the features it got first.

Entries are keyed by event id inside each entity, so writing one twice (re-delivery, a
restarted worker, a second replay) changes nothing: idempotent by construction. A write set
also names the entries no window can reach any more (``dropped``), deleted in the same call.

Every store method raises :class:`~stream_infer.errors.StoreUnavailableError`, and only that,
when the store cannot be reached, answers too late, or is busy or locked; the store never
retries by itself. A failed call may have been applied in part or whole; repeating it is safe.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from stream_infer.streamdef.histories import EntityHistory
from stream_infer.streamdef.windows import Plan

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(slots=True)
class StoredEntry:
    """One event of an entity's history as a store returns it."""

    event_id: Any
    time: int
    seq: int
    data: list[float]


@dataclass(slots=True)
class EntityRows:
    """Entries as columns: entity (as stored: ``str``), event id, time, seq, data rows.

    For deletions only ``keys`` and ``ids`` matter (the other columns may be empty)."""

    keys: list[str]
    ids: list[Any]
    times: Ints
    seqs: Ints
    data: Floats

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, width: int = 0) -> EntityRows:
        return cls([], [], np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, width)))

    @classmethod
    def concat(cls, parts: Sequence[EntityRows]) -> EntityRows:
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        width = max(p.data.shape[1] for p in parts)
        datas = [p.data for p in parts if len(p.data)]
        return cls(
            [k for p in parts for k in p.keys],
            [i for p in parts for i in p.ids],
            np.concatenate([p.times for p in parts]),
            np.concatenate([p.seqs for p in parts]),
            np.concatenate(datas) if datas else np.empty((0, width)),
        )

    def json_rows(self) -> list[tuple[Any, ...]]:
        """``(key, id, time, seq, data)`` per entry, for a store to serialise."""
        return list(
            zip(
                self.keys,
                self.ids,
                self.times.tolist(),
                self.seqs.tolist(),
                self.data.tolist(),
                strict=True,
            )
        )


class EntityWriteSet:
    """New entries (``added``) and deletions (``dropped``) of one or more batches.

    ``ids`` name the batches (write sets merged after a failed save keep all of theirs). A
    store adds first, then deletes: an entry both added and dropped is gone.
    """

    def __init__(self, ids: list[int], added: EntityRows, dropped: EntityRows) -> None:
        self.ids = ids
        self.added = added
        self.dropped = dropped
        self._lock = threading.Lock()

    @classmethod
    def merge(cls, sets: Sequence[EntityWriteSet]) -> EntityWriteSet:
        if len(sets) == 1:
            return sets[0]
        return cls(
            [i for s in sets for i in s.ids],
            EntityRows.concat([s.added for s in sets]),
            EntityRows.concat([s.dropped for s in sets]),
        )

    def __bool__(self) -> bool:
        return bool(len(self.added) or len(self.dropped))

    def __len__(self) -> int:
        return len(self.added) + len(self.dropped)


class EntityStore(Protocol):
    """Entity histories, shared by workers (writers) and sidecars (readers)."""

    def load(self, keys: Iterable[str]) -> dict[str, list[StoredEntry]]:
        """Every stored entry of each entity (missing entities: empty lists)."""
        ...

    def save(self, writes: EntityWriteSet) -> None:
        """Add the entries of ``writes.added`` and delete those of ``writes.dropped`` (after
        the additions). Idempotent by (entity, event id); durable when this returns."""
        ...

    def first_day(self) -> int | None:
        """The earliest UTC day any event of the stream had (None: no event yet)."""
        ...

    def record_first_day(self, day: int) -> None:
        """Lower the earliest day to ``day`` if it is earlier (never raises it)."""
        ...


def store_key(key: Hashable) -> str:
    """An entity key as stores name it."""
    return key if isinstance(key, str) else str(key)


def entries_of(history: EntityHistory) -> list[StoredEntry]:
    """A kernel history as stored entries (what an evicted, not yet durable entity keeps)."""
    data = np.vstack([history.values, history.sums, history.features]).T.tolist()
    return [
        StoredEntry(i, t, s, d)
        for i, t, s, d in zip(
            history.ids, history.times.tolist(), history.seqs.tolist(), data, strict=True
        )
    ]


def history_of_entries(plan: Plan, entries: Iterable[StoredEntry]) -> EntityHistory:
    """The kernel history that holding ``entries`` gives: ordered by ``(time, seq)``, an event
    id kept once (its first), running sums continued from the oldest entry's stored sums one
    addition at a time (as the kernel adds them), shifted sums restarted at the oldest entry
    (as the kernel restarts them after pruning)."""
    seen: set[Any] = set()
    kept: list[StoredEntry] = []
    for e in sorted(entries, key=lambda e: (e.time, e.seq)):
        if e.event_id not in seen:
            seen.add(e.event_id)
            kept.append(e)
    n_x, n_s, n_f = len(plan.columns), len(plan.sum_columns), len(plan.aggs)
    n_v = len(plan.var_columns)
    k = len(kept)
    data = np.array([e.data for e in kept], dtype=np.float64).reshape(k, n_x + n_s + n_f)
    values = np.ascontiguousarray(data[:, :n_x].T)
    sums = np.zeros((n_s, k), dtype=np.float64)
    c1 = np.zeros((n_v, k), dtype=np.float64)
    c2 = np.zeros((n_v, k), dtype=np.float64)
    shifts = np.zeros(n_v, dtype=np.float64)
    if k:
        x_sum = values[plan.x_rows(plan.sum_columns)]
        base = data[0, n_x : n_x + n_s]
        # np.cumsum adds left to right, one term at a time: the kernel's order and rounding.
        sums = np.cumsum(np.concatenate([base[:, None], x_sum[:, :-1]], axis=1), axis=1)
        if n_v:
            x_var = values[plan.x_rows(plan.var_columns)]
            shifts = x_var[:, 0].copy()
            d = x_var[:, :-1] - shifts[:, None]
            zero = np.zeros((n_v, 1))
            c1 = np.cumsum(np.concatenate([zero, d], axis=1), axis=1)
            c2 = np.cumsum(np.concatenate([zero, d * d], axis=1), axis=1)
    return EntityHistory(
        times=np.array([e.time for e in kept], dtype=np.int64),
        seqs=np.array([e.seq for e in kept], dtype=np.int64),
        ids=[e.event_id for e in kept],
        values=values,
        sums=np.ascontiguousarray(sums).reshape(n_s, k),
        c1=c1,
        c2=c2,
        shifts=shifts,
        features=np.ascontiguousarray(data[:, n_x + n_s :].T),
    )
