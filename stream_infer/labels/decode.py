"""The label processor's decoder: a batch of label records -> what the partials need.

The records are decoded by the generated decoder of the repository's label source
(:func:`stream_infer.streamdef.decoders.build_decoder`: its fields, kinds and bounds, every
refusal with a reason naming the field). On top of it, the wall-clock rule of
:mod:`stream_infer.event_time`: a label dated past the batch's :class:`FutureLimit` is a dead
letter with that module's reason, so it moves no partition's day (docs/ARCHITECTURE.md,
"Events from the future").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stream_infer.event_time import FutureLimit
from stream_infer.labels.partials import view_columns
from stream_infer.streamdef.decoders import BatchDecoder, build_decoder
from stream_infer.streamdef.spec import SECONDS_PER_DAY, DailyView, SourceSpec


@dataclass(frozen=True)
class DecodedLabels:
    """A batch's valid labels, in input order, as columns: ``index`` (in the batch), UTC
    ``days`` and, per daily view, each label's join key and the values of the columns the
    view reads (in :func:`view_columns` order)."""

    index: list[int]
    days: list[int]
    views: dict[str, tuple[list[str], list[tuple[float, ...]]]]

    def __len__(self) -> int:
        return len(self.index)


class LabelDecoder:
    """Decodes label batches of ``source`` for ``views`` (built once at start).

    Raises:
        DefinitionError: (building) the source's schema does not give its fields' kinds.
    """

    def __init__(self, source: SourceSpec, views: Sequence[DailyView]) -> None:
        self.source = source
        self.views = tuple(views)
        self._decoder: BatchDecoder = build_decoder(source)
        self._columns = {v.name: view_columns(v) for v in self.views}

    def decode(
        self, values: Sequence[bytes | None], future: FutureLimit | None = None
    ) -> tuple[DecodedLabels, list[tuple[int, str]]]:
        """The labels of ``values`` in input order, and (index, reason) of each refused one
        (bad bytes, failed schema, or dated past ``future``; None: no limit).

        Raises:
            RetryableError: a schema registry did not answer (nothing decided).
        """
        batch = self._decoder.decode_batch(values)
        refused = list(batch.refused)
        cols = batch.columns
        ts_field = self.source.timestamp_field
        kept = np.asarray(batch.kept, dtype=np.int64)
        times = np.asarray(cols[ts_field], dtype=np.int64) if len(kept) else kept
        keep = np.ones(len(kept), dtype=bool)
        if future is not None and len(kept):
            keep = times <= future.limit_s
            for j in np.flatnonzero(~keep).tolist():
                refused.append((int(kept[j]), future.reason(int(times[j]), ts_field)))
            refused.sort()
        views: dict[str, tuple[list[str], list[tuple[float, ...]]]] = {}
        for view in self.views:
            if not len(kept):
                views[view.name] = ([], [])
                continue
            keys = [str(k) for k in cols[view.entity][keep].tolist()]
            columns = [
                np.asarray(cols[c][keep], dtype=np.float64) for c in self._columns[view.name]
            ]
            views[view.name] = (keys, list(zip(*(c.tolist() for c in columns), strict=True)))
        days = (times[keep] // SECONDS_PER_DAY).tolist() if len(kept) else []
        return DecodedLabels(kept[keep].tolist(), days, views), refused
