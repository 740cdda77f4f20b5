"""The customer windows of a whole batch at once, over a :class:`~.pool.HistoryPool`.

Semantics are :class:`~stream_infer.features.definitions.CustomerHistory`'s, event by event in
arrival order: each event is added (idempotently, by transaction id) and its windows
``(t - n days, t]`` are evaluated at its own ``(time, seq)`` position, so an earlier event never
sees a later one. Two paths give exactly that:

- **in order** (nearly every customer of a batch): each of the customer's events in the batch is
  strictly later in time than everything before it, so no event can be a duplicate or land
  before another; appending them all first and then evaluating each at its own position is the
  same as doing it one by one. Appends, running sums and window searches are numpy over the
  batch.
- **otherwise** (a late event, a second shared with an earlier entry, a re-delivered
  duplicate): the customer's events go one by one through ``CustomerHistory`` itself, the
  definition, and its entries are written back.

A property test (tests/unit/test_kernel_property.py) holds the batch path to the sequential
definition on random histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from stream_infer.features.definitions import SECONDS_PER_DAY, WINDOWS_DAYS, CustomerHistory
from stream_infer.features.pool import Floats, HistoryPool, Ints

_SPANS = np.array([d * SECONDS_PER_DAY for d in WINDOWS_DAYS], dtype=np.int64)


def first_after(keys: Ints, lo: Ints, hi: Ints, target: Ints) -> Ints:
    """Per row: the first index ``j`` in ``[lo, hi)`` with ``keys[j] > target`` (``hi`` if
    none), every ``keys[lo:hi]`` sorted. A vectorised ``bisect_right`` over many segments:
    branch-free, one power-of-two step per round."""
    pos = lo - 1  # the last index known to hold a key <= target (lo - 1: none yet)
    widest = int((hi - lo).max()) if len(lo) else 0
    step = 1 << max(widest.bit_length() - 1, 0)
    while step and widest:
        probe = pos + step
        ok = (probe < hi) & (keys.take(probe, mode="clip") <= target)
        pos = np.where(ok, probe, pos)
        step >>= 1
    return pos + 1


def windows_at(pool: HistoryPool, lo: Ints, end: Ints) -> Floats:
    """``(n, 6)`` customer features of the entries at pool indices ``end``, whose segments
    begin at ``lo``: count and mean amount over ``(t - n days, t]`` up to the entry itself."""
    n = len(end)
    k = len(_SPANS)
    t = pool.t[end]
    targets = (t[None, :] - _SPANS[:, None]).ravel()
    starts = first_after(pool.t, np.tile(lo, k), np.tile(end + 1, k), targets).reshape(k, n)
    counts = (end[None, :] - starts + 1).astype(np.float64)
    totals = pool.cum[end] + pool.amt[end]
    means = (totals[None, :] - pool.cum[starts]) / counts
    out = np.empty((n, 2 * k), dtype=np.float64)
    out[:, 0::2] = counts.T
    out[:, 1::2] = means.T
    return out


@dataclass
class BatchWindows:
    """What :func:`add_and_window` did to a batch."""

    #: ``(n, 6)`` customer features, rows in input order.
    features: Floats
    #: True where the event was added (False: already in its history, a re-delivery).
    new: npt.NDArray[np.bool_]
    #: Slots that took the sequential path, each with the ids already recorded as out of
    #: reach before this batch (their ``marked`` count is stale after a late insertion).
    sequential: dict[int, set[str]] = field(default_factory=dict)
    #: Slots that took the in-order path (every one of them grew), sorted.
    appended: Ints = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def add_and_window(
    pool: HistoryPool,
    slots: Ints,
    times: Ints,
    seqs: Ints,
    amounts: Floats,
    ids: list[str],
) -> BatchWindows:
    """Add a batch's events (rows in arrival order) to their slots' histories and compute each
    one's customer windows at its own position, exactly as one-by-one ``CustomerHistory.add``
    then ``features_at`` would."""
    n = len(slots)
    out = np.empty((n, 2 * len(_SPANS)), dtype=np.float64)
    new = np.ones(n, dtype=bool)
    if n == 0:
        return BatchWindows(out, new)
    order = np.argsort(slots, kind="stable")
    ss = slots[order]
    ts = times[order]
    first = np.ones(n, dtype=bool)
    first[1:] = ss[1:] != ss[:-1]
    prev = np.empty(n, dtype=np.int64)
    prev[1:] = ts[:-1]
    prev[first] = pool.last_times(ss[first])
    bad = ts <= prev  # late, tied with an earlier second, or a duplicate
    seq_slots = np.unique(ss[bad]) if bad.any() else np.empty(0, dtype=np.int64)
    fast = ~np.isin(ss, seq_slots) if len(seq_slots) else np.ones(n, dtype=bool)
    result = BatchWindows(out, new)
    if fast.any():
        result.appended = _append_in_order(
            pool, order[fast], ss[fast], first[fast], times, seqs, amounts, ids, out
        )
    for slot in seq_slots.tolist():
        rows = order[ss == slot]
        result.sequential[slot] = set(
            pool.ids[pool.start[slot] : pool.start[slot] + pool.marked[slot]].tolist()
        )
        _sequential(pool, slot, rows, times, seqs, amounts, ids, out, new)
    return result


def _append_in_order(
    pool: HistoryPool,
    rows: Ints,
    ss: Ints,
    first: npt.NDArray[np.bool_],
    times: Ints,
    seqs: Ints,
    amounts: Floats,
    ids: list[str],
    out: Floats,
) -> Ints:
    """The in-order path: ``rows`` (input indices sorted by slot, arrival order within one).
    Returns the slots it appended to."""
    m = len(rows)
    group = np.cumsum(first) - 1
    heads = np.flatnonzero(first)
    rank = np.arange(m, dtype=np.int64) - heads[group]
    uniq = ss[heads]
    counts = np.diff(np.append(heads, m))
    pool.reserve(uniq, counts)
    lengths = pool.length[uniq]
    pos = pool.start[ss] + lengths[group] + rank
    amt = amounts[rows]
    pool.t[pos] = times[rows]
    pool.seq[pos] = seqs[rows]
    pool.amt[pos] = amt
    pool.ids[pos] = _objects(ids)[rows]
    # Running sums added one entry at a time, as CustomerHistory adds them (same rounding).
    last = np.maximum(pool.start[uniq] + lengths - 1, 0)
    base = np.where(lengths > 0, pool.cum[last] + pool.amt[last], 0.0)
    cum = np.empty(m, dtype=np.float64)
    cum[heads] = base
    for r in range(1, int(rank.max()) + 1):
        at = np.flatnonzero(rank == r)
        cum[at] = cum[at - 1] + amt[at - 1]
    pool.cum[pos] = cum
    pool.length[uniq] = lengths + counts
    out[rows] = windows_at(pool, pool.start[ss], pos)
    return uniq


def _objects(items: list[str]) -> npt.NDArray[np.object_]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _sequential(
    pool: HistoryPool,
    slot: int,
    rows: Ints,
    times: Ints,
    seqs: Ints,
    amounts: Floats,
    ids: list[str],
    out: Floats,
    new: npt.NDArray[np.bool_],
) -> None:
    """One customer's events one by one through the definition itself."""
    hist = CustomerHistory()
    t, s, a, c, i = pool.entries(slot)
    hist.times, hist.seqs, hist.amounts, hist.ids = t, s, a, i
    hist.cum = [*c, c[-1] + a[-1]] if t else [0.0]
    for row in rows.tolist():
        before = len(hist)
        idx = hist.add(int(times[row]), int(seqs[row]), float(amounts[row]), ids[row])
        new[row] = len(hist) != before
        out[row] = hist.features_at(idx)
    pool.write(slot, hist.times, hist.seqs, hist.amounts, hist.cum[:-1], hist.ids)
