"""One stream definition's entity histories as columns, and the two ways events join them.

:class:`Histories` owns the :class:`~.pool.EntityPool` a :class:`~.windows.Plan` asks for, the
per-entity shifts of the variance sums, and the min/max tables, and keeps them consistent:

- :meth:`Histories.append`, the in-order path: each entity's events of the batch come strictly
  after everything it holds (by ``(time, seq)``; none a re-delivery), so they are appended
  together, running sums and tables extended at the new entries only, and every event's
  features read at its own position, all numpy over the batch.
- :meth:`Histories.one`, one event at a time: looks the event up among its entity's entries of
  the same second (a re-delivery gets the features stored with the first one), else inserts it
  in ``(time, seq)`` order and recomputes the running sums and tables after it.

Which events may take which path is :class:`~.kernel.StreamKernel`'s decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_infer.streamdef import minmax
from stream_infer.streamdef.pool import EntityPool, Floats, Ints, spans
from stream_infer.streamdef.windows import Plan, features_at, first_after

_CHAINS = ("cum", "c1", "c2")


@dataclass(frozen=True)
class EntityHistory:
    """One entity's kept entries, oldest first, as the kernel holds them (for a store).

    ``values``, ``sums``, ``c1``, ``c2`` and ``features`` have one column per entry; reloading
    all of it (running sums included) gives bit-for-bit the features a never-evicted entity
    would get.
    """

    times: Ints
    seqs: Ints
    ids: list[Any]
    values: Floats
    sums: Floats
    c1: Floats
    c2: Floats
    shifts: Floats
    features: Floats


class Histories:
    """Entity histories (one slot each) for one plan. Not thread-safe: one owner.

    ``refresh_segments``: rebuild min/max tables over each touched segment instead of filling
    the new entries only (kept for bench/streamdef_kernel.py).
    """

    def __init__(self, plan: Plan, *, refresh_segments: bool = False) -> None:
        self.plan = plan
        self.pool = EntityPool(plan.templates())
        self.shift = np.zeros((len(plan.var_columns), 16), dtype=np.float64)
        self._var_x = plan.x_rows(plan.var_columns)
        self._sum_x = plan.x_rows(plan.sum_columns)
        self._tables = [(f"min:{c}", plan.columns.index(c)) for c in plan.min_columns]
        self._tables += [(f"max:{c}", plan.columns.index(c)) for c in plan.max_columns]
        self._refresh_segments = refresh_segments

    def alloc(self) -> int:
        """A new empty slot."""
        slot = self.pool.alloc()
        if slot >= self.shift.shape[1]:
            grown = np.zeros((self.shift.shape[0], 2 * slot + 2), dtype=np.float64)
            grown[:, : self.shift.shape[1]] = self.shift
            self.shift = grown
        return slot

    def free(self, slot: int) -> None:
        """Release ``slot`` and its entries."""
        self.pool.free(slot)

    def last_seqs(self, slots: Ints) -> Ints:
        """Each slot's newest entry's seq (the int64 minimum for an empty slot)."""
        lengths = self.pool.length[slots]
        last = self.pool.arrays["seq"][np.maximum(self.pool.start[slots] + lengths - 1, 0)]
        return np.where(lengths > 0, last, np.iinfo(np.int64).min)

    def holds(self, slot: int, time: int, event_id: Any) -> bool:
        """Whether ``slot`` holds an entry of second ``time`` with id ``event_id``."""
        lo, hi = self.pool.bounds(slot)
        seg = self.pool.arrays["t"][lo:hi]
        a = lo + int(np.searchsorted(seg, time, side="left"))
        b = lo + int(np.searchsorted(seg, time, side="right"))
        return event_id in self.pool.arrays["ids"][a:b].tolist()

    def last_times(self, slots: Ints) -> Ints:
        lengths = self.pool.length[slots]
        last = self.pool.arrays["t"][np.maximum(self.pool.start[slots] + lengths - 1, 0)]
        return np.where(lengths > 0, last, np.iinfo(np.int64).min)

    def _terms(self, name: str, values: Floats, shift: Floats) -> Floats:
        """What running-sum array ``name`` adds up, given ``x`` columns ``values``."""
        if name == "cum":
            return values[self._sum_x]
        d = values[self._var_x] - shift
        return d if name == "c1" else d * d

    def append(
        self,
        rows: Ints,
        ss: Ints,
        first: npt.NDArray[np.bool_],
        times: Ints,
        seqs: Ints,
        ids: npt.NDArray[np.object_],
        x: Floats,
        out: Floats,
        sums: Floats,
    ) -> Ints:
        """The in-order path: ``rows`` sorted by slot, in batch order within one. Returns the
        slots appended to. ``sums[rows]`` get each new entry's exclusive running sums."""
        pool = self.pool
        a = pool.arrays
        m = len(rows)
        group = np.cumsum(first) - 1
        heads = np.flatnonzero(first)
        rank = np.arange(m, dtype=np.int64) - heads[group]
        uniq = ss[heads]
        counts = np.diff(np.append(heads, m))
        width = int(counts.max())
        pool.reserve(uniq, counts)
        a = pool.arrays
        lengths = pool.length[uniq]
        pos = pool.start[ss] + lengths[group] + rank
        xs = x[:, rows]
        a["t"][pos] = times[rows]
        a["seq"][pos] = seqs[rows]
        a["ids"][pos] = ids[rows]
        a["x"][:, pos] = xs
        empty = uniq[lengths == 0]
        if len(empty) and len(self._var_x):
            self.shift[:, empty] = xs[self._var_x][:, heads[lengths == 0]]
        shift = self.shift[:, ss]
        last = np.maximum(pool.start[uniq] + lengths - 1, 0)
        for name in _CHAINS:
            chain = a[name]
            if not chain.shape[0]:
                continue
            terms = self._terms(name, xs, shift)
            tail = chain[:, last] + self._terms(name, a["x"][:, last], self.shift[:, uniq])
            # One entry at a time, as the one-by-one path adds them (the same rounding): each
            # slot's prefix, then its new entries' terms, in a row of its own; accumulate runs
            # along each row in order (never pairwise).
            grid = np.zeros((chain.shape[0], len(heads), width), dtype=np.float64)
            grid[:, :, 0] = np.where(lengths > 0, tail, 0.0)
            inner = rank < width - 1
            grid[:, group[inner], rank[inner] + 1] = terms[:, inner]
            chain[:, pos] = np.cumsum(grid, axis=2)[:, group, rank]
            if name == "cum":
                sums[rows] = chain[:, pos].T
        pool.length[uniq] = lengths + counts
        if self._refresh_segments:
            self.fill_tables(uniq, spans(pool.start[uniq], pool.length[uniq]))
        else:
            self.fill_tables(uniq, pos)
        feats = features_at(pool, self.plan, pool.start[ss], pos, shift)
        out[rows] = feats
        a["feats"][:, pos] = feats.T
        return uniq

    def fill_tables(self, slots: Ints, positions: Ints) -> None:
        pool = self.pool
        if not self._tables:
            return
        levels = minmax.levels_for(int(pool.length[slots].max()))
        for name, xi in self._tables:
            op: minmax.MinMax = "min" if name.startswith("min") else "max"
            table = minmax.with_levels(pool.arrays[name], levels, pool.end, op)
            pool.arrays[name] = table
            table[0, positions] = pool.arrays["x"][xi, positions]
            minmax.fill(table, positions, op)

    def one(
        self,
        slot: int,
        row: int,
        times: Ints,
        seqs: Ints,
        ids: npt.NDArray[np.object_],
        x: Floats,
        out: Floats,
        sums: Floats,
    ) -> bool:
        """One event through the slow path; False if it was a re-delivery. ``sums[row]`` gets
        the new entry's exclusive running sums."""
        pool = self.pool
        lo, hi = pool.bounds(slot)
        t = int(times[row])
        seg_t = pool.arrays["t"][lo:hi]
        a_ = int(np.searchsorted(seg_t, t, side="left"))
        b_ = int(np.searchsorted(seg_t, t, side="right"))
        for j, stored in enumerate(pool.arrays["ids"][lo + a_ : lo + b_].tolist()):
            if stored == ids[row]:
                out[row] = pool.arrays["feats"][:, lo + a_ + j]
                return False
        same = pool.arrays["seq"][lo + a_ : lo + b_]
        offset = a_ + int(np.searchsorted(same, seqs[row], side="right"))
        was_empty = hi == lo
        pos = pool.open_gap(slot, offset)
        lo, hi = pool.bounds(slot)
        a = pool.arrays
        a["t"][pos] = t
        a["seq"][pos] = seqs[row]
        a["ids"][pos] = ids[row]
        a["x"][:, pos] = x[:, row]
        if was_empty and len(self._var_x):
            self.shift[:, slot] = x[self._var_x, row]
        self._rechain(slot, pos)
        sums[row] = a["cum"][:, pos]
        self.fill_tables(np.array([slot], dtype=np.int64), np.arange(pos, hi, dtype=np.int64))
        feats = features_at(
            pool,
            self.plan,
            np.array([lo], dtype=np.int64),
            np.array([pos], dtype=np.int64),
            self.shift[:, [slot]],
        )
        out[row] = feats[0]
        a["feats"][:, pos] = feats[0]
        return True

    def _rechain(self, slot: int, pos: int) -> None:
        """Recompute ``slot``'s running sums from pool index ``pos`` to its end, starting from
        the prefix held at ``pos`` (0 at an empty segment's start)."""
        pool = self.pool
        a = pool.arrays
        lo, hi = pool.bounds(slot)
        shift = self.shift[:, [slot]]
        for name in _CHAINS:
            chain = a[name]
            if not chain.shape[0]:
                continue
            if pos == hi - 1 and pos > lo:  # appended: the prefix is the previous entry's sum
                base = chain[:, pos - 1] + self._terms(name, a["x"][:, [pos - 1]], shift)[:, 0]
            elif pos == lo and hi - lo == 1:
                base = np.zeros(chain.shape[0])
            else:  # the entry shifted right left its exclusive prefix here
                base = chain[:, pos].copy()
            terms = self._terms(name, a["x"][:, pos : hi - 1], shift)
            chain[:, pos:hi] = np.cumsum(np.concatenate([base[:, None], terms], axis=1), axis=1)

    def restart_shifted(self, slot: int) -> None:
        """Start ``slot``'s shifted sums afresh at its current start (their error bound
        counts additions from there)."""
        if not len(self._var_x):
            return
        lo, hi = self.pool.bounds(slot)
        a = self.pool.arrays
        if hi > lo:
            self.shift[:, slot] = a["x"][self._var_x, lo]
            terms = a["x"][self._var_x, lo : hi - 1] - self.shift[:, [slot]]
            base = np.zeros((len(self._var_x), 1))
            a["c1"][:, lo:hi] = np.cumsum(np.concatenate([base, terms], axis=1), axis=1)
            a["c2"][:, lo:hi] = np.cumsum(np.concatenate([base, terms * terms], axis=1), axis=1)

    def export(self, slot: int) -> EntityHistory:
        """``slot``'s entries, copied."""
        lo, hi = self.pool.bounds(slot)
        a = self.pool.arrays
        return EntityHistory(
            times=a["t"][lo:hi].copy(),
            seqs=a["seq"][lo:hi].copy(),
            ids=a["ids"][lo:hi].tolist(),
            values=a["x"][:, lo:hi].copy(),
            sums=a["cum"][:, lo:hi].copy(),
            c1=a["c1"][:, lo:hi].copy(),
            c2=a["c2"][:, lo:hi].copy(),
            shifts=self.shift[:, slot].copy(),
            features=a["feats"][:, lo:hi].copy(),
        )

    def load(self, slot: int, history: EntityHistory) -> None:
        """Write ``history`` into the empty ``slot``."""
        pool = self.pool
        k = len(history.times)
        pool.reserve(np.array([slot], dtype=np.int64), np.array([k], dtype=np.int64))
        lo = int(pool.start[slot])
        a = pool.arrays
        a["t"][lo : lo + k] = history.times
        a["seq"][lo : lo + k] = history.seqs
        a["ids"][lo : lo + k] = history.ids
        a["x"][:, lo : lo + k] = history.values
        a["cum"][:, lo : lo + k] = history.sums
        a["c1"][:, lo : lo + k] = history.c1
        a["c2"][:, lo : lo + k] = history.c2
        a["feats"][:, lo : lo + k] = history.features
        self.shift[:, slot] = history.shifts
        pool.length[slot] = k
        if k:
            self.fill_tables(np.array([slot], dtype=np.int64), np.arange(lo, lo + k))

    def drop_stale(self, slots: Ints, reach: Ints, least: int) -> list[tuple[int, list[Any]]]:
        """Drop each slot's entries at or before its ``reach`` where they are at least
        ``least`` entries or half the segment; returns ``(slot, dropped ids)`` pairs."""
        pool = self.pool
        lo = pool.start[slots]
        length = pool.length[slots]
        t = pool.arrays["t"]
        # Times are sorted: at least k entries are out of reach iff the k-th one is.
        enough = np.maximum(np.minimum(least, length), 1)
        half = np.maximum((length + 1) // 2, 1)
        due = (length > 0) & ((t[lo + enough - 1] <= reach) | (t[lo + half - 1] <= reach))
        if not due.any():
            return []
        slots, lo, length = slots[due], lo[due], length[due]
        cut = first_after(t, lo, lo + length, reach[due]) - lo
        ids = pool.arrays["ids"][spans(lo, cut)].tolist()
        ends = np.cumsum(cut).tolist()
        out = [
            (s, ids[e - k : e]) for s, e, k in zip(slots.tolist(), ends, cut.tolist(), strict=True)
        ]
        pool.drop_front(slots, cut)
        if len(self._var_x):
            for slot in slots.tolist():
                self.restart_shifted(slot)
        return out
