"""What a daily-row store promises; Redis and SQLite implement it (the stream views' entity
stores are :mod:`stream_infer.state.entities`).

Daily-view rows are written once per (view, join key, day) by the label processor, and
``complete_through`` says up to which day the labels are final.

Every method raises :class:`~stream_infer.errors.StoreUnavailableError`, and only that, when the
store cannot be reached, answers too late, or is busy or locked; the store never retries by
itself (the caller decides, see docs/ARCHITECTURE.md). A failed call may have been applied in
part or whole; repeating it is safe (writes are idempotent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from stream_infer.streamdef.daily_source import DailyRow


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
