"""What a user's stream is, as plain frozen data: the one contract between the Feast repository
(read by :mod:`stream_infer.streamdef.feast_reader`), the reference evaluator, the compiled
kernel, the decoders and the training-set builder. Nothing here imports Feast, Kafka or numpy.

Semantics (docs/ARCHITECTURE.md, "Bring your own stream"):

- **Stream views** (:class:`StreamView`): for each event at time ``t`` of entity ``e`` (the
  source's key field), an aggregation over ``e``'s events with time in ``(t - window, t]``, the
  event itself included; events of one second are ordered by their sequence number (the
  partition offset in the stream, the row order offline) and an event is in its own window
  with every event before it in that order; an event id seen before is counted once (the
  first one stays); a late event is placed at its own time and never enters the window of an
  event before it. Times are whole UTC seconds.
- **Daily views** (:class:`DailyView`): label-derived rows. For an event on UTC day ``D`` whose
  ``join_field`` is ``k``, an aggregation over the label source's records of entity ``k``
  dated on the whole UTC days ``[D - delay_days - n, D - delay_days)``, ``n`` the window in
  days; label records deduplicated by event id. Empty window: count and sum 0, every other
  function NaN.
- **On-demand views** (:class:`OnDemandView`): a python function over whole columns (event
  fields and features computed before it), Feast's python mode with lists in and out.
- **Functions**: count, sum, mean, min, max; stddev and var are *sample* statistics (NaN below
  two values), as Feast's tiling module defines them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

ValueKind = Literal["float64", "int64", "string", "bool"]
AggFunction = Literal["count", "sum", "mean", "min", "max", "stddev", "var"]
EventFormat = Literal["json", "avro"]

#: Aggregation functions the compiler accepts (Feast's names, ``std``/``variance`` normalised).
AGG_FUNCTIONS: Final[tuple[AggFunction, ...]] = (
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "stddev",
    "var",
)
#: Kinds an aggregation may read (anything but ``count`` needs a number).
NUMERIC_KINDS: Final[frozenset[ValueKind]] = frozenset({"float64", "int64", "bool"})
SECONDS_PER_DAY: Final = 86_400
#: The event column the pipeline adds: an int64 sequence number ordering events of one second
#: (the partition offset in the stream, the row index offline). Decoders do not produce it.
SEQ_COLUMN: Final = "__seq"

#: The python-mode function of an on-demand view: columns in, columns out.
OnDemandFunction = Callable[[dict[str, list[Any]]], dict[str, list[Any]]]


@dataclass(frozen=True)
class FieldSpec:
    """One field of an event (or one output of an on-demand view)."""

    name: str
    kind: ValueKind


@dataclass(frozen=True)
class SourceSpec:
    """A Kafka topic of events: what its records look like and which field is which.

    ``key_field`` is the entity join key the topic is keyed by (co-partitioning: every stream
    view over this source aggregates by it). ``event_id_field`` names each event uniquely
    (re-deliveries are recognised by it). ``schema_text`` is the format's schema as written in
    the repository (a JSON schema for ``json``, an Avro record schema for ``avro``).
    """

    name: str
    topic: str
    key_field: str
    timestamp_field: str
    event_id_field: str
    fields: tuple[FieldSpec, ...]
    format: EventFormat
    schema_text: str

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``.

        Raises:
            KeyError: the source has no such field.
        """
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


@dataclass(frozen=True)
class AggSpec:
    """One windowed aggregation and the feature it produces (Feast's resolved name)."""

    feature: str
    column: str
    function: AggFunction
    window_s: int


@dataclass(frozen=True)
class StreamView:
    """Aggregations over the event source, keyed by its key field, exact to the second."""

    name: str
    source: str
    entity: str
    aggregations: tuple[AggSpec, ...]

    @property
    def horizon_s(self) -> int:
        """The longest window: history older than this (before the newest event) is unread."""
        return max(a.window_s for a in self.aggregations)


@dataclass(frozen=True)
class DailyView:
    """Label-derived aggregations in whole UTC days, ``delay_days`` behind the event's day.

    ``entity`` is the join key in the label source; ``join_field`` the event field holding it.
    Every window is a whole number of days.
    """

    name: str
    source: str
    entity: str
    join_field: str
    delay_days: int
    aggregations: tuple[AggSpec, ...]

    @property
    def horizon_days(self) -> int:
        """Days before an event's day that its row reads at most (delay plus longest window)."""
        return self.delay_days + max(a.window_s for a in self.aggregations) // SECONDS_PER_DAY


@dataclass(frozen=True)
class OnDemandView:
    """A request-time view: ``function`` maps input columns to ``outputs`` columns.

    ``inputs`` are event field names and feature names (of views computed before it).
    ``vectorized`` (the view's tag ``stream_infer.vectorized = "true"``): the stream hands the
    function numpy arrays instead of lists (Feast, and the reference, still hand it lists), so
    it must accept both, e.g. by ``numpy.asarray`` of each input.
    """

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[FieldSpec, ...]
    function: OnDemandFunction = field(compare=False)
    vectorized: bool = False


@dataclass(frozen=True)
class StreamDefinitions:
    """A whole user stream: its events, features, and the model's ordered inputs."""

    source: SourceSpec
    label_source: SourceSpec | None
    stream_views: tuple[StreamView, ...]
    daily_views: tuple[DailyView, ...]
    on_demand: tuple[OnDemandView, ...]
    service: str
    #: The feature service's features, in the model's input order.
    inputs: tuple[str, ...]

    @property
    def entity_key(self) -> str:
        """The events' entity join key (the topic's key)."""
        return self.source.key_field

    def stream_features(self) -> tuple[str, ...]:
        """Every stream view's feature names, view by view, aggregation by aggregation."""
        return tuple(a.feature for v in self.stream_views for a in v.aggregations)

    def daily_features(self) -> tuple[str, ...]:
        """Every daily view's feature names, view by view, aggregation by aggregation."""
        return tuple(a.feature for v in self.daily_views for a in v.aggregations)

    def on_demand_features(self) -> tuple[str, ...]:
        """Every on-demand view's output names, in order."""
        return tuple(o.name for v in self.on_demand for o in v.outputs)

    def all_features(self) -> tuple[str, ...]:
        """Every feature any view defines (stream, daily, then on-demand)."""
        return self.stream_features() + self.daily_features() + self.on_demand_features()


def order_inputs(row: Mapping[str, Any], inputs: Sequence[str]) -> list[Any]:
    """``row``'s values in the model's input order.

    Raises:
        KeyError: ``row`` lacks one of ``inputs``.
    """
    return [row[name] for name in inputs]
