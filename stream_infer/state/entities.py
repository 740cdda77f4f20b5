"""Stream views' entity histories in memory, bounded, backed by an entity store.

A :class:`~stream_infer.streamdef.kernel.StreamKernel` holds the histories and computes a
batch's stream features; this module keeps it bounded and durable:

- at most ``max_entities`` entities are in memory (least recently used first out, at batch
  granularity), reloaded from the store when they come back. An evicted entity whose newest
  entries are not durable yet keeps them aside (the stash) until they are, and a reload merges
  them back, so a miss never loses an entry the writer has not saved;
- an entry no window can reach any more (older than its entity's newest by the longest window
  plus ``margin_s``) is dropped in memory by the kernel, and deleted from the store
  ``drop_delay_s`` (wall clock) after the batch that put it out of reach was taken for saving:
  until its offsets are committed that batch can be re-delivered after a crash, and
  re-delivered events must find the history they were first scored with;
- a batch's new entries and deletions are recorded as columns (:class:`EntityWriteSet`),
  saved off the scoring thread with group commit (:meth:`EntityState.save`).

Entities are held per Kafka partition (the worker owns whole partitions), so a revoked
partition's entities can be dropped (:meth:`EntityState.drop_partitions`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_infer.state.entity_rows import (
    EntityRows,
    EntityStore,
    EntityWriteSet,
    StoredEntry,
    entries_of,
    history_of_entries,
    store_key,
)
from stream_infer.streamdef.kernel import KernelBatch, StreamKernel
from stream_infer.streamdef.spec import SEQ_COLUMN, StreamDefinitions

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: Default wall-clock seconds between an entry going out of reach and its deletion.
DROP_DELAY_S = 10.0
#: A save takes every write set waiting, up to about this many rows (group commit).
GROUP_ROWS = 20_000


class EntityState:
    """The stream views' state of one :class:`StreamDefinitions`. Scoring thread: one owner
    (:meth:`features`, :meth:`take_pending`, :meth:`drop_partitions`); :meth:`save` may run on
    another thread.

    Args:
        store: durable histories (None: memory only; an evicted entity then starts over).
        cache: keep entities between batches (the worker owns its partitions); False loads
            each batch's entities and forgets them after it (the sidecar).
        persist: record new entries for the store (the worker); False for read-only callers.
        max_entities: entities kept in memory (LRU).
        margin_s: history kept past the longest window, for late events.
        drop_delay_s: see the module docstring.
    """

    def __init__(
        self,
        defs: StreamDefinitions,
        store: EntityStore | None = None,
        *,
        cache: bool = True,
        persist: bool = True,
        max_entities: int = 200_000,
        margin_s: int = 86_400,
        drop_delay_s: float = DROP_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.defs = defs
        self.kernel = StreamKernel(defs, margin_s=margin_s if persist or cache else None)
        self.plan = self.kernel.plan
        self._store = store
        self._cache = cache
        self._persist = persist
        self._max = max_entities
        self._width = len(self.plan.columns) + len(self.plan.sum_columns) + len(self.plan.aggs)
        self._used: dict[Hashable, int] = {}  # entity -> batch tick of its last use (LRU)
        self._part_of: dict[Hashable, int] = {}  # entity -> its partition
        self._dirty: dict[Hashable, int] = {}  # entity -> write set holding its newest entries
        self._tick = 0
        self._next_ws = 1
        self._new: list[EntityRows] = []
        self._new_drops: list[EntityRows] = []
        self._retry: list[EntityWriteSet] = []
        # Out of reach, not yet due for deletion: (due time, rows), in due order.
        self._drops: deque[tuple[float, EntityRows]] = deque()
        self._drop_delay_s = drop_delay_s
        self._clock = clock
        # Taken but not durable yet: write set id -> entries added (writer thread removes).
        self._unsaved: dict[int, int] = {}
        # Taken, not yet durable, in order: newest id -> write set (see save: group commit).
        self._queue: dict[int, EntityWriteSet] = {}
        # Evicted entities' entries, kept until every write set up to ``tag`` is durable.
        self._stash: dict[str, tuple[int, list[StoredEntry]]] = {}
        self._lock = threading.Lock()

    # -- one batch -----------------------------------------------------------------------
    def features(self, events: Mapping[str, npt.NDArray[Any]], partitions: Ints) -> Floats:
        """Add a batch's events (``SEQ_COLUMN`` included) to their entities' histories and
        return their ``(n, len(defs.stream_features()))`` stream features, rows in input
        order, recording what is new for the store.

        Raises:
            StoreUnavailableError: loading an entity failed; nothing in memory changed.
        """
        keys = events[self.defs.source.key_field].tolist()
        if not keys:
            return np.empty((0, len(self.plan.aggs)), dtype=np.float64)
        self._ensure(keys, partitions)
        batch = self.kernel.run(events)
        if self._persist:
            self._record(events, keys, batch)
        self._touch(keys)
        return batch.features

    def _ensure(self, keys: list[Hashable], partitions: Ints) -> None:
        """Load the batch's entities not in memory (one store round trip)."""
        held = self.kernel
        used = self._used  # every entity in memory was used by a batch
        if all(map(used.__contains__, keys)):  # usual: all held (a loop in C)
            return
        missing = [k for k in dict.fromkeys(keys) if k not in used]
        stored = self._load_entries(missing) if self._store is not None else {}
        parts = dict(zip(reversed(keys), reversed(partitions.tolist()), strict=True))
        for key in missing:
            entries = stored.get(store_key(key))
            if entries:
                held.load_entity(key, history_of_entries(self.plan, entries))
            self._part_of[key] = parts[key]
            self._dirty.pop(key, None)

    def _record(
        self, events: Mapping[str, npt.NDArray[Any]], keys: list[Any], b: KernelBatch
    ) -> None:
        """Record the batch's new entries and what pruning dropped."""
        if self._store is None:
            return
        src = self.defs.source
        new = b.new
        rows = np.flatnonzero(new) if not new.all() else None
        x = [np.asarray(events[c], dtype=np.float64) for c in self.plan.columns]
        assert b.sums is not None
        data = np.column_stack([*x, b.sums, b.features]) if len(keys) else np.empty((0, 0))
        ids = events[src.event_id_field].tolist()
        skeys = [store_key(k) for k in keys] if keys and not isinstance(keys[0], str) else keys
        times = np.asarray(events[src.timestamp_field], dtype=np.int64)
        seqs = np.asarray(events[SEQ_COLUMN], dtype=np.int64)
        if rows is None:
            added = EntityRows(skeys, ids, times, seqs, data)
            fresh: Iterable[Hashable] = keys
        else:
            if not len(rows):
                added = None
            else:
                picked = rows.tolist()
                added = EntityRows(
                    [skeys[i] for i in picked],
                    [ids[i] for i in picked],
                    times[rows],
                    seqs[rows],
                    data[rows],
                )
            fresh = [keys[i] for i in rows.tolist()]
        if added is not None:
            self._new.append(added)
            self._dirty.update(zip(fresh, repeat(self._next_ws)))
        if b.dropped:
            dk = [store_key(k) for k, ids_ in b.dropped.items() for _ in ids_]
            di = [i for ids_ in b.dropped.values() for i in ids_]
            empty = EntityRows.empty(self._width)
            self._new_drops.append(EntityRows(dk, di, empty.times, empty.seqs, empty.data))

    def _touch(self, keys: list[Hashable]) -> None:
        """Mark the batch's entities used; evict down to ``max_entities`` (least recent first)."""
        self._used.update(zip(keys, repeat(self._tick)))
        self._tick += 1
        if not self._cache:
            self._evict(list(self._used))
        elif len(self._used) > self._max:
            excess = len(self._used) - self._max
            ticks = np.fromiter(self._used.values(), dtype=np.int64, count=len(self._used))
            order = np.argpartition(ticks, excess - 1)[:excess]
            held = list(self._used)
            self._evict([held[i] for i in order.tolist()])

    def _evict(self, victims: list[Hashable]) -> None:
        if not victims:
            return
        kernel = self.kernel
        with self._lock:
            floor = min(self._unsaved, default=self._next_ws)
            for key in victims:
                if self._store is not None and self._dirty.get(key, 0) >= floor:
                    skey = store_key(key)
                    tag, kept = self._stash.get(skey, (0, []))
                    entries = [*kept, *entries_of(kernel.export_entity(key))]
                    self._stash[skey] = (max(tag, self._dirty[key]), entries)
        for key in victims:
            kernel.evict(key)
            del self._used[key]
            self._part_of.pop(key, None)
            self._dirty.pop(key, None)

    def _load_entries(self, keys: list[Hashable]) -> dict[str, list[StoredEntry]]:
        """Each entity's stored entries plus those of its evicted, not yet durable ones.

        Raises:
            StoreUnavailableError: the store failed.
        """
        skeys = [store_key(k) for k in keys]
        # The stash before the store: a save that completes in between is then in one or the
        # other (or both: adding is idempotent), never in neither.
        with self._lock:
            stash = {k: list(self._stash[k][1]) for k in skeys if k in self._stash}
        stored = self._store.load(skeys) if self._store is not None else {}
        return {k: [*stored.get(k, ()), *stash.get(k, ())] for k in skeys}

    # -- saving --------------------------------------------------------------------------
    def take_pending(self) -> EntityWriteSet:
        """The entries recorded since the last call and the deletions now due, for the caller
        to :meth:`save`. New entries stay unsaved (kept for evicted entities) until that save
        returns."""
        now = self._clock()
        if self._new_drops:
            self._drops.append((now + self._drop_delay_s, EntityRows.concat(self._new_drops)))
            self._new_drops = []
        due: list[EntityRows] = []
        while self._drops and self._drops[0][0] <= now:
            due.append(self._drops.popleft()[1])
        retry, self._retry = self._retry, []
        added = EntityRows.concat(self._new) if self._new else EntityRows.empty(self._width)
        dropped = EntityRows.concat(due) if due else EntityRows.empty(self._width)
        ws = EntityWriteSet.merge([*retry, EntityWriteSet([self._next_ws], added, dropped)])
        self._new = []
        with self._lock:
            self._next_ws += 1
            if ws and self._store is not None:
                self._queue[ws.ids[-1]] = ws
                for i in ws.ids:
                    self._unsaved[i] = len(ws.added) if i == ws.ids[-1] else 0
        return ws

    def save(self, writes: EntityWriteSet) -> None:
        """Write a taken write set to the store; durable when this returns. Safe to call from
        another thread than the scoring one, and to repeat after a failure.

        A write set is saved together with every other one taken and not yet saved (group
        commit, up to :data:`GROUP_ROWS` rows): a store transaction costs about twice as much
        per entry at 150 entries as at 4,000, and a writer that falls behind catches up in
        larger transactions. One already saved that way returns at once: it is durable.

        Raises:
            StoreUnavailableError: the store failed; the entries stay unsaved.
        """
        if self._store is None or not writes:
            return
        with self._lock:
            if writes.ids[-1] not in self._queue:
                return  # saved already, in an earlier group (or never taken here)
            group: list[EntityWriteSet] = []
            rows = 0
            mine = False
            for ws in self._queue.values():
                if rows >= GROUP_ROWS and mine:
                    break
                group.append(ws)
                mine = mine or ws is writes
                rows += len(ws)
        self._store.save(EntityWriteSet.merge(group))
        with self._lock:
            for ws in group:
                self._queue.pop(ws.ids[-1], None)
                for i in ws.ids:
                    self._unsaved.pop(i, None)
            floor = min(self._unsaved, default=self._next_ws)
            for key in [k for k, (tag, _) in self._stash.items() if tag < floor]:
                del self._stash[key]

    def flush(self) -> None:
        """Save the recorded entries now; durable when this returns.

        Raises:
            StoreUnavailableError: the store failed; the entries stay recorded for a retry.
        """
        ws = self.take_pending()
        try:
            self.save(ws)
        except BaseException:
            with self._lock:  # taken again, with what follows, by the next take_pending
                self._queue.pop(ws.ids[-1], None)
            self._retry.append(ws)
            raise

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions' entities (the new owner reloads them from the store)."""
        gone = set(partitions)
        self._evict([k for k, p in self._part_of.items() if p in gone])

    def entities(self) -> int:
        """Entities in memory now (at most ``max_entities``)."""
        return len(self.kernel)

    def drops_waiting(self) -> int:
        """Deletions recorded but not due yet (what goes out of reach in ``drop_delay_s``)."""
        return sum(len(r) for _, r in self._drops) + sum(len(r) for r in self._new_drops)

    def unsaved(self) -> int:
        """Entries taken but not yet saved (bounded by the batches in flight)."""
        with self._lock:
            return sum(self._unsaved.values())
