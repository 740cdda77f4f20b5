"""What a feature-state store promises; Redis and SQLite implement it.

Customer entries are keyed by ``transaction_id`` inside each customer, so writing an entry
twice (re-delivery, a restarted worker, a second replay) changes nothing: idempotent by
construction. A write set also names the entries no window can reach any more (``dropped``),
which the store deletes with the same call, so a store holds about a window's worth per
customer. Terminal rows are written once per (terminal, day) by the label processor, and
``complete_through`` says up to which day the labels are final.

Every method raises :class:`~stream_infer.errors.StoreUnavailableError`, and only that, when the
store cannot be reached, answers too late, or is busy or locked; the store never retries by
itself (the caller decides, see docs/ARCHITECTURE.md). A failed call may have been applied in
part or whole; repeating it is safe (writes are idempotent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # features.online builds Entry objects: no import cycle at run time
    from stream_infer.features.online import TerminalRow


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
