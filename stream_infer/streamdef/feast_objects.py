"""Feast objects of a parsed repository, each translated into its piece of the contract
(:mod:`stream_infer.streamdef.spec`): a ``KafkaSource`` into a :class:`SourceSpec`, a
``StreamFeatureView``'s aggregations into a :class:`StreamView` or :class:`DailyView`, the
python-mode on-demand views, and a ``FeatureService``'s ordered inputs. Feast objects come in
as ``Any`` (Feast is imported lazily by :mod:`.feast_reader`); every refusal is a
:class:`DefinitionError` naming the view and the field (docs/ARCHITECTURE.md, "Bring your own
stream")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from stream_infer.errors import DefinitionError
from stream_infer.streamdef.schemas import avro_fields, json_fields
from stream_infer.streamdef.spec import (
    NUMERIC_KINDS,
    SECONDS_PER_DAY,
    AggFunction,
    AggSpec,
    DailyView,
    FieldSpec,
    OnDemandView,
    SourceSpec,
    StreamView,
    ValueKind,
)

if TYPE_CHECKING:
    from feast.repo_contents import RepoContents

TAG_PREFIX: Final = "stream_infer."
EVENT_ID_TAG: Final = "stream_infer.event_id"
KIND_TAG: Final = "stream_infer.kind"
DELAY_TAG: Final = "stream_infer.delay_days"
JOIN_FIELD_TAG: Final = "stream_infer.join_field"
SOURCE_TAGS: Final = frozenset({EVENT_ID_TAG})
VIEW_TAGS: Final = frozenset({KIND_TAG, DELAY_TAG, JOIN_FIELD_TAG})
VECTORIZED_TAG: Final = "stream_infer.vectorized"
ON_DEMAND_TAGS: Final = frozenset({VECTORIZED_TAG})
DAILY: Final = "daily"
STREAM: Final = "stream"

#: Feast's aggregation function names -> ours (its tiling module's aliases included).
FUNCTIONS: Final[dict[str, AggFunction]] = {
    "count": "count",
    "sum": "sum",
    "mean": "mean",
    "avg": "mean",
    "min": "min",
    "max": "max",
    "std": "stddev",
    "stddev": "stddev",
    "var": "var",
    "variance": "var",
}
_FEAST_KINDS: Final[dict[str, ValueKind]] = {
    "Float64": "float64",
    "Float32": "float64",
    "Int64": "int64",
    "Int32": "int64",
    "String": "string",
    "Bool": "bool",
}


def source_spec(kafka: Any, key_field: str) -> SourceSpec:
    from feast.data_format import AvroFormat, JsonFormat

    options = kafka.kafka_options
    fmt = options.message_format
    if isinstance(fmt, JsonFormat):
        fields, schema_text = json_fields(
            fmt.schema_json, source=kafka.name, timestamp_field=kafka.timestamp_field
        )
        kind = "json"
    elif isinstance(fmt, AvroFormat):
        fields = avro_fields(
            fmt.schema_json, source=kafka.name, timestamp_field=kafka.timestamp_field
        )
        schema_text, kind = fmt.schema_json, "avro"
    else:
        raise DefinitionError(
            f"source {kafka.name}: message format {type(fmt).__name__} is not supported "
            "(use JsonFormat or AvroFormat)"
        )
    names = {f.name for f in fields}
    event_id = kafka.tags.get(EVENT_ID_TAG)
    if not event_id:
        raise DefinitionError(
            f"source {kafka.name}: tag {EVENT_ID_TAG} is missing (name the field that identifies "
            "an event; re-deliveries are recognised by it)"
        )
    for role, name in (("event id field", event_id), ("key (entity join key)", key_field)):
        if name not in names:
            raise DefinitionError(
                f"source {kafka.name}: its {role} {name} is not a field of its schema"
            )
    return SourceSpec(
        name=kafka.name,
        topic=options.topic,
        key_field=key_field,
        timestamp_field=kafka.timestamp_field,
        event_id_field=event_id,
        fields=fields,
        format=kind,  # type: ignore[arg-type]
        schema_text=schema_text,
    )


def _aggregations(view: Any, source: SourceSpec, *, daily: bool) -> tuple[AggSpec, ...]:
    what = "daily view" if daily else "stream view"
    if not view.aggregations:
        raise DefinitionError(f"{what} {view.name}: has no aggregations")
    if view.timestamp_field != source.timestamp_field:
        raise DefinitionError(
            f"{what} {view.name}: timestamp_field {view.timestamp_field} is not its source's "
            f"({source.timestamp_field})"
        )
    specs = []
    for agg in view.aggregations:
        feature = agg.resolved_name(agg.time_window)
        where = f"{what} {view.name}, feature {feature}"
        function = FUNCTIONS.get(agg.function)
        if function is None:
            raise DefinitionError(
                f"{where}: aggregation function {agg.function!r} is not supported "
                f"(use one of {', '.join(sorted(FUNCTIONS))})"
            )
        window = agg.time_window
        if window is None or window <= timedelta(0) or window % timedelta(seconds=1):
            raise DefinitionError(f"{where}: needs a time_window of whole seconds (has {window})")
        if agg.slide_interval not in (None, window):
            raise DefinitionError(
                f"{where}: slide_interval {agg.slide_interval} is not its time_window: "
                "stream-infer evaluates sliding windows at each event, not hopping ones"
            )
        window_s = int(window.total_seconds())
        if daily and window_s % SECONDS_PER_DAY:
            raise DefinitionError(f"{where}: the window {window} is not a whole number of days")
        try:
            kind = source.field(agg.column).kind
        except KeyError:
            raise DefinitionError(
                f"{where}: column {agg.column} is not a field of source {source.name}"
            ) from None
        if function != "count" and kind not in NUMERIC_KINDS:
            raise DefinitionError(
                f"{where}: {agg.function} over column {agg.column}, which is {kind}, not a number"
            )
        specs.append(
            AggSpec(feature=feature, column=agg.column, function=function, window_s=window_s)
        )
    listed = [f.name for f in view.features]
    names = [s.feature for s in specs]
    if sorted(listed) != sorted(names):
        only_schema = sorted(set(listed) - set(names))
        only_aggs = sorted(set(names) - set(listed))
        raise DefinitionError(
            f"{what} {view.name}: its schema must list exactly its aggregations' feature names "
            f"(a feature service projects the schema): in the schema only {only_schema}, "
            f"in the aggregations only {only_aggs}"
        )
    return tuple(specs)


def stream_view(view: Any, source: SourceSpec) -> StreamView:
    return StreamView(
        name=view.name,
        source=source.name,
        entity=source.key_field,
        aggregations=_aggregations(view, source, daily=False),
    )


def daily_view(view: Any, events: SourceSpec, labels: SourceSpec) -> DailyView:
    tags = view.tags
    for tag in (DELAY_TAG, JOIN_FIELD_TAG):
        if tag not in tags:
            raise DefinitionError(f"daily view {view.name}: tag {tag} is missing")
    delay = tags[DELAY_TAG]
    if not delay.isdigit():
        raise DefinitionError(
            f"daily view {view.name}: tag {DELAY_TAG} is {delay!r}, not a whole number of days"
        )
    join_field = tags[JOIN_FIELD_TAG]
    if join_field not in {f.name for f in events.fields}:
        raise DefinitionError(
            f"daily view {view.name}: tag {JOIN_FIELD_TAG} names {join_field}, which is not a "
            f"field of the events ({events.name})"
        )
    return DailyView(
        name=view.name,
        source=labels.name,
        entity=labels.key_field,
        join_field=join_field,
        delay_days=int(delay),
        aggregations=_aggregations(view, labels, daily=True),
    )


def on_demand_views(
    repo: RepoContents,
    source: SourceSpec,
    defined: dict[str, str],
    view_features: dict[str, tuple[str, ...]],
) -> tuple[OnDemandView, ...]:
    event_fields = {f.name for f in source.fields}
    pending = list(repo.on_demand_feature_views)
    done: list[OnDemandView] = []
    # An on-demand view may read another's outputs: take them in dependency order.
    while pending:
        ready = [
            o
            for o in pending
            if all(p.name in view_features for p in o.source_feature_view_projections.values())
        ]
        if not ready:
            names = ", ".join(o.name for o in pending)
            missing = sorted(
                {p.name for o in pending for p in o.source_feature_view_projections.values()}
                - set(view_features)
                - {o.name for o in pending}
            )
            raise DefinitionError(
                f"on-demand views {names}: read views stream-infer does not compute "
                f"({', '.join(missing) or 'a cycle between them'})"
            )
        for odfv in ready:
            pending.remove(odfv)
            view = _on_demand_view(odfv, event_fields, view_features)
            define_features(defined, view_features, view.name, [o.name for o in view.outputs])
            done.append(view)
    return tuple(done)


def _on_demand_view(
    odfv: Any, event_fields: set[str], view_features: Mapping[str, tuple[str, ...]]
) -> OnDemandView:
    where = f"on-demand view {odfv.name}"
    mode = getattr(odfv.mode, "value", odfv.mode)
    if mode != "python" or getattr(odfv, "singleton", False):
        raise DefinitionError(
            f"{where}: mode {mode!r}{' (singleton)' if getattr(odfv, 'singleton', False) else ''} "
            "is not supported: use mode='python' (whole columns in, whole columns out)"
        )
    inputs: list[str] = []
    for request in odfv.source_request_sources.values():
        for f in request.schema:
            if f.name not in event_fields:
                raise DefinitionError(
                    f"{where}: request field {f.name} (of {request.name}) is not an event field"
                )
            inputs.append(f.name)
    for projection in odfv.source_feature_view_projections.values():
        known = view_features[projection.name]
        for f in projection.features:
            if f.name not in known:
                raise DefinitionError(
                    f"{where}: reads {projection.name}.{f.name}, which that view does not define"
                )
            inputs.append(f.name)
    outputs = []
    for f in odfv.features:
        kind = _FEAST_KINDS.get(str(f.dtype))
        if kind is None:
            raise DefinitionError(f"{where}, feature {f.name}: type {f.dtype} is not supported")
        outputs.append(FieldSpec(f.name, kind))
    udf = getattr(odfv.feature_transformation, "udf", None)
    if not callable(udf):
        raise DefinitionError(f"{where}: has no python function")
    vectorized = (odfv.tags or {}).get(VECTORIZED_TAG, "false")
    if vectorized not in ("true", "false"):
        raise DefinitionError(f"{where}: tag {VECTORIZED_TAG} is {vectorized!r}, not true or false")
    return OnDemandView(
        name=odfv.name,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        function=udf,
        vectorized=vectorized == "true",
    )


def service_inputs(
    repo: RepoContents, service: str | None, view_features: Mapping[str, tuple[str, ...]]
) -> tuple[tuple[str, ...], str]:
    services = {s.name: s for s in repo.feature_services}
    if service is None:
        if len(services) != 1:
            raise DefinitionError(
                f"the repository has {len(services)} feature services "
                f"({', '.join(sorted(services)) or 'none'}): name the model's one"
            )
        (chosen,) = services.values()
    elif service in services:
        chosen = services[service]
    else:
        raise DefinitionError(
            f"no feature service {service} in the repository "
            f"(it has: {', '.join(sorted(services)) or 'none'})"
        )
    inputs: list[str] = []
    for projection in chosen.feature_view_projections:
        known = view_features.get(projection.name, ())
        for f in projection.features:
            if f.name not in known:
                raise DefinitionError(
                    f"feature service {chosen.name} names {projection.name}.{f.name}, which no "
                    "stream, daily or on-demand view defines"
                )
            if f.name in inputs:
                raise DefinitionError(f"feature service {chosen.name} names {f.name} twice")
            inputs.append(f.name)
    return tuple(inputs), str(chosen.name)


def define_features(
    defined: dict[str, str], view_features: dict[str, tuple[str, ...]], view: str, names: list[str]
) -> None:
    for name in names:
        if name in defined:
            raise DefinitionError(
                f"feature {name} is defined twice: by view {defined[name]} and by view {view}"
            )
        defined[name] = view
    view_features[view] = tuple(names)
