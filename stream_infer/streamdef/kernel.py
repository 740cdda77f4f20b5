"""The compiled stream kernel: a definition's stream views over whole batches, entity keys
mapped to the slots of :class:`~.histories.Histories`, with hooks for a store (export, load,
evict, prune).

Semantics are :mod:`stream_infer.streamdef.reference`'s, event by event in batch order. Two
paths give exactly that (:mod:`.histories`): an entity whose events in the batch each come
strictly after everything before it by ``(time, seq)`` and repeat no id of their second takes
the vectorised in-order path; any other (a late event, a tie with a smaller seq, a
re-delivery) takes the one-by-one path for all of its events of the batch. Ties in order (a
second shared, a larger seq) stay on the fast path: the window search stops at the event's own
position, so a later entry of its second never reaches it.

Every entry keeps the features it got, so a re-delivered event gets them again exactly.
tests/unit/test_streamdef_kernel_property.py holds the kernel to the reference on random
definitions and random streams, with eviction, reload and pruning.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_infer.streamdef.histories import EntityHistory, Histories
from stream_infer.streamdef.pool import Floats, Ints
from stream_infer.streamdef.spec import SEQ_COLUMN, StreamDefinitions
from stream_infer.streamdef.windows import Plan

__all__ = ["PRUNE_AT", "EntityHistory", "KernelBatch", "StreamKernel"]

#: An entity's out-of-reach entries are dropped in one go once there are this many (or they
#: are half its history): each drop is a few numpy calls, so not for every entry.
PRUNE_AT = 64


@dataclass(frozen=True)
class KernelBatch:
    """What :meth:`StreamKernel.run` did to a batch."""

    #: ``(n, len(defs.stream_features()))`` features, rows in input order.
    features: Floats
    #: False where the event was a re-delivery of a stored entry (nothing was added).
    new: npt.NDArray[np.bool_]
    #: Event ids dropped by pruning during the batch, by entity (``margin_s`` set only).
    dropped: dict[Hashable, list[Any]] = field(default_factory=dict)
    #: ``(n, len(plan.sum_columns))``: each new entry's exclusive running sums as stored (what
    #: a store keeps so that a reload continues the sums bit for bit); unset rows where not
    #: ``new``.
    sums: Floats | None = None


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
        self.plan = Plan.of(defs)
        self.histories = Histories(self.plan, refresh_segments=refresh == "segment")
        self._slots: dict[Hashable, int] = {}
        self._key_of: dict[int, Hashable] = {}

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
        sums = np.zeros((n, len(self.plan.sum_columns)), dtype=np.float64)
        if n == 0:
            return KernelBatch(out, new, sums=sums)
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
        first = np.ones(n, dtype=bool)
        first[1:] = ss[1:] != ss[:-1]
        slow = self._slow_slots(order, ss, first, times, seqs, ids)
        fast = ~np.isin(ss, slow) if len(slow) else np.ones(n, dtype=bool)
        hist = self.histories
        dropped: dict[Hashable, list[Any]] = {}
        if fast.any():
            appended = hist.append(
                order[fast], ss[fast], first[fast], times, seqs, ids, x, out, sums
            )
            if self.margin_s is not None:
                dropped = self._prune_slots(appended, self.margin_s, PRUNE_AT)
        for slot in slow.tolist():
            for row in order[ss == slot].tolist():
                new[row] = hist.one(slot, row, times, seqs, ids, x, out, sums)
        return KernelBatch(out, new, dropped, sums)

    def _slow_slots(
        self,
        order: Ints,
        ss: Ints,
        first: npt.NDArray[np.bool_],
        times: Ints,
        seqs: Ints,
        ids: npt.NDArray[np.object_],
    ) -> Ints:
        """Slots (sorted) with an event of the batch that is not strictly after everything
        before it by ``(time, seq)``, or that repeats an id of its second."""
        ts = times[order]
        qs = seqs[order]
        prev_t = np.empty_like(ts)
        prev_t[1:] = ts[:-1]
        prev_t[first] = self.histories.last_times(ss[first])
        prev_q = np.empty_like(qs)
        prev_q[1:] = qs[:-1]
        prev_q[first] = self.histories.last_seqs(ss[first])
        tie = ts == prev_t
        bad = (ts < prev_t) | (tie & (qs <= prev_q))
        tied = np.flatnonzero(tie & ~bad).tolist()
        sorted_ids = ids[order] if tied else ids
        for i in tied:
            bad[i] = self._repeats(i, ss, first, ts, sorted_ids)
        return np.unique(ss[bad]) if bad.any() else np.empty(0, dtype=np.int64)

    def _repeats(
        self, i: int, ss: Ints, first: npt.NDArray[np.bool_], ts: Ints, ids: npt.NDArray[Any]
    ) -> bool:
        """Whether sorted row ``i`` (a tie in order) repeats the id of an earlier event of its
        entity and second, in the batch or held."""
        j = i
        while not first[j]:
            j -= 1
            if ts[j] != ts[i]:
                return False
            if ids[j] == ids[i]:
                return True
        return self.histories.holds(int(ss[i]), int(ts[i]), ids[i])

    def _slot(self, key: Hashable) -> int:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self.histories.alloc()
            self._key_of[slot] = key
        return slot

    # -- state ---------------------------------------------------------------------------
    def export_entity(self, key: Hashable) -> EntityHistory:
        """``key``'s entries, for a store.

        Raises:
            KeyError: ``key`` is not held.
        """
        return self.histories.export(self._slots[key])

    def load_entity(self, key: Hashable, history: EntityHistory) -> None:
        """Hold ``history`` as ``key``'s entries (replacing any held)."""
        if key in self._slots:
            self.evict(key)
        self.histories.load(self._slot(key), history)

    def evict(self, key: Hashable) -> None:
        """Forget ``key``'s entries (export them first to keep them).

        Raises:
            KeyError: ``key`` is not held.
        """
        slot = self._slots.pop(key)
        del self._key_of[slot]
        self.histories.free(slot)

    def prune(self, margin_s: int) -> dict[Hashable, list[Any]]:
        """Drop each entity's entries at or before ``newest - horizon - margin_s`` (``newest``
        its own newest entry): no event within ``margin_s`` of its entity's newest can reach
        them. A re-delivery of a dropped entry is no longer recognised. Returns the dropped
        event ids by entity."""
        slots = np.fromiter(self._slots.values(), dtype=np.int64, count=len(self._slots))
        return self._prune_slots(slots, margin_s, 1)

    def _prune_slots(self, slots: Ints, margin_s: int, least: int) -> dict[Hashable, list[Any]]:
        pool = self.histories.pool
        hi = pool.start[slots] + pool.length[slots]
        newest = pool.arrays["t"][np.maximum(hi - 1, 0)]
        reach = newest - self.plan.horizon_s - margin_s
        return {
            self._key_of[slot]: ids for slot, ids in self.histories.drop_stale(slots, reach, least)
        }
