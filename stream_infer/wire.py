"""The hot-path decoder for transactions on Kafka (msgspec).

:class:`stream_infer.events.Transaction` (pydantic) is the schema of record: HTTP, docs and
error messages for humans use it. Decoding it costs ~3 µs an event, most of our per-event
budget, so the stream decodes with a msgspec Struct of the same shape (~0.4 µs) instead; a
property test (tests/unit/test_wire.py) holds the two to the same accept/reject decisions and
values.

Whatever the bytes, :func:`decode` returns a transaction or raises :class:`DeadLetterError`:
that is the whole of "bad input never crashes the worker" on the decoding side, and property
tests over arbitrary bytes and arbitrary JSON values hold it. Fields the schema does not name are
skipped, not validated (that is most of msgspec's speed), so there alone the stream is more
lenient than the schema of record: invalid UTF-8, numbers of more than 4,300 digits or nesting
deeper than ~200 levels inside an ignored field do not make the event invalid. The stream is
stricter in one place: it refuses the non-JSON literals ``NaN`` and ``Infinity`` anywhere. And
a time with more than six fractional digits is rounded to the microsecond here but truncated
there, so within the last half microsecond of a second the two disagree on the whole second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Final

import msgspec

from stream_infer.errors import DeadLetterError
from stream_infer.event_time import FutureLimit
from stream_infer.events import MAX_EPOCH_S, MIN_EPOCH_S, decode_transaction

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | int
_Amount = Annotated[float, msgspec.Meta(ge=0, le=1e9)]


class WireTransaction(msgspec.Struct, frozen=True, gc=False):
    """A transaction as decoded from the wire; ids may still be ints (see :func:`ids`)."""

    transaction_id: _Id
    tx_datetime: datetime
    customer_id: _Id
    terminal_id: _Id
    tx_amount: _Amount


_DECODER = msgspec.json.Decoder(WireTransaction)
_OUT_OF_RANGE: Final = (
    "invalid transaction: tx_datetime: date-time out of range (1970-01-01 to 2999-12-31 UTC)"
)


def decode(raw: bytes | None) -> WireTransaction:
    """Parse and validate one transaction; any bytes at all may be given.

    Raises:
        DeadLetterError: and nothing else: empty, not JSON (invalid UTF-8, ``NaN``, nested
            too deeply), or invalid (the reason names every bad field).
    """
    if not raw:
        raise DeadLetterError("empty message value")
    # The handlers cost nothing when decoding succeeds: the hot path is one decode call.
    try:
        tx = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        # msgspec stops at the first problem; the schema of record lists them all, and the
        # failure path is rare enough to afford it.
        try:
            decode_transaction(raw)
        except DeadLetterError as full:
            raise full from exc
        except (ValueError, OverflowError, RecursionError):
            pass  # the schema of record could not say more: msgspec's reason stands
        raise DeadLetterError(f"invalid transaction: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise DeadLetterError(f"not valid JSON: {exc}") from exc
    except RecursionError as exc:
        # msgspec recurses into (even ignored) nested values, bounded by the interpreter's
        # recursion limit, and unwinds cleanly when it is hit.
        raise DeadLetterError("not valid JSON: nested too deeply to decode") from exc
    if not MIN_EPOCH_S <= epoch_seconds(tx.tx_datetime) < MAX_EPOCH_S:
        raise DeadLetterError(_OUT_OF_RANGE)
    return tx


def utc(value: datetime) -> datetime:
    """Naive timestamps are UTC by contract; aware ones are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def epoch_seconds(value: datetime) -> int:
    """Whole UTC seconds since the epoch (floor), the features' resolution."""
    ts = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()
    return int(ts // 1)


class DecodedBatch(msgspec.Struct, gc=False):
    """What :func:`decode_batch` kept, as columns (ids as strings, times aware UTC-or-offset)."""

    kept: list[int]
    transaction_ids: list[str]
    customer_ids: list[str]
    terminal_ids: list[str]
    times: list[datetime]
    epoch_seconds: list[int]
    amounts: list[float]
    #: (index into the input, reason) of every value refused.
    refused: list[tuple[int, str]]


def decode_batch(values: Sequence[bytes | None], future: FutureLimit | None = None) -> DecodedBatch:
    """:func:`decode` over a batch, straight into columns; never raises for bad input (each
    bad value is in ``refused`` with the reason :func:`decode` gives).

    ``future``: the batch's limit on event time (taken once per batch by the caller); a value
    :func:`decode` accepts but dated past it is refused with :meth:`FutureLimit.reason`. None:
    no limit (the schema's own range still holds).
    """
    out = DecodedBatch([], [], [], [], [], [], [], [])
    txs: list[WireTransaction] = []
    fast = _DECODER.decode
    kept = out.kept
    for i, raw in enumerate(values):
        try:
            tx = fast(raw or b"")  # an empty value fails here too: decode() says why
        except (msgspec.MsgspecError, RecursionError):
            try:
                decode(raw)
            except DeadLetterError as exc:
                out.refused.append((i, exc.reason))
            else:  # cannot happen: both decoders refuse the same values
                out.refused.append((i, "invalid transaction"))
            continue
        kept.append(i)
        txs.append(tx)
    times = [tx.tx_datetime for tx in txs]
    if any(dt.tzinfo is None for dt in times):  # naive = UTC by contract
        times = [dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC) for dt in times]
    seconds = [int(dt.timestamp() // 1) for dt in times]
    # One comparison per batch on the hot path: the per-event reasons only when one is out.
    hi = MAX_EPOCH_S if future is None else min(MAX_EPOCH_S, math.floor(future.limit_s) + 1)
    if seconds and not (min(seconds) >= MIN_EPOCH_S and max(seconds) < hi):
        ok = [j for j, sec in enumerate(seconds) if MIN_EPOCH_S <= sec < hi]
        for j in sorted(set(range(len(kept))) - set(ok)):
            sec = seconds[j]
            in_range = MIN_EPOCH_S <= sec < MAX_EPOCH_S
            reason = future.reason(sec) if in_range and future is not None else _OUT_OF_RANGE
            out.refused.append((kept[j], reason))
        out.refused.sort()
        kept[:] = [kept[j] for j in ok]
        txs = [txs[j] for j in ok]
        times = [times[j] for j in ok]
        seconds = [seconds[j] for j in ok]
    out.times = times
    out.epoch_seconds = seconds
    out.transaction_ids = [str(tx.transaction_id) for tx in txs]
    out.customer_ids = [str(tx.customer_id) for tx in txs]
    out.terminal_ids = [str(tx.terminal_id) for tx in txs]
    out.amounts = [tx.tx_amount for tx in txs]
    return out
