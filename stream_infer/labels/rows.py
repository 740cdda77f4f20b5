"""Final terminal rows from per-(terminal, day) label counts.

A terminal's row for day D reads the counts of days [D - 37, D - 7); the math is
:func:`stream_infer.features.definitions.terminal_features`, called here as everywhere else.
Rows are only computed for final days, whose counts can no longer change, so the counts of a
day are read from the store once and kept here for as long as a row still needs them (a
publish then costs no store read for the 36 days it shares with the previous one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from stream_infer.features.definitions import (
    LABEL_DELAY_DAYS,
    TERMINAL_HORIZON_DAYS,
    terminal_features,
)
from stream_infer.features.online import TerminalRow

Counts = Mapping[int, Mapping[str, tuple[int, int]]]


class FinalCounts:
    """Counts of final days, loaded once per day, and the rows computed from them."""

    def __init__(self) -> None:
        self._days: dict[int, Mapping[str, tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self._days)

    def missing(self, days: Iterable[int]) -> list[int]:
        """The days of ``days`` not held yet."""
        return [d for d in days if d not in self._days]

    def add(self, days: Iterable[int], counts: Counts) -> None:
        """Hold ``counts`` (``{day: {terminal: (transactions, frauds)}}``) for ``days``; a day
        without an entry in ``counts`` had no labels. Only final days belong here."""
        for day in days:
            self._days[day] = dict(counts.get(day, {}))

    def forget_before(self, day: int) -> None:
        """Drop held days before ``day`` (no row still to publish reads them)."""
        for d in [d for d in self._days if d < day]:
            del self._days[d]

    def rows(self, days: Sequence[int]) -> dict[tuple[str, int], TerminalRow]:
        """Rows for ``days`` (their windows must be held: see :meth:`missing`), keyed
        ``(terminal, day)``; terminals without a label in a day's window get no row (the
        reader takes zeros for them, from the watermark)."""
        if not days:
            return {}
        per_terminal: dict[str, dict[int, tuple[int, int]]] = {}
        for d in range(min(days) - TERMINAL_HORIZON_DAYS, max(days) - LABEL_DELAY_DAYS):
            for terminal, c in self._days.get(d, {}).items():
                per_terminal.setdefault(terminal, {})[d] = c
        out: dict[tuple[str, int], TerminalRow] = {}
        for terminal, daily in per_terminal.items():
            labelled = sorted(daily)
            for d in days:
                lo, hi = d - TERMINAL_HORIZON_DAYS, d - LABEL_DELAY_DAYS
                if any(lo <= x < hi for x in labelled):
                    out[(terminal, d)] = terminal_features(daily, d)
        return out
