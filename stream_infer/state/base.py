"""What a feature-state store promises; Redis and SQLite implement it.

Customer entries are keyed by ``transaction_id`` inside each customer, so writing an entry
twice (re-delivery, a restarted worker, a second replay) changes nothing: idempotent by
construction. A write set also names the entries no window can reach any more (``dropped``),
which the store deletes with the same call, so a store holds about a window's worth per
customer. Daily-view rows are written once per (view, join key, day) by the label processor,
and ``complete_through`` says up to which day the labels are final.

Every method raises :class:`~stream_infer.errors.StoreUnavailableError`, and only that, when the
store cannot be reached, answers too late, or is busy or locked; the store never retries by
itself (the caller decides, see docs/ARCHITECTURE.md). A failed call may have been applied in
part or whole; repeating it is safe (writes are idempotent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from stream_infer.streamdef.daily_source import DailyRow


@dataclass(slots=True)  # not frozen: created once per event on the hot path (see TxInput)
class Entry:
    """One transaction in a customer's history.

    ``dropped``: in a write set, "delete this transaction": no window can reach it any more.
    """

    transaction_id: str
    epoch_seconds: int
    seq: int
    amount: float
    dropped: bool = False

    def pack(self) -> bytes:
        return f"{self.epoch_seconds},{self.seq},{self.amount!r}".encode()

    @staticmethod
    def unpack(transaction_id: str, raw: bytes | str) -> Entry:
        text = raw.decode() if isinstance(raw, bytes) else raw
        t, seq, amount = text.split(",")
        return Entry(transaction_id, int(t), int(seq), float(amount))


class CustomerStore(Protocol):
    """Customer histories, shared by workers (writers) and sidecars (readers)."""

    def load(self, customer_ids: Iterable[str]) -> dict[str, list[Entry]]:
        """Every stored entry of each customer (missing customers: empty lists)."""
        ...

    def save(self, entries: Mapping[str, Sequence[Entry]]) -> None:
        """Add each customer's entries and delete its ``dropped`` ones (additions first, so an
        entry both added and dropped is gone). Idempotent by transaction_id; durable when this
        returns."""
        ...

    def prune(self, customer_id: str, before_epoch_seconds: int) -> None:
        """Drop a customer's entries older than a time no window can reach."""
        ...

    def first_day(self) -> int | None:
        """The earliest UTC day any event of the stream had (None: no event yet)."""
        ...

    def record_first_day(self, day: int) -> None:
        """Lower the earliest day to ``day`` if it is earlier (never raises it)."""
        ...


class DailyRowStore(Protocol):
    """Published daily-view rows, per view and (join key, UTC day), and the completeness
    watermark of the label source (the label processor writes, everyone else reads)."""

    def rows(
        self, view: str, keys: Iterable[tuple[str, int]]
    ) -> Mapping[tuple[str, int], DailyRow]:
        """``view``'s published rows; a key whose row is not published is absent."""
        ...

    def publish(
        self, rows: Mapping[str, Mapping[tuple[str, int], DailyRow]], complete_through: int
    ) -> None:
        """Write rows (per view name) and advance the completeness watermark (never moves
        backwards); the watermark moves after the rows."""
        ...

    def complete_through(self) -> int | None:
        """The last UTC day whose labels are all in."""
        ...


def encode_row(row: DailyRow) -> str:
    """A row's stored text: ``repr`` of each float, comma separated (exact, NaN included)."""
    return ",".join(map(repr, row))


def decode_row(text: str | bytes) -> DailyRow:
    """A row from its stored text."""
    raw = text.decode() if isinstance(text, bytes) else text
    return tuple(float(v) for v in raw.split(",")) if raw else ()
