"""The label processor's decoder: a label's bytes -> what counting needs (terminal, day, fraud).

:class:`stream_infer.events.Label` (pydantic) is the schema of record. Validating it costs
~4 µs a label, as much as everything else the aggregator does per label, so labels decode with
a msgspec Struct of the same shape (~0.4 µs) instead. msgspec accepts a subset of what the
schema accepts (RFC 3339 strings only, JSON integers only); whatever it refuses goes to the
schema of record, which either accepts it (its values are used) or says why not. A property
test (tests/unit/test_label_decode.py) holds the two to the same decisions and values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from stream_infer.errors import DeadLetterError
from stream_infer.event_time import FutureLimit
from stream_infer.events import MAX_EPOCH_S, MIN_EPOCH_S, decode_label
from stream_infer.features.definitions import SECONDS_PER_DAY

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | int


class _WireLabel(msgspec.Struct, frozen=True, gc=False):
    transaction_id: _Id
    tx_datetime: datetime
    terminal_id: _Id
    tx_fraud: Annotated[int, msgspec.Meta(ge=0, le=1)]


_DECODER = msgspec.json.Decoder(_WireLabel)


@dataclass(frozen=True, slots=True)
class CountedLabel:
    """What a label contributes to the counts: its terminal, its UTC day, fraud or not."""

    terminal_id: str
    day: int
    fraud: int


def _epoch_seconds(value: datetime) -> float:
    # Naive timestamps are UTC by contract (as in the schema of record).
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()


def _slow(raw: bytes, future: FutureLimit | None) -> CountedLabel:
    label = decode_label(raw)
    seconds = int(label.tx_datetime.timestamp())
    if future is not None:
        future.check(seconds)
    return CountedLabel(label.terminal_id, seconds // SECONDS_PER_DAY, label.tx_fraud)


def decode_counted(raw: bytes | None, future: FutureLimit | None = None) -> CountedLabel:
    """Decode and validate one label as :func:`stream_infer.events.decode_label` does, and
    refuse one dated past ``future`` (None: no limit; :mod:`stream_infer.event_time`).

    Raises:
        DeadLetterError: the bytes are empty, not JSON, fail the schema, or the label is from
            the future (the reason says which).
    """
    if not raw:
        raise DeadLetterError("empty message value")
    try:
        wire = _DECODER.decode(raw)
    except msgspec.DecodeError:  # ValidationError included
        # A shape the fast path does not take (e.g. an id beyond 64 bits, 1.0 for a flag) or
        # a bad label: the schema of record decides, and names the problem if there is one.
        return _slow(raw, future)
    seconds = _epoch_seconds(wire.tx_datetime)
    if not MIN_EPOCH_S <= seconds < MAX_EPOCH_S:
        return _slow(raw, future)  # raises with the schema's out-of-range reason
    if future is not None and int(seconds) > future.limit_s:  # whole seconds, as in _slow
        raise DeadLetterError(future.reason(int(seconds)))
    terminal = wire.terminal_id
    return CountedLabel(
        terminal if isinstance(terminal, str) else str(terminal),
        int(seconds) // SECONDS_PER_DAY,
        wire.tx_fraud,
    )
