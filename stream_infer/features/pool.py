"""Customer histories as columns: one pool of numpy arrays, one contiguous segment per customer.

A customer is a *slot*; its entries live at ``start[slot] : start[slot] + length[slot]`` of the
pool arrays, sorted by ``(time, seq)``, with room for ``cap[slot]`` entries. ``cum[i]`` is the
sum of the amounts before entry ``i`` in its segment (from the segment's origin, not its
current start), so a window's sum is ``cum[end] + amount[end] - cum[start]`` whatever has been
pruned from the front. Appending to many customers, and the window searches, are whole-batch
numpy operations (:mod:`stream_infer.features.kernel`); only a customer that outgrows its room
moves (to the end of the pool, at twice the size), and the pool is compacted once half of it
is holes. The math of a window is :mod:`stream_infer.features.definitions`'s; this module only
keeps the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

_MIN_CAP = 8
_MIN_POOL = 1024


def spans(starts: Ints, lengths: Ints) -> Ints:
    """The concatenated index ranges ``[start, start + length)``, in order."""
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    # Each range's offset from its own start: a global arange minus the range's first position.
    firsts = np.cumsum(lengths) - lengths
    return np.repeat(starts - firsts, lengths) + np.arange(total, dtype=np.int64)


def _room(n: Ints) -> Ints:
    """Capacity for ``n`` entries: the next power of two at or above ``2 n`` (at least 8)."""
    want = np.maximum(2 * n, _MIN_CAP)
    return (1 << np.ceil(np.log2(want)).astype(np.int64)).astype(np.int64)


class HistoryPool:
    """Segments of ``(time, seq, amount, cum, transaction_id)`` entries, one per slot.

    Not thread-safe: one owner (the scoring thread). Slots are reused after :meth:`free`.
    """

    def __init__(self) -> None:
        self.t: Ints = np.zeros(_MIN_POOL, dtype=np.int64)
        self.seq: Ints = np.zeros(_MIN_POOL, dtype=np.int64)
        self.amt: Floats = np.zeros(_MIN_POOL, dtype=np.float64)
        self.cum: Floats = np.zeros(_MIN_POOL, dtype=np.float64)
        self.ids: npt.NDArray[np.object_] = np.empty(_MIN_POOL, dtype=object)
        self.end = 0  # first unused pool index
        self.holes = 0  # pool entries no live segment owns
        self.start: Ints = np.zeros(16, dtype=np.int64)
        self.length: Ints = np.zeros(16, dtype=np.int64)
        self.cap: Ints = np.zeros(16, dtype=np.int64)
        #: Entries at the front of a segment already recorded as out of every window's reach.
        self.marked: Ints = np.zeros(16, dtype=np.int64)
        self._free: list[int] = list(range(15, -1, -1))

    # -- slots ---------------------------------------------------------------------------
    def alloc(self, n: int) -> Ints:
        """``n`` new empty slots."""
        while len(self._free) < n:
            self._grow_slots()
        out = np.array([self._free.pop() for _ in range(n)], dtype=np.int64)
        self.start[out] = self.end
        self.length[out] = 0
        self.cap[out] = 0
        self.marked[out] = 0
        return out

    def free(self, slots: Sequence[int] | Ints) -> None:
        """Release slots (their entries become holes)."""
        idx = np.asarray(slots, dtype=np.int64)
        self.holes += int(self.cap[idx].sum())
        self.ids[spans(self.start[idx], self.length[idx])] = None
        self.length[idx] = 0
        self.cap[idx] = 0
        self._free.extend(idx.tolist())
        if self.holes > _MIN_POOL and 2 * self.holes > self.end:
            self.compact()

    def _grow_slots(self) -> None:
        old = len(self.start)
        for name in ("start", "length", "cap", "marked"):
            arr = getattr(self, name)
            grown = np.zeros(2 * old, dtype=np.int64)
            grown[:old] = arr
            setattr(self, name, grown)
        self._free.extend(range(2 * old - 1, old - 1, -1))

    def live(self) -> Ints:
        """Slots in use."""
        used = np.ones(len(self.start), dtype=bool)
        used[self._free] = False
        return np.flatnonzero(used).astype(np.int64)

    # -- entries -------------------------------------------------------------------------
    def reserve(self, slots: Ints, extra: Ints) -> None:
        """Make room for ``extra`` more entries in each of ``slots`` (distinct), moving those
        that lack it to the end of the pool at twice the size."""
        need = self.length[slots] + extra
        move = need > self.cap[slots]
        if not move.any():
            return
        moving = slots[move]
        new_cap = _room(need[move])
        self._ensure(self.end + int(new_cap.sum()))
        new_start = self.end + np.cumsum(new_cap) - new_cap
        lengths = self.length[moving]
        src = spans(self.start[moving], lengths)
        dst = spans(new_start, lengths)
        for arr in (self.t, self.seq, self.amt, self.cum, self.ids):
            arr[dst] = arr[src]
        self.ids[src] = None
        self.holes += int(self.cap[moving].sum())
        self.end += int(new_cap.sum())
        self.start[moving] = new_start
        self.cap[moving] = new_cap

    def _ensure(self, size: int) -> None:
        if size <= len(self.t):
            return
        new = max(size, 2 * len(self.t))
        for name in ("t", "seq", "amt", "cum", "ids"):
            arr = getattr(self, name)
            grown = np.zeros(new, dtype=arr.dtype) if arr.dtype != object else np.empty(new, object)
            grown[: self.end] = arr[: self.end]
            setattr(self, name, grown)

    def compact(self) -> None:
        """Rewrite every live segment contiguously (holes gone), each with room to grow, and
        rebase each segment's running sums to start at 0 (bounded rounding)."""
        slots = self.live()
        lengths = self.length[slots]
        caps = _room(lengths)
        starts = np.cumsum(caps) - caps
        size = max(_MIN_POOL, int(caps.sum()) * 2)
        src = spans(self.start[slots], lengths)
        dst = spans(starts, lengths)
        base = np.repeat(self.cum[np.minimum(self.start[slots], len(self.cum) - 1)], lengths)
        for name in ("t", "seq", "amt", "cum", "ids"):
            arr = getattr(self, name)
            grown = (
                np.zeros(size, dtype=arr.dtype) if arr.dtype != object else np.empty(size, object)
            )
            grown[dst] = arr[src]
            setattr(self, name, grown)
        self.cum[dst] -= base
        self.start[slots] = starts
        self.cap[slots] = caps
        self.end = int(caps.sum())
        self.holes = 0

    def drop_front(self, slots: Ints, cut: Ints) -> None:
        """Forget the ``cut`` oldest entries of each slot (in memory only)."""
        self.ids[spans(self.start[slots], cut)] = None
        self.start[slots] += cut
        self.length[slots] -= cut
        self.cap[slots] -= cut
        self.marked[slots] = np.maximum(self.marked[slots] - cut, 0)
        self.holes += int(cut.sum())

    def write(
        self,
        slot: int,
        times: Sequence[int],
        seqs: Sequence[int],
        amounts: Sequence[float],
        cums: Sequence[float],
        ids: Sequence[str],
    ) -> None:
        """Replace one slot's entries (the sequential path and loading use this)."""
        n = len(times)
        one = np.array([slot], dtype=np.int64)
        self.reserve(one, np.array([max(0, n - int(self.length[slot]))], dtype=np.int64))
        lo = int(self.start[slot])
        self.t[lo : lo + n] = times
        self.seq[lo : lo + n] = seqs
        self.amt[lo : lo + n] = amounts
        self.cum[lo : lo + n] = cums
        self.ids[lo : lo + n] = ids
        old = int(self.length[slot])
        if old > n:
            self.ids[lo + n : lo + old] = None
        self.length[slot] = n

    def last_times(self, slots: Ints) -> Ints:
        """Each slot's newest time (the int64 minimum for an empty slot)."""
        lengths = self.length[slots]
        last = self.t[np.maximum(self.start[slots] + lengths - 1, 0)]
        return np.where(lengths > 0, last, np.iinfo(np.int64).min)

    def entries(
        self, slot: int
    ) -> tuple[list[int], list[int], list[float], list[float], list[str]]:
        """One slot's entries as lists: times, seqs, amounts, running sums, ids."""
        lo = int(self.start[slot])
        hi = lo + int(self.length[slot])
        return (
            self.t[lo:hi].tolist(),
            self.seq[lo:hi].tolist(),
            self.amt[lo:hi].tolist(),
            self.cum[lo:hi].tolist(),
            self.ids[lo:hi].tolist(),
        )
