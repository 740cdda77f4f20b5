"""What a feature-state store promises; Redis and SQLite implement it.

Customer entries are keyed by ``transaction_id`` inside each customer, so writing an entry
twice (re-delivery, a restarted worker, a second replay) changes nothing: idempotent by
construction. Terminal rows are written once per (terminal, day) by the label processor, and
``complete_through`` says up to which day the labels are final.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from stream_infer.features.online import TerminalRow


@dataclass(slots=True)  # not frozen: created once per event on the hot path (see TxInput)
class Entry:
    """One transaction in a customer's history."""

    transaction_id: str
    epoch_seconds: int
    seq: int
    amount: float

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
        """Add entries (idempotent by transaction_id). Durable when this returns."""
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


class TerminalStore(Protocol):
    """Per-(terminal, day) counts and the published daily rows."""

    def rows(self, keys: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], TerminalRow]:
        """Published rows; a key whose row is not published is absent."""
        ...

    def publish(self, rows: Mapping[tuple[str, int], TerminalRow], complete_through: int) -> None:
        """Write rows and advance the completeness watermark (never moves backwards)."""
        ...

    def complete_through(self) -> int | None:
        """The last UTC day whose labels are all in."""
        ...
