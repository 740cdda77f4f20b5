"""Any parquet of a repository's events, replayable: keyed and timed by the repository's source.

``loadgen replay --repo DIR --dataset events.parquet`` reads the Feast repository at ``DIR``
(:func:`~stream_infer.streamdef.feast_reader.load_definitions`) and replays the file's rows as
the source's events: each value a JSON object of the source's fields (other columns, such as an
evaluation-only ``fault``, stay behind), keyed by the source's key field, in the order of its
timestamp field (ties in row order). Field values follow the source's kinds: strings as text
(an integer id becomes its decimal text), numbers, booleans; the timestamp as the JSON Schema
types it (an RFC 3339 UTC string by default, epoch seconds for ``integer``/``number``).

Only the event source is replayed (no labels): the handbook's transaction replay, with its
delayed labels, stays :class:`loadgen.stream.Dataset`. JSON sources only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from loadgen.stream import NS_PER_S, MergedOrder, Message, iso_seconds
from stream_infer.streamdef.spec import SourceSpec
from stream_infer.streamdef.training import epoch_seconds_of

Ints = npt.NDArray[np.int64]
_CONVERT: Final[Mapping[str, Any]] = {"float64": float, "int64": int, "bool": bool, "string": str}


@dataclass(frozen=True)
class SourceEvents:
    """A source's events as columns in replay order (the timestamp as epoch ns in ``time_ns``).

    ``ids`` are the event ids as text (what ``sent_ids`` and the scores carry).
    """

    source: SourceSpec
    columns: Mapping[str, npt.NDArray[Any]]
    time_ns: Ints
    ids: npt.NDArray[np.str_]
    time_type: str

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: SourceSpec) -> SourceEvents:
        """``frame``'s rows as ``source``'s events, sorted by time (stable).

        Raises:
            ValueError: an Avro source, a field missing from the frame, or a timestamp column
                that is neither datetimes nor epoch seconds.
        """
        if source.format != "json":
            raise ValueError(f"source {source.name} is {source.format}: replay writes JSON only")
        missing = [f.name for f in source.fields if f.name not in frame.columns]
        if missing:
            raise ValueError(
                f"the events lack the fields {missing} of source {source.name} "
                f"(they have {list(frame.columns)})"
            )
        time_ns = epoch_seconds_of(frame[source.timestamp_field]) * NS_PER_S
        order = np.argsort(time_ns, kind="stable")
        columns = {
            f.name: frame[f.name].to_numpy()[order]
            for f in source.fields
            if f.name != source.timestamp_field
        }
        schema = json.loads(source.schema_text) if source.schema_text else {}
        wire = schema.get("properties", {}).get(source.timestamp_field, {}).get("type", "string")
        ids = np.asarray([str(v) for v in columns[source.event_id_field].tolist()], dtype=np.str_)
        return cls(source, columns, time_ns[order], ids, str(wire))

    @property
    def id_field(self) -> str:
        """The event id's field in a produced value."""
        return self.source.event_id_field

    def id_of(self, raw: Any) -> str:
        """A produced value's id, as :attr:`ids` holds it."""
        return str(raw)

    def __len__(self) -> int:
        return len(self.time_ns)

    def head(self, n: int) -> SourceEvents:
        """The first ``n`` events in replay order."""
        cut = {name: values[:n] for name, values in self.columns.items()}
        return SourceEvents(self.source, cut, self.time_ns[:n], self.ids[:n], self.time_type)

    def _times(self, time_ns: Ints) -> list[Any]:
        if self.time_type in ("integer", "number"):
            seconds: list[int] = (time_ns // NS_PER_S).tolist()
            return seconds
        return iso_seconds(time_ns)

    def messages(self, order: MergedOrder, shift_ns: int, chunk: int = 20_000) -> Iterator[Message]:
        """Each event's message (``order`` holds events only: replay them without labels).
        ``Message.transaction_id`` is the event's row in replay order.

        Raises:
            ValueError: ``order`` holds labels.
        """
        if bool(order.is_label.any()):
            raise ValueError("a repository's events replay without labels (labels='none')")
        src = self.source
        fields = [f for f in src.fields if f.name != src.timestamp_field]
        dumps = orjson.dumps
        for lo in range(0, len(order), chunk):
            rows = order.row[lo : lo + chunk]
            values: dict[str, list[Any]] = {
                f.name: [_CONVERT[f.kind](v) for v in self.columns[f.name][rows].tolist()]
                for f in fields
            }
            values[src.timestamp_field] = self._times(self.time_ns[rows] + shift_ns)
            names = [f.name for f in src.fields]
            keys = values[src.key_field]
            emitted = order.time_ns[lo : lo + chunk].tolist()
            slots = order.slot[lo : lo + chunk].tolist()
            for i, row in enumerate(rows.tolist()):
                value = dumps({name: values[name][i] for name in names})
                yield Message(
                    "transaction", str(keys[i]).encode(), value, row, slots[i], emitted[i]
                )


def load_source_events(repo_dir: Path, path: Path) -> SourceEvents:
    """The events in the parquet at ``path`` as the repository's source's events.

    Raises:
        DefinitionError: the repository is refused.
        ValueError: as :meth:`SourceEvents.from_frame`.
    """
    from stream_infer.streamdef.feast_reader import load_definitions

    defs = load_definitions(repo_dir)
    return SourceEvents.from_frame(pd.read_parquet(path), defs.source)
