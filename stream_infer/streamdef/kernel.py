"""The compiled stream kernel: a definition's stream views over a whole batch, per-entity
histories kept as columns (:class:`~.pool.EntityPool`), features read by :mod:`.windows`.

Semantics are :mod:`stream_infer.streamdef.reference`'s, event by event in batch order. Two
paths give exactly that:

- **in order** (nearly every entity of a batch): each of the entity's events in the batch is
  strictly later than everything before it, so none can be a duplicate (a duplicate repeats its
  second) or land before another; appending them all, then evaluating each at its own position,
  is doing it one by one. Appends, running sums, min/max tables and window searches are numpy
  over the batch.
- **one by one** (a late event, a second shared with an earlier entry, a re-delivery): the
  entity's events of the batch go through :meth:`StreamKernel._one`, which looks the event up
  among the entries of its second, inserts it in ``(time, seq)`` order and rebuilds the running
  sums and tables after it.

Every entry keeps the features it got, so a re-delivered event gets them again exactly.
tests/unit/test_streamdef_kernel_property.py holds the kernel to the reference on random
definitions and random streams, with eviction and reload.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_infer.streamdef import minmax
from stream_infer.streamdef.pool import EntityPool, Floats, Ints, spans
from stream_infer.streamdef.spec import SEQ_COLUMN, StreamDefinitions
from stream_infer.streamdef.windows import Plan, features_at, first_after

_CHAINS = ("cum", "c1", "c2")
#: An entity's out-of-reach entries are dropped in one go once there are this many (or they
#: are half its history): each drop is a few numpy calls, so not for every entry.
PRUNE_AT = 64


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


@dataclass(frozen=True)
class KernelBatch:
    """What :meth:`StreamKernel.run` did to a batch."""

    #: ``(n, len(defs.stream_features()))`` features, rows in input order.
    features: Floats
    #: False where the event was a re-delivery of a stored entry (nothing was added).
    new: npt.NDArray[np.bool_]
    #: Event ids dropped by pruning during the batch, by entity (``margin_s`` set only).
    dropped: dict[Hashable, list[Any]] = field(default_factory=dict)


class StreamKernel:
    """Per-entity histories of one :class:`StreamDefinitions`' event source, and its stream
    views' features for each batch. Not thread-safe: one owner.

    ``margin_s``: when set, an entity that takes the in-order path drops the entries no event
    within ``margin_s`` of its newest can reach, once there are ``PRUNE_AT`` of them or they are
    half its history (amortised; :meth:`prune` does it for all at once). ``refresh``:
    ``"append"`` fills min/max tables at the new entries only; ``"segment"`` rebuilds them over
    every touched segment (kept for bench/streamdef_kernel.py).
    """

    def __init__(
        self, defs: StreamDefinitions, *, margin_s: int | None = None, refresh: str = "append"
    ) -> None:
        self.defs = defs
        self.margin_s = margin_s
        self._key_of: dict[int, Hashable] = {}
        self.plan = Plan.of(defs)
        self.pool = EntityPool(self.plan.templates())
        self._slots: dict[Hashable, int] = {}
        self._shift = np.zeros((len(self.plan.var_columns), 16), dtype=np.float64)
        self._var_x = self.plan.x_rows(self.plan.var_columns)
        self._sum_x = self.plan.x_rows(self.plan.sum_columns)
        self._tables = [(f"min:{c}", self.plan.columns.index(c)) for c in self.plan.min_columns]
        self._tables += [(f"max:{c}", self.plan.columns.index(c)) for c in self.plan.max_columns]
        self._refresh_segments = refresh == "segment"

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def keys(self) -> list[Hashable]:
        """Entities held in memory."""
        return list(self._slots)

    # -- batches -------------------------------------------------------------------------
    def evaluate(self, events: Mapping[str, npt.NDArray[Any]]) -> Floats:
        """The batch's stream features (rows in input order); the events join the state."""
        return self.run(events).features

    def run(self, events: Mapping[str, npt.NDArray[Any]]) -> KernelBatch:
        """Add a batch of event columns (``SEQ_COLUMN`` included) and compute each event's
        features at its own position, as one-by-one evaluation in batch order would.

        Raises:
            KeyError: a column the definition reads is missing.
        """
        src = self.defs.source
        keys = events[src.key_field].tolist()
        n = len(keys)
        out = np.empty((n, len(self.plan.aggs)), dtype=np.float64)
        new = np.ones(n, dtype=bool)
        if n == 0:
            return KernelBatch(out, new)
        found = list(map(self._slots.get, keys))
        if None in found:
            found = [self._slot(k) if s is None else s for k, s in zip(keys, found, strict=True)]
        slots = np.array(found, dtype=np.int64)
        times = np.asarray(events[src.timestamp_field], dtype=np.int64)
        seqs = np.asarray(events[SEQ_COLUMN], dtype=np.int64)
        ids = np.asarray(events[src.event_id_field])
        if ids.dtype != object:  # stored as the Python objects they compare as
            ids = np.empty(n, dtype=object)
            ids[:] = events[src.event_id_field].tolist()
        x = np.empty((len(self.plan.columns), n), dtype=np.float64)
        for i, c in enumerate(self.plan.columns):
            x[i] = events[c]
        order = np.argsort(slots, kind="stable")
        ss = slots[order]
        ts = times[order]
        first = np.ones(n, dtype=bool)
        first[1:] = ss[1:] != ss[:-1]
        prev = np.empty(n, dtype=np.int64)
        prev[1:] = ts[:-1]
        prev[first] = self._last_times(ss[first])
        bad = ts <= prev  # late, sharing a second with an earlier entry, or a duplicate
        slow = np.unique(ss[bad]) if bad.any() else np.empty(0, dtype=np.int64)
        fast = ~np.isin(ss, slow) if len(slow) else np.ones(n, dtype=bool)
        dropped: dict[Hashable, list[Any]] = {}
        if fast.any():
            appended = self._append(order[fast], ss[fast], first[fast], times, seqs, ids, x, out)
            if self.margin_s is not None:
                dropped = self._prune_slots(appended, self.margin_s, PRUNE_AT)
        for slot in slow.tolist():
            for row in order[ss == slot].tolist():
                new[row] = self._one(slot, row, times, seqs, ids, x, out)
        return KernelBatch(out, new, dropped)

    def _slot(self, key: Hashable) -> int:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self.pool.alloc()
            self._key_of[slot] = key
            if slot >= self._shift.shape[1]:
                grown = np.zeros((self._shift.shape[0], 2 * slot + 2), dtype=np.float64)
                grown[:, : self._shift.shape[1]] = self._shift
                self._shift = grown
        return slot

    def _last_times(self, slots: Ints) -> Ints:
        lengths = self.pool.length[slots]
        last = self.pool.arrays["t"][np.maximum(self.pool.start[slots] + lengths - 1, 0)]
        return np.where(lengths > 0, last, np.iinfo(np.int64).min)

    def _terms(self, name: str, values: Floats, shift: Floats) -> Floats:
        """What running-sum array ``name`` adds up, given ``x`` columns ``values``."""
        if name == "cum":
            return values[self._sum_x]
        d = values[self._var_x] - shift
        return d if name == "c1" else d * d

    def _append(
        self,
        rows: Ints,
        ss: Ints,
        first: npt.NDArray[np.bool_],
        times: Ints,
        seqs: Ints,
        ids: npt.NDArray[np.object_],
        x: Floats,
        out: Floats,
    ) -> Ints:
        """The in-order path: ``rows`` sorted by slot, in batch order within one. Returns the
        slots appended to."""
        pool = self.pool
        a = pool.arrays
        m = len(rows)
        group = np.cumsum(first) - 1
        heads = np.flatnonzero(first)
        rank = np.arange(m, dtype=np.int64) - heads[group]
        uniq = ss[heads]
        counts = np.diff(np.append(heads, m))
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
            self._shift[:, empty] = xs[self._var_x][:, heads[lengths == 0]]
        shift = self._shift[:, ss]
        last = np.maximum(pool.start[uniq] + lengths - 1, 0)
        for name in _CHAINS:
            chain = a[name]
            if not chain.shape[0]:
                continue
            terms = self._terms(name, xs, shift)
            tail = chain[:, last] + self._terms(name, a["x"][:, last], self._shift[:, uniq])
            vals = np.empty_like(terms)
            vals[:, heads] = np.where(lengths > 0, tail, 0.0)
            # One entry at a time, as the one-by-one path adds them (the same rounding).
            for r in range(1, int(rank.max()) + 1):
                at = np.flatnonzero(rank == r)
                vals[:, at] = vals[:, at - 1] + terms[:, at - 1]
            chain[:, pos] = vals
        pool.length[uniq] = lengths + counts
        if self._refresh_segments:
            self._fill_tables(uniq, spans(pool.start[uniq], pool.length[uniq]))
        else:
            self._fill_tables(uniq, pos)
        feats = features_at(pool, self.plan, pool.start[ss], pos, shift)
        out[rows] = feats
        a["feats"][:, pos] = feats.T
        return uniq

    def _fill_tables(self, slots: Ints, positions: Ints) -> None:
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

    def _one(
        self,
        slot: int,
        row: int,
        times: Ints,
        seqs: Ints,
        ids: npt.NDArray[np.object_],
        x: Floats,
        out: Floats,
    ) -> bool:
        """One event through the slow path; False if it was a re-delivery."""
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
            self._shift[:, slot] = x[self._var_x, row]
        self._rechain(slot, pos)
        self._fill_tables(np.array([slot], dtype=np.int64), np.arange(pos, hi, dtype=np.int64))
        feats = features_at(
            pool,
            self.plan,
            np.array([lo], dtype=np.int64),
            np.array([pos], dtype=np.int64),
            self._shift[:, [slot]],
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
        shift = self._shift[:, [slot]]
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

    # -- state ---------------------------------------------------------------------------
    def export_entity(self, key: Hashable) -> EntityHistory:
        """``key``'s entries, for a store.

        Raises:
            KeyError: ``key`` is not held.
        """
        slot = self._slots[key]
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
            shifts=self._shift[:, slot].copy(),
            features=a["feats"][:, lo:hi].copy(),
        )

    def load_entity(self, key: Hashable, history: EntityHistory) -> None:
        """Hold ``history`` as ``key``'s entries (replacing any held)."""
        if key in self._slots:
            self.evict(key)
        slot = self._slot(key)
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
        self._shift[:, slot] = history.shifts
        pool.length[slot] = k
        if k:
            self._fill_tables(np.array([slot], dtype=np.int64), np.arange(lo, lo + k))

    def evict(self, key: Hashable) -> None:
        """Forget ``key``'s entries (export them first to keep them).

        Raises:
            KeyError: ``key`` is not held.
        """
        slot = self._slots.pop(key)
        del self._key_of[slot]
        self.pool.free(slot)

    def prune(self, margin_s: int) -> dict[Hashable, list[Any]]:
        """Drop each entity's entries at or before ``newest - horizon - margin_s`` (``newest``
        its own newest entry): no event within ``margin_s`` of its entity's newest can reach
        them. A re-delivery of a dropped entry is no longer recognised. Returns the dropped
        event ids by entity."""
        slots = np.fromiter(self._slots.values(), dtype=np.int64, count=len(self._slots))
        return self._prune_slots(slots, margin_s, 1)

    def _prune_slots(self, slots: Ints, margin_s: int, least: int) -> dict[Hashable, list[Any]]:
        """Drop the out-of-reach front of each of ``slots`` where it is at least ``least``
        entries or half the segment."""
        pool = self.pool
        lo = pool.start[slots]
        length = pool.length[slots]
        hi = lo + length
        t = pool.arrays["t"]
        newest = t[np.maximum(hi - 1, 0)]
        reach = newest - self.plan.horizon_s - margin_s
        cand = (length > 0) & (t[lo] <= reach)
        if not cand.any():
            return {}
        cut = first_after(t, lo[cand], hi[cand], reach[cand]) - lo[cand]
        go = (cut >= least) | (2 * cut >= length[cand])
        dropped: dict[Hashable, list[Any]] = {}
        for slot, start, k in zip(
            slots[cand][go].tolist(), lo[cand][go].tolist(), cut[go].tolist(), strict=True
        ):
            dropped[self._key_of[slot]] = pool.arrays["ids"][start : start + k].tolist()
            pool.drop_front(slot, k)
            self._restart_shifted(slot)
        return dropped

    def _restart_shifted(self, slot: int) -> None:
        """Start ``slot``'s shifted sums afresh at its current start (their error bound
        counts additions from there)."""
        if not len(self._var_x):
            return
        lo, hi = self.pool.bounds(slot)
        a = self.pool.arrays
        if hi > lo:
            self._shift[:, slot] = a["x"][self._var_x, lo]
            terms = a["x"][self._var_x, lo : hi - 1] - self._shift[:, [slot]]
            base = np.zeros((len(self._var_x), 1))
            a["c1"][:, lo:hi] = np.cumsum(np.concatenate([base, terms], axis=1), axis=1)
            a["c2"][:, lo:hi] = np.cumsum(np.concatenate([base, terms * terms], axis=1), axis=1)
