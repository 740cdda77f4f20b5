"""Tiny Feast repositories written into a test's folder, for the stream-definition reader.

:data:`BASE` is a valid repository (a JSON event source keyed by ``user_id``, one stream view,
one service); tests derive a broken one with ``str.replace`` or by appending definitions.
:data:`LABELS` adds a label source and a daily view (``shop_counts``) to it.
"""

from __future__ import annotations

from pathlib import Path

FEATURE_STORE_YAML = """\
project: test_repo
provider: local
registry: data/registry.db
online_store:
  type: sqlite
  path: data/online.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""

BASE = """\
import json
from datetime import timedelta

from feast import (
    Entity, FeatureService, FeatureView, Field, FileSource, KafkaSource, PushSource,
    RequestSource, StreamFeatureView, ValueType,
)
from feast.aggregation import Aggregation
from feast.data_format import AvroFormat, JsonFormat, ProtoFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
shop = Entity(name="shop", join_keys=["shop_id"], value_type=ValueType.STRING)
EVENTS = {
    "type": "object",
    "properties": {
        "event_id": {"type": "string"},
        "ts": {"type": "integer"},
        "user_id": {"type": "string"},
        "shop_id": {"type": "string"},
        "amount": {"type": "number"},
        "country": {"type": "string"},
    },
}
events_history = FileSource(name="events_history", path="data/events.parquet", timestamp_field="ts")
events = KafkaSource(
    name="events",
    kafka_bootstrap_servers="localhost:9092",
    topic="events",
    timestamp_field="ts",
    message_format=JsonFormat(schema_json=json.dumps(EVENTS)),
    batch_source=events_history,
    tags={"stream_infer.event_id": "event_id"},
)
spending = StreamFeatureView(
    name="spending",
    source=events,
    entities=[user],
    timestamp_field="ts",
    schema=[Field(name="sum_amount_3600s", dtype=Float64)],
    aggregations=[Aggregation(column="amount", function="sum", time_window=timedelta(hours=1))],
)
service = FeatureService(name="model_v1", features=[spending])
"""

LABELS = """
LABEL_SCHEMA = {
    "type": "object",
    "properties": {
        "event_id": {"type": "string"},
        "ts": {"type": "integer"},
        "shop_id": {"type": "string"},
        "is_bad": {"type": "integer"},
    },
}
labels = KafkaSource(
    name="labels",
    kafka_bootstrap_servers="localhost:9092",
    topic="labels",
    timestamp_field="ts",
    message_format=JsonFormat(schema_json=json.dumps(LABEL_SCHEMA)),
    batch_source=FileSource(
        name="labels_history", path="data/labels.parquet", timestamp_field="ts"
    ),
    tags={"stream_infer.event_id": "event_id"},
)
shop_counts = StreamFeatureView(
    name="shop_counts",
    source=labels,
    entities=[shop],
    timestamp_field="ts",
    schema=[Field(name="bad_2d", dtype=Float64)],
    aggregations=[
        Aggregation(column="is_bad", function="sum", time_window=timedelta(days=2), name="bad_2d")
    ],
    tags={
        "stream_infer.kind": "daily",
        "stream_infer.delay_days": "3",
        "stream_infer.join_field": "shop_id",
    },
)
"""


def write_repo(folder: Path, definitions: str) -> Path:
    """A Feast repository in ``folder`` whose one definitions file is ``definitions``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    (folder / ".feastignore").write_text("*/\n")
    (folder / "definitions.py").write_text(definitions)
    return folder
