"""The user's Feast repository, read through Feast's own objects into :class:`StreamDefinitions`.

The repository is parsed as ``feast apply`` parses it (``feast.repo_operations.parse_repo``:
every ``.py`` file not excluded by ``.feastignore`` is executed), with no registry written and
no broker contacted. ``import feast`` takes seconds, so it happens inside :func:`load_definitions`.

Mapping (docs/ARCHITECTURE.md, "Bring your own stream"):

- ``KafkaSource``: the events (the source the stream views read) and the labels (the source the
  daily views read); fields from its ``message_format`` (:mod:`.schemas`); its tag
  ``stream_infer.event_id`` names the event id field (required).
- ``StreamFeatureView`` with ``aggregations``: a :class:`StreamView`, keyed by its one entity's
  join key, which is the topic's key; each feature named ``Aggregation.resolved_name(window)``
  (Feast's ``std``/``variance`` normalised to ``stddev``/``var``). Its ``schema`` lists exactly
  those names: that is what a ``FeatureService`` projects.
- the same with tags ``stream_infer.kind = daily``, ``stream_infer.delay_days``,
  ``stream_infer.join_field``: a :class:`DailyView` over the labels source.
- ``on_demand_feature_view(mode="python")``: an :class:`OnDemandView`; inputs are its request
  sources' fields (event fields) then its source views' projected features.
- ``FeatureService``: the model's inputs, projection by projection, in order. Plain
  ``FeatureView``s are ignored unless a service names them (then refused: nothing computes them).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream_infer.errors import DefinitionError
from stream_infer.streamdef.feast_objects import (
    DAILY,
    DELAY_TAG,
    JOIN_FIELD_TAG,
    KIND_TAG,
    ON_DEMAND_TAGS,
    SOURCE_TAGS,
    STREAM,
    TAG_PREFIX,
    VIEW_TAGS,
    daily_view,
    define_features,
    on_demand_views,
    service_inputs,
    source_spec,
    stream_view,
)
from stream_infer.streamdef.spec import (
    DailyView,
    SourceSpec,
    StreamDefinitions,
)

if TYPE_CHECKING:
    from feast.repo_contents import RepoContents


def load_definitions(repo_dir: Path, service: str | None = None) -> StreamDefinitions:
    """Read the Feast repository at ``repo_dir`` and the feature service ``service`` (the only
    one when ``None``).

    Raises:
        DefinitionError: the repository does not load, or defines something stream-infer
            refuses (the message names the view, source or service, and the field).
    """
    return build_definitions(parse_feast_repo(repo_dir), service)


def parse_feast_repo(repo_dir: Path) -> RepoContents:
    """Feast's parse of the repository, as ``feast apply`` sees it (nothing applied).

    The repository's modules are imported from its folder and forgotten afterwards, so two
    repositories with files of the same name load side by side in one process.

    Raises:
        DefinitionError: no ``feature_store.yaml`` there, or a file of it fails to import.
    """
    root = repo_dir.resolve()
    if not (root / "feature_store.yaml").is_file():
        raise DefinitionError(f"{root} is not a Feast repository (no feature_store.yaml)")
    from feast.repo_operations import parse_repo

    with _inside(root), warnings.catch_warnings():
        # Stream and on-demand views warn that they are experimental each time one is built.
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return parse_repo(root)
        except Exception as exc:  # the user's code: anything can escape it
            raise DefinitionError(
                f"the Feast repository {root} does not load: {type(exc).__name__}: {exc}"
            ) from exc


@contextmanager
def _inside(root: Path) -> Iterator[None]:
    # parse_repo imports each file by its path relative to the working directory.
    before = set(sys.modules)
    cwd = os.getcwd()
    sys.path.insert(0, str(root))
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None)
            if file and Path(file).resolve().is_relative_to(root):
                del sys.modules[name]


def build_definitions(repo: RepoContents, service: str | None = None) -> StreamDefinitions:
    """:class:`StreamDefinitions` from a parsed repository (see :func:`load_definitions`).

    Raises:
        DefinitionError: as :func:`load_definitions`.
    """
    from feast import KafkaSource

    _check_tags(repo)
    join_keys = {e.name: e.join_key for e in repo.entities}
    stream_fvs: list[Any] = []
    daily_fvs: list[Any] = []
    for view in repo.stream_feature_views:
        read = view.stream_source
        if not isinstance(read, KafkaSource):
            raise DefinitionError(
                f"stream view {view.name} reads {type(read).__name__} "
                f"{getattr(read, 'name', '?')}: stream-infer reads Kafka topics "
                "(use a KafkaSource)"
            )
        (daily_fvs if _kind(view) == DAILY else stream_fvs).append(view)
    if not stream_fvs:
        raise DefinitionError(
            "no StreamFeatureView over a KafkaSource: nothing says which topic to read "
            "and by which key"
        )

    event_kafka = _one_source(stream_fvs, "stream")
    key_field = _entity_key(stream_fvs[0], join_keys)
    for view in stream_fvs[1:]:
        _check_key(view, _entity_key(view, join_keys), key_field, event_kafka.name)
    source = source_spec(event_kafka, key_field)

    label_source: SourceSpec | None = None
    daily_views: tuple[DailyView, ...] = ()
    if daily_fvs:
        label_kafka = _one_source(daily_fvs, "daily")
        if label_kafka is event_kafka:
            raise DefinitionError(
                f"daily view {daily_fvs[0].name} reads the event source {event_kafka.name}: "
                "daily views read a second (labels) source"
            )
        label_key = _entity_key(daily_fvs[0], join_keys)
        for view in daily_fvs[1:]:
            _check_key(view, _entity_key(view, join_keys), label_key, label_kafka.name)
        label_source = source_spec(label_kafka, label_key)
        daily_views = tuple(daily_view(v, source, label_source) for v in daily_fvs)

    stream_views = tuple(stream_view(v, source) for v in stream_fvs)
    defined: dict[str, str] = {}  # feature -> the view defining it
    view_features: dict[str, tuple[str, ...]] = {}
    for sv in stream_views:
        define_features(defined, view_features, sv.name, [a.feature for a in sv.aggregations])
    for dv in daily_views:
        define_features(defined, view_features, dv.name, [a.feature for a in dv.aggregations])
    on_demand = on_demand_views(repo, source, defined, view_features)
    inputs, service_name = service_inputs(repo, service, view_features)
    return StreamDefinitions(
        source=source,
        label_source=label_source,
        stream_views=stream_views,
        daily_views=daily_views,
        on_demand=on_demand,
        service=service_name,
        inputs=inputs,
    )


def _check_tags(repo: RepoContents) -> None:
    from feast import KafkaSource

    objects: list[tuple[str, Any, frozenset[str]]] = [
        *(
            ("source", s, SOURCE_TAGS if isinstance(s, KafkaSource) else frozenset())
            for s in repo.data_sources
        ),
        *(("entity", e, frozenset()) for e in repo.entities),
        *(("view", v, frozenset()) for v in repo.feature_views),
        *(("stream view", v, VIEW_TAGS) for v in repo.stream_feature_views),
        *(("on-demand view", v, ON_DEMAND_TAGS) for v in repo.on_demand_feature_views),
        *(("feature service", s, frozenset()) for s in repo.feature_services),
    ]
    for what, obj, allowed in objects:
        for tag in getattr(obj, "tags", None) or {}:
            if tag.startswith(TAG_PREFIX) and tag not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                raise DefinitionError(f"{what} {obj.name}: unknown tag {tag} (known here: {known})")


def _kind(view: Any) -> str:
    kind = view.tags.get(KIND_TAG, STREAM)
    if kind not in (STREAM, DAILY):
        raise DefinitionError(
            f"stream view {view.name}: tag {KIND_TAG} is {kind!r} (use {STREAM!r} or {DAILY!r})"
        )
    if kind == STREAM:
        for tag in (DELAY_TAG, JOIN_FIELD_TAG):
            if tag in view.tags:
                raise DefinitionError(
                    f"stream view {view.name}: tag {tag} is for daily views ({KIND_TAG} = {DAILY})"
                )
    return str(kind)


def _one_source(views: list[Any], kind: str) -> Any:
    first = views[0].stream_source
    for view in views[1:]:
        if view.stream_source.name != first.name:
            raise DefinitionError(
                f"{kind} view {view.name} reads {view.stream_source.name}, {views[0].name} reads "
                f"{first.name}: every {kind} view reads one topic"
            )
    return first


def _entity_key(view: Any, join_keys: Mapping[str, str]) -> str:
    if len(view.entities) != 1:
        raise DefinitionError(
            f"stream view {view.name}: needs exactly one entity (has {len(view.entities)})"
        )
    name = view.entities[0]
    if name not in join_keys:
        raise DefinitionError(
            f"stream view {view.name}: entity {name} is not defined in the repository "
            "(give it a module-level name: the repository parse lists only those)"
        )
    return join_keys[name]


def _check_key(view: Any, key: str, topic_key: str, source: str) -> None:
    if key != topic_key:
        raise DefinitionError(
            f"stream view {view.name}: entity {view.entities[0]} (join key {key}) is not the "
            f"key of topic {source} ({topic_key}); a view aggregates by the topic's key"
        )
