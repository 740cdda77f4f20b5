"""Customer histories in memory, bounded, backed by a customer store, in columns.

At most ``max_customers`` customers are in memory (least recently used first out, at batch
granularity, reloaded from the store when they come back), and an entry no window can reach any
more (older than its customer's newest by 30 days plus ``margin_days``) is pruned in memory and
deleted from the store, so both stay bounded by the window rather than growing with the stream.
The margin keeps a late event's windows whole (docs/ARCHITECTURE.md).

Histories live in one :class:`~stream_infer.features.pool.HistoryPool` (numpy columns, a segment
per customer) and a batch's windows are computed at once (:mod:`stream_infer.features.kernel`).
A batch's new entries and deletions are recorded as columns too (:class:`WriteSet`); turning
them into the store's :class:`~stream_infer.state.base.Entry` rows happens in ``save``, on the
writer thread.

The store deletes an entry only ``drop_delay_s`` (wall clock) after the batch that put it out
of reach was taken for saving. Until its offsets are committed (auto-commit, every second) that
batch and the ones before it can be re-delivered after a crash, and re-delivered events must
find the history they were first scored with. In a replay faster than real time a second of
wall clock is days of event time, far more than the margin covers; in real time the delay is
a few seconds of event time, nothing next to the window.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from itertools import compress
from operator import is_
from typing import Protocol

import numpy as np

from stream_infer.features.columns import TxColumns
from stream_infer.features.definitions import CUSTOMER_HORIZON_S, SECONDS_PER_DAY
from stream_infer.features.kernel import BatchWindows, add_and_window, first_after
from stream_infer.features.pool import Floats, HistoryPool, Ints, spans
from stream_infer.features.write_set import Rows, WriteSet
from stream_infer.state.base import Entry
from stream_infer.state.histories import history_of, read_only_windows

#: A history is pruned in memory once this many of its entries are out of every window's
#: reach, or once it is longer than PRUNE_AT (amortised: a prune moves the segment's start).
PRUNE_STALE = 16
PRUNE_AT = 256
#: Well past the consumer's auto-commit interval (1 s) plus the wait for a batch's acks.
DROP_DELAY_S = 10.0
#: At most about this many rows per group-committed save.
GROUP_ROWS = 8192

__all__ = ["DROP_DELAY_S", "PRUNE_AT", "PRUNE_STALE", "CustomerState", "CustomerStore", "WriteSet"]


class CustomerStore(Protocol):
    """Durable customer histories (see :mod:`stream_infer.state.base`)."""

    def load(self, customer_ids: Iterable[str]) -> Mapping[str, Sequence[Entry]]: ...

    def save(self, entries: Mapping[str, Sequence[Entry]]) -> None: ...

    def first_day(self) -> int | None: ...

    def record_first_day(self, day: int) -> None: ...


Key = tuple[int, str]  # (partition, customer_id)
_is_none = partial(is_, None)


class CustomerState:
    """Customer histories for the partitions this process owns, backed by a store.

    A customer not in memory (first seen, after a restart or a rebalance, or evicted from the
    LRU of ``max_customers``) is loaded from the store, so a new owner continues exactly where
    the old one stopped. New entries (and ``dropped`` markers for entries no window reaches any
    more) are recorded per batch; the caller takes them (:meth:`take_pending`) and saves them
    (:meth:`save`), possibly later and on another thread. Until that save returns, a customer
    evicted meanwhile keeps its in-memory entries aside and gets them back when reloaded, so
    eviction never loses them.

    Args:
        cache: keep histories between batches (the worker); False reloads every batch (the
            read-only sidecar, which reads what workers wrote).
        persist: record new entries (False: read-only, nothing is ever written).
        margin_days: history kept past the 30-day window, for late events.
        drop_delay_s: how long the store keeps an entry after it went out of reach.
        clock: seconds, for ``drop_delay_s`` (tests pass their own).
    """

    def __init__(
        self,
        store: CustomerStore | None = None,
        cache: bool = True,
        *,
        max_customers: int = 200_000,
        margin_days: int = 1,
        persist: bool = True,
        drop_delay_s: float = DROP_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache = cache
        self._persist = persist
        self._max = max_customers
        self.pool = HistoryPool()
        self._slot_of: dict[int, dict[str, int]] = {}  # partition -> customer -> slot
        self._key_of: dict[int, Key] = {}
        self._used = np.zeros(0, dtype=np.int64)  # batch tick of each slot's last use (LRU)
        self._dirty = np.zeros(0, dtype=np.int64)  # write set holding a slot's newest entries
        self._tick = 0
        self._next_ws = 1
        self._new: list[Rows] = []
        self._new_drops: list[Rows] = []
        self._retry: list[WriteSet] = []
        # Out of reach, not yet due for deletion: (due time, rows), in due order.
        self._drops: deque[tuple[float, Rows]] = deque()
        self._drop_delay_s = drop_delay_s
        self._clock = clock
        # Taken but not durable yet: write set id -> entries added. The writer thread removes
        # what it saved (save); the scoring thread adds (take_pending).
        self._unsaved: dict[int, int] = {}
        # Taken, not yet durable, in order: newest id -> write set (see save: group commit).
        self._queue: dict[int, WriteSet] = {}
        # Evicted customers' in-memory entries, kept until every write set up to ``tag`` is
        # durable: customer -> (tag, entries).
        self._stash: dict[str, tuple[int, list[Entry]]] = {}
        self._lock = threading.Lock()
        self.margin_s = margin_days * SECONDS_PER_DAY
        #: An entry this much older than its customer's newest is reached by no window.
        self.keep_s = CUSTOMER_HORIZON_S + self.margin_s

    # -- one batch -----------------------------------------------------------------------
    def windows(self, cols: TxColumns) -> Floats:
        """Add a batch's events to their customers' histories and return their ``(n, 6)``
        customer features (rows in ``cols`` order), recording what is new for the store.

        Raises:
            StoreUnavailableError: loading a customer failed; nothing in memory changed.
        """
        if not self._cache and not self._persist:
            # Read-only and uncached (the sidecar): a few events, nothing kept.
            return read_only_windows(
                cols, self._load_entries(list(dict.fromkeys(cols.customer_ids)))
            )
        slots = self._slots(cols)
        batch = add_and_window(
            self.pool, slots, cols.epoch_seconds, cols.offsets, cols.amounts, cols.transaction_ids
        )
        if self._persist:
            self._record(cols, slots, batch)
        self._touch(slots)
        return batch.features

    def _slots(self, cols: TxColumns) -> Ints:
        """Each event's slot, loading the customers not in memory (one store round trip)."""
        parts = cols.partitions
        cids = cols.customer_ids
        if not self._cache:
            plist = parts.tolist()
            loaded = self._load(list(zip(plist, cids, strict=True)))
            return np.array([loaded[k] for k in zip(plist, cids, strict=True)], dtype=np.int64)
        one = len(parts) > 0 and parts.min() == parts.max()  # one partition: no key tuples
        found = self._lookup(parts, cids, one)
        if None in found:
            if one:
                p = int(parts[0])
                want = [(p, c) for c in compress(cids, map(_is_none, found))]
            else:
                keys = zip(parts.tolist(), cids, strict=True)
                want = list(compress(keys, map(_is_none, found)))
            self._load(want)
            found = self._lookup(parts, cids, one)
        return np.array(found, dtype=np.int64)

    def _lookup(self, parts: Ints, cids: list[str], one: bool) -> list[int | None]:
        if one:
            return list(map(self._slot_of.setdefault(int(parts[0]), {}).get, cids))
        slot_of = self._slot_of
        return [slot_of.get(p, {}).get(c) for p, c in zip(parts.tolist(), cids, strict=True)]

    def _record(self, cols: TxColumns, slots: Ints, batch: BatchWindows) -> None:
        """Record the batch's new entries, what they put out of reach, and prune."""
        rows = np.flatnonzero(batch.new)
        if len(rows) and self._store is not None:
            self._new.append(Rows.of(cols, rows))
            self._dirty[slots[rows]] = self._next_ws
        # Only histories that grew: a re-delivered batch after a crash must find (and keep)
        # the history it was first scored with, even one ahead of it.
        pool = self.pool
        grown: dict[int, set[str]] = {}
        if batch.sequential:
            new_slots = set(slots[rows].tolist())
            grown = {s: b for s, b in batch.sequential.items() if s in new_slots}
        plain = batch.appended
        touched = np.concatenate([plain, np.fromiter(grown, np.int64, len(grown))])
        if not len(touched):
            return
        st, n, m = pool.start[plain], pool.length[plain], pool.marked[plain]
        reach = pool.last_times(plain) - self.keep_s
        head = pool.t[np.minimum(st + m, len(pool.t) - 1)]
        cand = (m < n) & (head <= reach)
        if cand.any():
            c = plain[cand]
            stale = first_after(pool.t, st[cand] + m[cand], st[cand] + n[cand], reach[cand])
            self._drop_rows(c, st[cand] + m[cand], stale - st[cand] - m[cand])
            pool.marked[c] = stale - st[cand]
        for slot, before in grown.items():
            self._remark(slot, before)
        marked, length = pool.marked[touched], pool.length[touched]
        prune = (marked >= PRUNE_STALE) | ((length > PRUNE_AT) & (marked > 0))
        if prune.any():
            pool.drop_front(touched[prune], marked[prune])

    def _remark(self, slot: int, before: set[str]) -> None:
        """After a sequential update: record what is out of reach and was not before."""
        pool = self.pool
        lo, n = int(pool.start[slot]), int(pool.length[slot])
        reach = int(pool.t[lo + n - 1]) - self.keep_s
        stale = int(np.searchsorted(pool.t[lo : lo + n], reach, side="right"))
        fresh = [j for j in range(lo, lo + stale) if pool.ids[j] not in before]
        if fresh:
            idx = np.array(fresh, dtype=np.int64)
            self._drop_rows(np.array([slot]), idx[:1], np.array([len(idx)]), idx)
        pool.marked[slot] = stale

    def _drop_rows(self, slots: Ints, starts: Ints, counts: Ints, idx: Ints | None = None) -> None:
        """Record pool entries as out of reach: ``counts`` from each of ``starts`` (or the
        indices ``idx``, all of the one slot), for deletion ``drop_delay_s`` after the take."""
        if self._store is None or not counts.sum():
            return
        pool = self.pool
        at = spans(starts, counts) if idx is None else idx
        cids = [self._key_of[s][1] for s in slots.tolist()]
        self._new_drops.append(
            Rows(
                np.repeat(np.array(cids, dtype=object), counts).tolist(),
                pool.ids[at].tolist(),
                pool.t[at],
                pool.seq[at],
                pool.amt[at],
            )
        )

    def _touch(self, slots: Ints) -> None:
        """Mark the batch's slots used; evict down to ``max_customers`` (least recent first)."""
        self._used[slots] = self._tick
        self._tick += 1
        if not self._cache:
            self._evict(list(self._key_of))
        elif len(self._key_of) > self._max:
            live = np.array(list(self._key_of), dtype=np.int64)
            excess = len(live) - self._max
            victims = live[np.argpartition(self._used[live], excess - 1)[:excess]]
            self._evict(victims.tolist())

    def _evict(self, victims: list[int]) -> None:
        if not victims:
            return
        pool = self.pool
        with self._lock:
            floor = min(self._unsaved, default=self._next_ws)
            for slot in victims:
                cid = self._key_of[slot][1]
                if self._store is not None and self._dirty[slot] >= floor:
                    t, s, a, _c, ids = pool.entries(slot)
                    tag, kept = self._stash.get(cid, (0, []))
                    entries = [*kept, *map(Entry, ids, t, s, a)]
                    self._stash[cid] = (max(tag, int(self._dirty[slot])), entries)
        for slot in victims:
            part, cid = self._key_of.pop(slot)
            del self._slot_of[part][cid]
        pool.free(victims)

    def _load_entries(self, cids: list[str]) -> dict[str, list[Entry]]:
        """Each customer's stored entries plus those of its evicted, not yet durable ones.

        Raises:
            StoreUnavailableError: the store failed.
        """
        # Read the stash before the store: a save that completes in between is then in one or
        # the other (or both: adding is idempotent), never in neither.
        with self._lock:
            stash = {c: list(self._stash[c][1]) for c in cids if c in self._stash}
        stored = self._store.load(cids) if self._store is not None else {}
        return {c: [*stored.get(c, ()), *stash.get(c, ())] for c in cids}

    def _load(self, keys: Sequence[Key]) -> dict[Key, int]:
        uniq = list(dict.fromkeys(keys))
        stored = self._load_entries(list(dict.fromkeys(cid for _, cid in uniq)))
        pool = self.pool
        slots = pool.alloc(len(uniq)).tolist()
        if len(self._used) < len(pool.start):
            grow = len(pool.start) - len(self._used)
            self._used = np.concatenate([self._used, np.zeros(grow, dtype=np.int64)])
            self._dirty = np.concatenate([self._dirty, np.zeros(grow, dtype=np.int64)])
        out: dict[Key, int] = {}
        for key, slot in zip(uniq, slots, strict=True):
            out[key] = slot
            self._slot_of.setdefault(key[0], {})[key[1]] = slot
            self._key_of[slot] = key
            self._dirty[slot] = 0
            entries = stored.get(key[1])
            if not entries:
                continue
            hist = history_of(entries)
            pool.write(slot, hist.times, hist.seqs, hist.amounts, hist.cum[:-1], hist.ids)
            if self._persist and len(hist):
                # Entries the store kept past the window (a crash before their deletion was
                # due): delete them in time. Not pruned in memory now: after a crash this
                # history may be ahead of the re-delivered events about to use it.
                cut = bisect_right(hist.times, hist.times[-1] - self.keep_s)
                one = np.array([slot], dtype=np.int64)
                self._drop_rows(one, pool.start[one], np.array([cut], dtype=np.int64))
                pool.marked[slot] = cut
        return out

    # -- saving --------------------------------------------------------------------------
    def take_pending(self) -> WriteSet:
        """The entries recorded since the last call and the deletions now due, for the caller
        to :meth:`save`. New entries stay unsaved (kept for evicted customers) until that save
        returns."""
        now = self._clock()
        if self._new_drops:
            self._drops.append((now + self._drop_delay_s, Rows.concat(self._new_drops)))
            self._new_drops = []
        due: list[Rows] = []
        while self._drops and self._drops[0][0] <= now:
            due.append(self._drops.popleft()[1])
        retry, self._retry = self._retry, []
        ws = WriteSet.merge(
            [*retry, WriteSet([self._next_ws], Rows.concat(self._new), Rows.concat(due))]
        )
        self._new = []
        with self._lock:
            self._next_ws += 1
            if ws and self._store is not None:
                self._queue[ws.ids[-1]] = ws
                for i in ws.ids:
                    self._unsaved[i] = len(ws.added) if i == ws.ids[-1] else 0
        return ws

    def save(self, entries: Mapping[str, Sequence[Entry]]) -> None:
        """Write entries to the store; durable when this returns. Safe to call from another
        thread than the scoring one, and to repeat after a failure.

        A write set is saved together with every other one taken and not yet saved (group
        commit, up to :data:`GROUP_ROWS` rows): a store transaction costs about twice as much
        per entry at 150 entries as at 4,000, and a writer that falls behind catches up in
        larger transactions. One already saved that way returns at once: it is durable.

        Raises:
            StoreUnavailableError: the store failed; the entries stay unsaved.
        """
        if self._store is None or not entries:
            return
        if not isinstance(entries, WriteSet):
            self._store.save(entries)
            return
        with self._lock:
            if entries.ids[-1] not in self._queue:
                return  # saved already, in an earlier group (or never taken here)
            group: list[WriteSet] = []
            rows = 0
            mine = False  # by identity: == on a mapping would build its entries
            for ws in self._queue.values():
                if rows >= GROUP_ROWS and mine:
                    break
                group.append(ws)
                mine = mine or ws is entries
                rows += len(ws.added) + len(ws.dropped)
        self._store.save(WriteSet.merge(group))
        with self._lock:
            for ws in group:
                self._queue.pop(ws.ids[-1], None)
                for i in ws.ids:
                    self._unsaved.pop(i, None)
            floor = min(self._unsaved, default=self._next_ws)
            for cid in [c for c, (tag, _) in self._stash.items() if tag < floor]:
                del self._stash[cid]

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
        """Forget revoked partitions' customers (the new owner reloads them from the store)."""
        gone = set(partitions)
        self._evict([s for s, (p, _c) in self._key_of.items() if p in gone])

    def customers(self) -> int:
        """Customers in memory now (at most ``max_customers``)."""
        return len(self._key_of)

    def drops_waiting(self) -> int:
        """Deletions recorded but not due yet (what goes out of reach in ``drop_delay_s``)."""
        return sum(len(r) for _, r in self._drops) + sum(len(r) for r in self._new_drops)

    def unsaved(self) -> int:
        """Entries taken but not yet saved (bounded by the batches in flight)."""
        with self._lock:
            return sum(self._unsaved.values())
