"""Each definition stream-infer refuses, refused at start with a message naming what and where.

Every test writes a tiny Feast repository (tests/unit/streamdef_repos.py) and reads it; Feast is
imported once for the session by the first read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream_infer.errors import ConfigError, DefinitionError
from stream_infer.streamdef.feast_reader import load_definitions
from stream_infer.streamdef.model_inputs import check_model_inputs
from stream_infer.streamdef.spec import StreamDefinitions
from tests.unit.streamdef_repos import BASE, LABELS, write_repo


def refused(tmp_path: Path, definitions: str) -> str:
    with pytest.raises(DefinitionError) as info:
        load_definitions(write_repo(tmp_path / "repo", definitions))
    return str(info.value)


def test_the_base_repository_loads(tmp_path: Path) -> None:
    defs = load_definitions(write_repo(tmp_path / "repo", BASE + LABELS))
    assert defs.inputs == ("sum_amount_3600s",)
    assert defs.source.key_field == "user_id"
    assert defs.daily_views[0].delay_days == 3
    assert issubclass(DefinitionError, ConfigError)


def test_aggregation_over_a_non_numeric_column(tmp_path: Path) -> None:
    text = BASE.replace('column="amount", function="sum"', 'column="country", function="sum"')
    text = text.replace("sum_amount_3600s", "sum_country_3600s")
    message = refused(tmp_path, text)
    assert message == (
        "stream view spending, feature sum_country_3600s: sum over column country, "
        "which is string, not a number"
    )


def test_entity_that_is_not_the_topic_key(tmp_path: Path) -> None:
    text = (
        BASE
        + """
by_shop = StreamFeatureView(
    name="by_shop",
    source=events,
    entities=[shop],
    timestamp_field="ts",
    schema=[Field(name="count_amount_3600s", dtype=Float64)],
    aggregations=[Aggregation(column="amount", function="count", time_window=timedelta(hours=1))],
)
"""
    )
    message = refused(tmp_path, text)
    # parse_repo lists views by attribute name: by_shop comes first and sets the key.
    assert re.fullmatch(
        r"stream view (spending|by_shop): entity (user|shop) \(join key (user_id|shop_id)\) is "
        r"not the key of topic events \((shop_id|user_id)\); a view aggregates by the topic's key",
        message,
    ), message


def test_feature_service_naming_an_unknown_feature(tmp_path: Path) -> None:
    profile = """
profile = FeatureView(
    name="profile",
    entities=[user],
    schema=[Field(name="age", dtype=Int64)],
    source=FileSource(name="profiles", path="data/profiles.parquet", timestamp_field="ts"),
)
"""
    text = BASE.replace("service = ", profile + "service = ").replace(
        "features=[spending])", "features=[spending, profile])"
    )
    message = refused(tmp_path, text)
    assert message == (
        "feature service model_v1 names profile.age, which no stream, daily or on-demand view "
        "defines"
    )


def test_unsupported_aggregation_function(tmp_path: Path) -> None:
    text = BASE.replace('function="sum"', 'function="count_distinct"').replace(
        "sum_amount_3600s", "count_distinct_amount_3600s"
    )
    message = refused(tmp_path, text)
    assert message.startswith(
        "stream view spending, feature count_distinct_amount_3600s: aggregation function "
        "'count_distinct' is not supported (use one of "
    )


def test_unsupported_message_format(tmp_path: Path) -> None:
    text = BASE.replace(
        "message_format=JsonFormat(schema_json=json.dumps(EVENTS))",
        'message_format=ProtoFormat(class_path="com.example.Event")',
    )
    message = refused(tmp_path, text)
    assert message == (
        "source events: message format ProtoFormat is not supported (use JsonFormat or AvroFormat)"
    )


def test_daily_window_not_whole_days(tmp_path: Path) -> None:
    text = (BASE + LABELS).replace(
        "time_window=timedelta(days=2)", "time_window=timedelta(hours=36)"
    )
    message = refused(tmp_path, text)
    assert message == (
        "daily view shop_counts, feature bad_2d: the window 1 day, 12:00:00 is not a whole "
        "number of days"
    )


def test_unknown_stream_infer_tag(tmp_path: Path) -> None:
    text = (BASE + LABELS).replace('"stream_infer.delay_days": "3"', '"stream_infer.delay": "3"')
    message = refused(tmp_path, text)
    assert message == (
        "stream view shop_counts: unknown tag stream_infer.delay (known here: "
        "stream_infer.delay_days, stream_infer.join_field, stream_infer.kind)"
    )


def test_two_views_defining_the_same_feature(tmp_path: Path) -> None:
    text = (
        BASE
        + """
request = RequestSource(name="request", schema=[Field(name="amount", dtype=Float64)])


@on_demand_feature_view(
    name="doubled",
    sources=[request],
    schema=[Field(name="sum_amount_3600s", dtype=Float64)],
    mode="python",
)
def doubled(inputs):
    return {"sum_amount_3600s": [2 * a for a in inputs["amount"]]}
"""
    )
    message = refused(tmp_path, text)
    assert message == (
        "feature sum_amount_3600s is defined twice: by view spending and by view doubled"
    )


def test_missing_event_id_tag(tmp_path: Path) -> None:
    text = BASE.replace('tags={"stream_infer.event_id": "event_id"},', "")
    message = refused(tmp_path, text)
    assert message.startswith("source events: tag stream_infer.event_id is missing")


def test_stream_view_over_a_push_source(tmp_path: Path) -> None:
    text = BASE.replace(
        "    source=events,\n    entities=[user],",
        '    source=PushSource(name="pushed", batch_source=events_history),\n    entities=[user],',
    )
    message = refused(tmp_path, text)
    assert message == (
        "stream view spending reads PushSource pushed: stream-infer reads Kafka topics "
        "(use a KafkaSource)"
    )


def test_a_repository_that_does_not_import(tmp_path: Path) -> None:
    message = refused(tmp_path, BASE + "\nraise RuntimeError('broken on purpose')\n")
    assert "does not load: RuntimeError: broken on purpose" in message


@pytest.fixture(scope="module")
def defs(tmp_path_factory: pytest.TempPathFactory) -> StreamDefinitions:
    return load_definitions(
        write_repo(
            tmp_path_factory.mktemp("model") / "repo",
            BASE
            + LABELS
            + """
request = RequestSource(name="request", schema=[Field(name="amount", dtype=Float64)])


@on_demand_feature_view(
    name="flags",
    sources=[request],
    schema=[Field(name="big", dtype=Float64)],
    mode="python",
)
def flags(inputs):
    return {"big": [1.0 if a > 100 else 0.0 for a in inputs["amount"]]}


service = FeatureService(name="model_v1", features=[spending, flags, shop_counts])
""",
        )
    )


def test_model_inputs_that_match(defs: StreamDefinitions) -> None:
    assert defs.inputs == ("sum_amount_3600s", "big", "bad_2d")
    check_model_inputs(defs, list(defs.inputs), 3)
    check_model_inputs(defs, None, 3)
    check_model_inputs(defs, list(defs.inputs), None)


def test_model_of_another_width(defs: StreamDefinitions) -> None:
    with pytest.raises(
        DefinitionError,
        match=re.escape("the model takes 4 inputs; feature service model_v1 names 3"),
    ):
        check_model_inputs(defs, None, 4)


def test_model_with_other_inputs(defs: StreamDefinitions) -> None:
    with pytest.raises(DefinitionError) as info:
        check_model_inputs(defs, ["sum_amount_3600s", "big", "bad_7d"], 3)
    assert str(info.value) == (
        "the model's inputs differ from feature service model_v1's features: the model lacks "
        "['bad_2d'], and has ['bad_7d'] that the service does not name"
    )


def test_model_with_inputs_in_another_order(defs: StreamDefinitions) -> None:
    with pytest.raises(DefinitionError) as info:
        check_model_inputs(defs, ["big", "sum_amount_3600s", "bad_2d"], 3)
    assert str(info.value) == (
        "the model's input 0 is big; feature service model_v1 puts sum_amount_3600s there "
        "(same features, another order)"
    )


def test_entity_without_a_module_level_name(tmp_path: Path) -> None:
    inline = 'Entity(name="inline", join_keys=["user_id"], value_type=ValueType.STRING)'
    text = BASE.replace("entities=[user]", f"entities=[{inline}]")
    message = refused(tmp_path, text)
    assert message == (
        "stream view spending: entity inline is not defined in the repository (give it a "
        "module-level name: the repository parse lists only those)"
    )
