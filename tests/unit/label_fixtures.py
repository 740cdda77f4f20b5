"""Shared by the label processor's tests: the fraud example's definitions, its daily view's
rows as today's hand-written math gives them, and a row sink that keeps what it is handed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stream_infer.features.definitions import LABEL_DELAY_DAYS, WINDOWS_DAYS, terminal_features
from stream_infer.features.feast_sink import terminal_risk_row
from stream_infer.labels.aggregator import LabelAggregator, PartialStore, RowSink
from stream_infer.labels.partials import aggregates, merge
from stream_infer.streamdef.daily_source import DailyRow

from .streamdef_fixtures import fraud_definitions

DEFS = fraud_definitions()
#: The fraud example's daily view (count and sum of tx_fraud over 1, 7 and 30 days).
VIEW = "terminal_counts"
FINAL_LAG = LABEL_DELAY_DAYS + 1


def counts_row(daily: Mapping[int, tuple[int, int]], day: int) -> DailyRow:
    """The ``terminal_counts`` row for ``day`` from ``{day: (transactions, frauds)}``:
    ``(nb_tx_1d, nb_fraud_1d, nb_tx_7d, nb_fraud_7d, nb_tx_30d, nb_fraud_30d)``; its risks
    (the ODFV ``terminal_risk``) are checked to be today's ``terminal_features``."""
    end = day - LABEL_DELAY_DAYS
    out: list[float] = []
    for n in WINDOWS_DAYS:
        nb = sum(daily.get(d, (0, 0))[0] for d in range(end - n, end))
        fraud = sum(daily.get(d, (0, 0))[1] for d in range(end - n, end))
        out += (float(nb), float(fraud))
    row = tuple(out)
    assert terminal_risk_row(row) == terminal_features(daily, day)
    return row


def counts(store: PartialStore, days: Iterable[int]) -> dict[int, dict[str, tuple[int, int]]]:
    """``{day: {terminal: (transactions, frauds)}}`` from the store's partials."""
    (view,) = DEFS.daily_views
    out: dict[int, dict[str, tuple[int, int]]] = {}
    for day, per in store.day_partials(days).items():
        for (name, key), parts in per.items():
            agg = aggregates(view, merge(parts[p] for p in sorted(parts)))["tx_fraud"]
            assert name == VIEW
            out.setdefault(day, {})[key] = (agg.count, int(agg.sum))
    return out


def aggregator(
    store: PartialStore, sinks: list[RowSink], partitions: int, **kw: Any
) -> LabelAggregator:
    """A label aggregator of the fraud example (or of ``defs=``)."""
    return LabelAggregator(store, sinks, partitions, **{"defs": DEFS, **kw})


class Sink:
    """Keeps the fraud view's rows and every watermark it was handed."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], DailyRow] = {}
        self.complete: list[int] = []

    def publish(
        self, rows: Mapping[str, Mapping[tuple[str, int], DailyRow]], complete_through: int
    ) -> None:
        assert set(rows) <= {VIEW}
        self.rows.update(rows.get(VIEW, {}))
        self.complete.append(complete_through)
