"""Customer histories rebuilt from stored entries, and the read-only windows built on them.

The sidecar scores a handful of transactions per call and keeps nothing between calls
(``cache=False``, ``persist=False``): for it the columnar pool's fixed cost per batch is most
of the work, so it evaluates the windows with :class:`~stream_infer.features.definitions.
CustomerHistory` itself, the definitions' own per-event path (docs/ARCHITECTURE.md, "The
sidecar").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate

import numpy as np
import numpy.typing as npt

from stream_infer.features.columns import TxColumns
from stream_infer.features.definitions import CustomerHistory
from stream_infer.state.base import Entry


def _order(e: Entry) -> tuple[int, int, str]:
    return (e.epoch_seconds, e.seq, e.transaction_id)


def history_of(entries: Iterable[Entry]) -> CustomerHistory:
    """The history that adding ``entries`` one by one in (time, seq, id) order gives.

    In that order every add is an append, so the entries are appended directly: ``dropped``
    markers skipped, and an id repeated within one second kept once (the first), as
    :meth:`CustomerHistory.add` does.
    """
    hist = CustomerHistory()
    times, seqs, amounts, ids = hist.times, hist.seqs, hist.amounts, hist.ids
    seen: set[tuple[int, str]] = set()
    for e in sorted(entries, key=_order):
        key = (e.epoch_seconds, e.transaction_id)
        if e.dropped or key in seen:
            continue
        seen.add(key)
        times.append(e.epoch_seconds)
        seqs.append(e.seq)
        amounts.append(e.amount)
        ids.append(e.transaction_id)
    hist.cum = list(accumulate(amounts, initial=0.0))
    return hist


def read_only_windows(
    cols: TxColumns, stored: Mapping[str, Sequence[Entry]]
) -> npt.NDArray[np.float64]:
    """The ``(n, 6)`` customer features of ``cols`` over the ``stored`` histories, each
    event added to its customer's history in row order (nothing is kept or written)."""
    out = np.empty((len(cols), 6), dtype=np.float64)
    hists: dict[tuple[int, str], CustomerHistory] = {}
    rows = zip(
        cols.partitions.tolist(),
        cols.customer_ids,
        cols.epoch_seconds.tolist(),
        cols.offsets.tolist(),
        cols.amounts.tolist(),
        cols.transaction_ids,
        strict=True,
    )
    for i, (part, cid, t, seq, amount, tid) in enumerate(rows):
        hist = hists.get((part, cid))
        if hist is None:
            hist = hists[(part, cid)] = history_of(stored.get(cid, ()))
        out[i] = hist.features_at(hist.add(t, seq, amount, tid))
    return out
