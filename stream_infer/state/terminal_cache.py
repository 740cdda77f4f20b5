"""The fraud example's terminal rows for today's feature computer, read through the generic
daily rows (a bridge: it goes when ``features.online`` reads a
:class:`~stream_infer.streamdef.daily_source.DailyRowSource` itself).

The label processor publishes the fraud example's daily view ``terminal_counts`` as
``(terminal_nb_tx_1d, terminal_nb_fraud_1d, ..._7d, ..._30d)``; today's computer wants
``(nb_1d, risk_1d, nb_7d, risk_7d, nb_30d, risk_30d)``, risk = frauds / transactions, 0 when
there are none (the ODFV ``terminal_risk``; the same float as the hand-written path's
``fraud / nb`` on integers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Protocol

from stream_infer.features.definitions import LABEL_DELAY_DAYS, SECONDS_PER_DAY, WINDOWS_DAYS
from stream_infer.features.online import Ints, TerminalRow
from stream_infer.state.daily_cache import CachedDailyRows, DailyStore
from stream_infer.streamdef.daily_source import DailyRow
from stream_infer.streamdef.spec import AggSpec, DailyView

#: The fraud example's daily view, as examples/fraud/feature_repo declares it.
TERMINAL_VIEW: Final = DailyView(
    "terminal_counts",
    "transaction_labels",
    "terminal_id",
    "terminal_id",
    LABEL_DELAY_DAYS,
    tuple(
        agg
        for n in WINDOWS_DAYS
        for agg in (
            AggSpec(f"terminal_nb_tx_{n}d", "tx_fraud", "count", n * SECONDS_PER_DAY),
            AggSpec(f"terminal_nb_fraud_{n}d", "tx_fraud", "sum", n * SECONDS_PER_DAY),
        )
    ),
)


def terminal_row(row: DailyRow) -> TerminalRow:
    """A ``terminal_counts`` row as today's (count, risk) pairs."""
    a, b, c, d, e, f = row
    return (a, b / a if a else 0.0, c, d / c if c else 0.0, e, f / e if e else 0.0)


class CachedTerminalRows:
    """Today's :class:`~stream_infer.features.online.TerminalRows` over a
    :class:`~stream_infer.state.daily_cache.CachedDailyRows` of :data:`TERMINAL_VIEW`."""

    def __init__(self, store: DailyStore, max_entries: int = 200_000, wait_ms: float = 0.0) -> None:
        self.daily = CachedDailyRows(store, [TERMINAL_VIEW], max_entries, wait_ms)

    @property
    def misses(self) -> int:
        """Rows asked for that were not final in time (each flags its score)."""
        return self.daily.misses

    def rows(
        self, keys: Iterable[tuple[str, int]], stream_start_day: int | None = None
    ) -> Mapping[tuple[str, int], TerminalRow]:
        got = self.daily.rows(TERMINAL_VIEW.name, keys, stream_start_day)
        return {k: terminal_row(r) for k, r in got.items()}

    def triage(self, days: Ints, stream_start_day: int | None = None) -> Ints:
        return self.daily.triage(TERMINAL_VIEW.name, days, stream_start_day)


class TerminalSink(Protocol):
    """A sink of today's terminal rows (``features.feast_sink.FeastTerminalSink``)."""

    def publish(
        self, rows: Mapping[tuple[str, int], TerminalRow], complete_through: int
    ) -> None: ...


class TerminalSinkBridge:
    """A label-processor row sink handing a terminal sink the ``terminal_counts`` rows as
    today's (count, risk) rows."""

    def __init__(self, sink: TerminalSink) -> None:
        self._sink = sink

    def publish(
        self, rows: Mapping[str, Mapping[tuple[str, int], DailyRow]], complete_through: int
    ) -> None:
        got = rows.get(TERMINAL_VIEW.name, {})
        self._sink.publish({k: terminal_row(r) for k, r in got.items()}, complete_through)
