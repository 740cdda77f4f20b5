"""A :class:`~stream_infer.streamdef.daily_source.DailyRowSource` over today's terminal row
store (:class:`~stream_infer.state.terminal_cache.CachedTerminalRows`), for a daily view shaped
as the fraud example's ``terminal_counts`` (count and sum of one 0/1 label over 1, 7 and 30
days).

Transitional: the label processor still publishes ``(nb, risk)`` rows per terminal and day;
this turns them back into the view's ``(count, sum)`` (``sum = round(risk * nb)``, exact for
counts of 0/1 labels), so ``terminal_risk`` recomputes exactly the stored risk. It goes away
when the label processor publishes the view's own rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stream_infer.errors import DefinitionError
from stream_infer.state.terminal_cache import CachedTerminalRows
from stream_infer.streamdef.daily_source import DailyRow, Ints
from stream_infer.streamdef.spec import SECONDS_PER_DAY, DailyView

_SHAPE = tuple((fn, days) for days in (1, 7, 30) for fn in ("count", "sum"))


class TerminalRowsSource:
    """Rows of ``view`` read from today's terminal rows.

    Raises:
        DefinitionError: (at construction) ``view`` is not shaped as the fraud example's.
    """

    def __init__(self, rows: CachedTerminalRows, view: DailyView) -> None:
        shape = tuple((a.function, a.window_s // SECONDS_PER_DAY) for a in view.aggregations)
        if shape != _SHAPE or view.delay_days != 7:
            raise DefinitionError(
                f"daily view {view.name}: the label processor publishes the fraud example's "
                "terminal rows only (count and sum over 1, 7, 30 days, delay 7)"
            )
        self._rows = rows
        self._view = view.name

    def rows(
        self, view: str, keys: Iterable[tuple[str, int]], stream_start_day: int | None = None
    ) -> Mapping[tuple[str, int], DailyRow]:
        got = self._rows.rows(keys, stream_start_day)
        return {
            key: (
                nb1,
                float(round(r1 * nb1)),
                nb7,
                float(round(r7 * nb7)),
                nb30,
                float(round(r30 * nb30)),
            )
            for key, (nb1, r1, nb7, r7, nb30, r30) in got.items()
        }

    def triage(self, view: str, days: Ints, stream_start_day: int | None = None) -> Ints:
        return self._rows.triage(days, stream_start_day)
