"""The label processor's decoder: a batch of label records -> what the partials need.

The records are decoded by the generated decoder of the repository's label source
(:func:`stream_infer.streamdef.decoders.build_decoder`: its fields, kinds and bounds, every
refusal with a reason naming the field). On top of it, the wall-clock rule of
:mod:`stream_infer.event_time`: a label dated past the batch's :class:`FutureLimit` is a dead
letter with that module's reason, so it moves no partition's day (docs/ARCHITECTURE.md,
"Events from the future").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stream_infer.event_time import FutureLimit
from stream_infer.labels.partials import view_columns
from stream_infer.streamdef.decoders import BatchDecoder, build_decoder
from stream_infer.streamdef.spec import SECONDS_PER_DAY, DailyView, SourceSpec


@dataclass(frozen=True, slots=True)
class DecodedLabel:
    """What one label contributes: its UTC day and, per daily view, its join key and the
    values of the columns the view reads (in :func:`view_columns` order)."""

    index: int  # in the decoded batch
    day: int
    views: Mapping[str, tuple[str, tuple[float, ...]]]


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
    ) -> tuple[list[DecodedLabel], list[tuple[int, str]]]:
        """The labels of ``values`` in input order, and (index, reason) of each refused one
        (bad bytes, failed schema, or dated past ``future``; None: no limit).

        Raises:
            RetryableError: a schema registry did not answer (nothing decided).
        """
        batch = self._decoder.decode_batch(values)
        refused = list(batch.refused)
        cols = batch.columns
        ts_field = self.source.timestamp_field
        times = cols[ts_field].tolist() if batch.kept else []
        keys = {v.name: cols[v.entity].tolist() for v in self.views} if batch.kept else {}
        vals = {
            v.name: [cols[c].astype(float).tolist() for c in self._columns[v.name]]
            for v in self.views
            if batch.kept
        }
        out: list[DecodedLabel] = []
        for j, index in enumerate(batch.kept):
            seconds = int(times[j])
            if future is not None and seconds > future.limit_s:
                refused.append((index, future.reason(seconds, ts_field)))
                continue
            per_view = {
                name: (str(keys[name][j]), tuple(c[j] for c in vals[name])) for name in keys
            }
            out.append(DecodedLabel(index, seconds // SECONDS_PER_DAY, per_view))
        refused.sort()
        return out, refused
