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

from datetime import UTC, datetime
from typing import Annotated

import msgspec

from stream_infer.errors import DeadLetterError
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
        raise DeadLetterError(
            "invalid transaction: tx_datetime: date-time out of range "
            "(1970-01-01 to 2999-12-31 UTC)"
        )
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
