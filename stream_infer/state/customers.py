"""Customer histories in memory, bounded, backed by a customer store.

At most ``max_customers`` customers are in memory (least recently used first out, reloaded
from the store when they come back), and an entry no window can reach any more (older than
its customer's newest by 30 days plus ``margin_days``) is pruned in memory and deleted from the
store, so both stay bounded by the window rather than growing with the stream. The margin
keeps a late event's windows whole (docs/ARCHITECTURE.md).

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
from typing import Protocol

from cachetools import LRUCache

from stream_infer.features.definitions import CUSTOMER_HORIZON_S, SECONDS_PER_DAY, CustomerHistory
from stream_infer.state.base import Entry

#: A history is pruned in memory once this many of its entries are out of every window's
#: reach, or once it is longer than PRUNE_AT (amortised: a prune rebuilds its prefix sums).
PRUNE_STALE = 16
PRUNE_AT = 256
#: Well past the consumer's auto-commit interval (1 s) plus the wait for a batch's acks.
DROP_DELAY_S = 10.0


class CustomerStore(Protocol):
    """Durable customer histories (see :mod:`stream_infer.state.base`)."""

    def load(self, customer_ids: Iterable[str]) -> Mapping[str, Sequence[Entry]]: ...

    def save(self, entries: Mapping[str, Sequence[Entry]]) -> None: ...

    def first_day(self) -> int | None: ...

    def record_first_day(self, day: int) -> None: ...


Key = tuple[int, str]  # (partition, customer_id)


class CustomerState:
    """Customer histories for the partitions this process owns, backed by a store.

    A customer not in memory (first seen, after a restart or a rebalance, or evicted from the
    LRU of ``max_customers``) is loaded from the store, so a new owner continues exactly where
    the old one stopped. New entries (and ``dropped`` markers for entries no window reaches any
    more) are recorded per batch; the caller takes them (:meth:`take_pending`) and saves them
    (:meth:`save`), possibly later and on another thread. Until that save returns they stay
    "unsaved" and are merged into a customer reloaded meanwhile, so eviction never loses them.

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
        self._histories: LRUCache[Key, CustomerHistory] = LRUCache(maxsize=max_customers)
        self._pending: dict[str, list[Entry]] = {}
        # Out of reach, not yet due for deletion: recorded this batch, then (due time, ...).
        self._new_drops: list[tuple[str, Entry]] = []
        self._drops: deque[tuple[float, str, Entry]] = deque()
        self._drop_delay_s = drop_delay_s
        self._clock = clock
        # customer -> transaction_id -> entry, taken but not durable yet. The writer thread
        # removes what it saved (save), the scoring thread adds (take_pending) and reads (load).
        self._unsaved: dict[str, dict[str, Entry]] = {}
        self._lock = threading.Lock()
        self.margin_s = margin_days * SECONDS_PER_DAY
        #: An entry this much older than its customer's newest is reached by no window.
        self.keep_s = CUSTOMER_HORIZON_S + self.margin_s

    def checkout(self, wanted: Iterable[Key]) -> dict[Key, CustomerHistory]:
        """The histories of ``wanted`` for one batch, loaded when not in memory (one store
        round trip). The returned dict holds each of them for the whole batch, even one the
        LRU evicts meanwhile (a batch may have more customers than the cache holds).

        Raises:
            StoreUnavailableError: the store failed; nothing in memory changed.
        """
        keys = dict.fromkeys(wanted)
        out: dict[Key, CustomerHistory] = {}
        missing: list[Key] = []
        if self._cache:
            cache = self._histories
            for key in keys:
                try:  # not .get(): a hit is two calls fewer, on the hot path
                    out[key] = cache[key]
                except KeyError:
                    missing.append(key)
        else:
            missing = list(keys)
        if missing:
            loaded = self._load(missing)
            if self._cache:
                self._histories.update(loaded)
            out.update(loaded)
        return out

    def _load(self, keys: Sequence[Key]) -> dict[Key, CustomerHistory]:
        cids = list(dict.fromkeys(cid for _, cid in keys))
        # Read unsaved entries before the store: a save that completes in between is then in
        # one or the other (or both: adding is idempotent), never in neither.
        with self._lock:
            unsaved = {c: list(self._unsaved[c].values()) for c in cids if c in self._unsaved}
        stored = self._store.load(cids) if self._store is not None else {}
        out: dict[Key, CustomerHistory] = {}
        for key in keys:
            cid = key[1]
            entries = [*stored.get(cid, ()), *unsaved.get(cid, ())]
            entries += [e for e in self._pending.get(cid, ()) if not e.dropped]
            entries.sort(key=lambda e: (e.epoch_seconds, e.seq, e.transaction_id))
            hist = CustomerHistory()
            for e in entries:
                hist.add(e.epoch_seconds, e.seq, e.amount, e.transaction_id)
            if self._persist and entries:
                # Entries the store kept past the window (a crash before their deletion was
                # due): delete them in time. Not pruned in memory now: after a crash this
                # history may be ahead of the re-delivered events about to use it.
                cut = bisect_right(hist.times, hist.times[-1] - self.keep_s)
                self._record_dropped(cid, hist, 0, cut)
            out[key] = hist
        return out

    def record(self, customer_id: str, entry: Entry) -> None:
        """Remember a new entry to save with the batch."""
        self._pending.setdefault(customer_id, []).append(entry)

    def record_stale(self, customer_id: str, hist: CustomerHistory, index: int, before: int) -> int:
        """After the entry at ``index`` was added to ``hist`` (which had ``before`` entries),
        record as dropped the entries that no window can reach any more because of it.

        Returns how many of ``hist``'s entries (its oldest) no window reaches now.
        """
        times = hist.times
        reach = times[-1] - self.keep_s
        if index == before:  # the new newest: the entries it pushed out of reach
            lo = bisect_right(times, times[-2] - self.keep_s)
            stale = bisect_right(times, reach, lo)
            self._record_dropped(customer_id, hist, lo, stale)
            return stale
        if times[index] <= reach:  # a late event already out of reach
            self._record_dropped(customer_id, hist, index, index + 1)
        return bisect_right(times, reach)

    def _record_dropped(self, customer_id: str, hist: CustomerHistory, lo: int, hi: int) -> None:
        if self._store is None:  # memory only: nothing to delete
            return
        self._new_drops.extend(
            (customer_id, Entry(hist.ids[j], hist.times[j], hist.seqs[j], hist.amounts[j], True))
            for j in range(lo, hi)
        )

    def take_pending(self) -> dict[str, list[Entry]]:
        """The entries recorded since the last call and the deletions now due, for the caller
        to :meth:`save`. New entries stay unsaved (merged into reloaded customers) until that
        save returns."""
        pending, self._pending = self._pending, {}
        now = self._clock()
        drops = self._drops
        due = now + self._drop_delay_s
        drops.extend((due, cid, e) for cid, e in self._new_drops)
        self._new_drops = []
        while drops and drops[0][0] <= now:
            _, cid, e = drops.popleft()
            pending.setdefault(cid, []).append(e)
        if pending and self._store is not None:
            with self._lock:
                for cid, items in pending.items():
                    unsaved = self._unsaved.setdefault(cid, {})
                    for e in items:
                        if not e.dropped:
                            unsaved[e.transaction_id] = e
        return pending

    def save(self, entries: Mapping[str, Sequence[Entry]]) -> None:
        """Write entries to the store; durable when this returns. Safe to call from another
        thread than the scoring one, and to repeat after a failure.

        Raises:
            StoreUnavailableError: the store failed; the entries stay unsaved.
        """
        if self._store is None or not entries:
            return
        self._store.save(entries)
        with self._lock:
            for cid, items in entries.items():
                unsaved = self._unsaved.get(cid)
                if unsaved is None:
                    continue
                for e in items:
                    if not e.dropped:
                        unsaved.pop(e.transaction_id, None)
                if not unsaved:
                    del self._unsaved[cid]

    def flush(self) -> None:
        """Save the recorded entries now; durable when this returns.

        Raises:
            StoreUnavailableError: the store failed; the entries stay recorded for a retry.
        """
        entries = self.take_pending()
        try:
            self.save(entries)
        except BaseException:
            for cid, items in entries.items():
                self._pending[cid] = items + self._pending.get(cid, [])
            raise

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions' customers (the new owner reloads them from the store)."""
        gone = set(partitions)
        for key in [k for k in self._histories if k[0] in gone]:
            del self._histories[key]

    def customers(self) -> int:
        """Customers in memory now (at most ``max_customers``)."""
        return len(self._histories)

    def drops_waiting(self) -> int:
        """Deletions recorded but not due yet (what goes out of reach in ``drop_delay_s``)."""
        return len(self._drops) + len(self._new_drops)

    def unsaved(self) -> int:
        """Entries taken but not yet saved (bounded by the batches in flight)."""
        with self._lock:
            return sum(len(v) for v in self._unsaved.values())
