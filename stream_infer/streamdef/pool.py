"""Entity histories as columns: one pool of numpy arrays, one contiguous segment per entity.

The generalisation of the hand-written path's customer history pool (removed) to any set of
columns. An entity is a *slot*; its entries live at ``start[slot] : start[slot] +
length[slot]`` of every pool array (the pool axis is each array's last), sorted by
``(time, seq)``, with room for ``cap[slot]`` entries. Only an entity that outgrows its room
moves (to the end of the pool, at twice the size); the pool is compacted once half of it is
holes. What the arrays mean (values, running sums, min/max tables, stored features) is the
kernel's business; this module only keeps them together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    firsts = np.cumsum(lengths) - lengths
    return np.repeat(starts - firsts, lengths) + np.arange(total, dtype=np.int64)


def room(n: Ints) -> Ints:
    """Capacity for ``n`` entries: the next power of two at or above ``2 n`` (at least 8)."""
    want = np.maximum(2 * n, _MIN_CAP)
    return (1 << np.ceil(np.log2(want)).astype(np.int64)).astype(np.int64)


def _grown(arr: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    shape = (*arr.shape[:-1], size)
    return np.empty(shape, dtype=object) if arr.dtype == object else np.zeros(shape, arr.dtype)


class EntityPool:
    """Segments of entries over named arrays, one segment per slot.

    ``arrays`` maps a name to an array whose last axis is the pool (``(..., size)``); callers
    may replace an array by one of the same last-axis length (more rows, e.g. table levels).
    Not thread-safe: one owner.
    """

    def __init__(self, templates: Mapping[str, tuple[tuple[int, ...], npt.DTypeLike]]) -> None:
        """``templates``: per array, its leading shape and dtype."""
        self.arrays: dict[str, npt.NDArray[Any]] = {
            name: (
                np.empty((*lead, _MIN_POOL), dtype=object)
                if np.dtype(dtype) == object
                else np.zeros((*lead, _MIN_POOL), dtype=dtype)
            )
            for name, (lead, dtype) in templates.items()
        }
        self.end = 0  # first unused pool index
        self.holes = 0  # pool entries no live segment owns
        self.start: Ints = np.zeros(16, dtype=np.int64)
        self.length: Ints = np.zeros(16, dtype=np.int64)
        self.cap: Ints = np.zeros(16, dtype=np.int64)
        self._free: list[int] = list(range(15, -1, -1))

    @property
    def size(self) -> int:
        """Entries the pool arrays hold (used or not)."""
        return int(next(iter(self.arrays.values())).shape[-1])

    # -- slots ---------------------------------------------------------------------------
    def alloc(self) -> int:
        """A new empty slot."""
        if not self._free:
            old = len(self.start)
            for name in ("start", "length", "cap"):
                grown = np.zeros(2 * old, dtype=np.int64)
                grown[:old] = getattr(self, name)
                setattr(self, name, grown)
            self._free.extend(range(2 * old - 1, old - 1, -1))
        slot = self._free.pop()
        self.start[slot] = self.end
        self.length[slot] = 0
        self.cap[slot] = 0
        return slot

    def free(self, slot: int) -> None:
        """Release a slot (its entries become holes)."""
        if "ids" in self.arrays:  # let go of the id objects now
            lo = int(self.start[slot])
            self.arrays["ids"][..., lo : lo + int(self.length[slot])] = None
        self.holes += int(self.cap[slot])
        self.length[slot] = 0
        self.cap[slot] = 0
        self._free.append(slot)
        if self.holes > _MIN_POOL and 2 * self.holes > self.end:
            self.compact()

    def live(self) -> Ints:
        """Slots in use."""
        used = np.ones(len(self.start), dtype=bool)
        used[self._free] = False
        return np.flatnonzero(used).astype(np.int64)

    # -- entries -------------------------------------------------------------------------
    def reserve(self, slots: Ints, extra: Ints) -> None:
        """Room for ``extra`` more entries in each of ``slots`` (distinct); a slot that lacks
        it moves to the end of the pool at twice the size."""
        need = self.length[slots] + extra
        move = need > self.cap[slots]
        if not move.any():
            return
        moving = slots[move]
        new_cap = room(need[move])
        if self.end + int(new_cap.sum()) > self.size and 2 * self.holes > self.end:
            # Half the pool is holes: compact (every segment moves, with room) rather than grow.
            self.compact()
            self.reserve(slots, extra)
            return
        self._ensure(self.end + int(new_cap.sum()))
        new_start = self.end + np.cumsum(new_cap) - new_cap
        lengths = self.length[moving]
        src = spans(self.start[moving], lengths)
        dst = spans(new_start, lengths)
        for arr in self.arrays.values():
            if not arr.size:  # no rows (e.g. no variance columns)
                continue
            arr[..., dst] = arr[..., src]
            if arr.dtype == object:
                arr[..., src] = None
        self.holes += int(self.cap[moving].sum())
        self.end += int(new_cap.sum())
        self.start[moving] = new_start
        self.cap[moving] = new_cap

    def _ensure(self, size: int) -> None:
        if size <= self.size:
            return
        new = max(size, 2 * self.size)
        for name, arr in self.arrays.items():
            grown = _grown(arr, new)
            grown[..., : self.end] = arr[..., : self.end]
            self.arrays[name] = grown

    def compact(self) -> None:
        """Rewrite every live segment contiguously (holes gone), each with room to grow."""
        slots = self.live()
        lengths = self.length[slots]
        caps = room(lengths)
        starts = np.cumsum(caps) - caps
        size = max(_MIN_POOL, int(caps.sum()) * 2)
        src = spans(self.start[slots], lengths)
        dst = spans(starts, lengths)
        for name, arr in self.arrays.items():
            grown = _grown(arr, size)
            grown[..., dst] = arr[..., src]
            self.arrays[name] = grown
        self.start[slots] = starts
        self.cap[slots] = caps
        self.end = int(caps.sum())
        self.holes = 0

    def drop_front(self, slots: Ints, cuts: Ints) -> None:
        """Forget the ``cuts`` oldest entries of each of ``slots`` (distinct)."""
        if "ids" in self.arrays:
            self.arrays["ids"][..., spans(self.start[slots], cuts)] = None
        self.start[slots] += cuts
        self.length[slots] -= cuts
        self.cap[slots] -= cuts
        self.holes += int(cuts.sum())

    def open_gap(self, slot: int, offset: int) -> int:
        """Shift ``slot``'s entries from ``offset`` (counted from the segment's start) one place
        right, making room first (the segment may move); the slot's length grows by one.
        Returns the pool index left to be written."""
        self.reserve(np.array([slot], dtype=np.int64), np.array([1], dtype=np.int64))
        lo = int(self.start[slot])
        hi = lo + int(self.length[slot])
        pos = lo + offset
        if not lo <= pos <= hi:
            raise IndexError(offset)
        for arr in self.arrays.values():
            arr[..., pos + 1 : hi + 1] = arr[..., pos:hi].copy()
        self.length[slot] += 1
        return pos

    def bounds(self, slot: int) -> tuple[int, int]:
        """``slot``'s entries as the pool range ``[lo, hi)``."""
        lo = int(self.start[slot])
        return lo, lo + int(self.length[slot])
