"""The device-telemetry anomaly example, declared in Feast: what stream-infer computes.

- ``readings`` (Kafka, JSON, key ``device_id``, event id ``reading_id``): one event per reading
  of a device's three sensors (``temperature``, ``vibration``, ``current``).
- ``device_windows``: per device and sensor, the mean, sample standard deviation, min, max and
  count of its readings over the last 5 minutes and the last hour, the reading itself included
  (computed in the stream, exact to the second). Features are named
  ``{sensor}_{function}_{window}`` through ``Aggregation(name=...)``, e.g.
  ``temperature_stddev_1h``; the view's schema lists the same names (a feature service
  projects the schema). A window of one reading has a NaN standard deviation (sample
  statistic).
- ``reading_scores`` (on demand): each sensor's raw reading, its z-score against the last
  hour, ``(reading - mean_1h) / stddev_1h`` (0 when the standard deviation is 0 or NaN), and
  ``{sensor}_flat_5m``: 1.0 when the last 5 minutes hold two readings or more, all equal (a
  stuck sensor), else 0.0.
- ``anomaly_model_v1``: the model's 6 inputs in its input order: the three z-scores, then the
  three flat flags (why these: the comment above the service).

On-demand functions are stored by Feast as source and may run anywhere: their imports are
inside them, and they take whole columns (lists) in python mode.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from feast import (
    Entity,
    FeatureService,
    Field,
    FileSource,
    KafkaSource,
    RequestSource,
    StreamFeatureView,
    ValueType,
)
from feast.aggregation import Aggregation
from feast.data_format import JsonFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64

SENSORS = ("temperature", "vibration", "current")
WINDOWS = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
FUNCTIONS = ("mean", "stddev", "min", "max", "count")

device = Entity(
    name="device",
    join_keys=["device_id"],
    value_type=ValueType.STRING,
    description="A monitored device (the readings topic's key).",
)

# A JSON Schema of the events; reading_time is an RFC 3339 date-time string on the wire.
READING_SCHEMA = {
    "type": "object",
    "properties": {
        "reading_id": {"type": "string"},
        "reading_time": {"type": "string", "format": "date-time"},
        "device_id": {"type": "string"},
        "temperature": {"type": "number"},
        "vibration": {"type": "number"},
        "current": {"type": "number"},
    },
    "required": [
        "reading_id",
        "reading_time",
        "device_id",
        "temperature",
        "vibration",
        "current",
    ],
}

readings = KafkaSource(
    name="readings",
    kafka_bootstrap_servers="localhost:9092",
    topic="readings",
    timestamp_field="reading_time",
    message_format=JsonFormat(schema_json=json.dumps(READING_SCHEMA)),
    batch_source=FileSource(
        name="readings_history",
        path="data/readings.parquet",
        timestamp_field="reading_time",
    ),
    tags={"stream_infer.event_id": "reading_id"},
    description="Sensor readings, keyed by device_id.",
)

device_windows = StreamFeatureView(
    name="device_windows",
    source=readings,
    entities=[device],
    timestamp_field="reading_time",
    schema=[
        Field(name=f"{sensor}_{function}_{label}", dtype=Float64)
        for sensor in SENSORS
        for label in WINDOWS
        for function in FUNCTIONS
    ],
    aggregations=[
        Aggregation(
            column=sensor,
            function=function,
            time_window=window,
            name=f"{sensor}_{function}_{label}",
        )
        for sensor in SENSORS
        for label, window in WINDOWS.items()
        for function in FUNCTIONS
    ],
    online=True,
    description="Per device and sensor: mean, stddev, min, max, count over 5 minutes and 1 hour.",
)

# The event's own fields, as stream-infer hands them to on-demand views.
reading_request = RequestSource(
    name="reading_request",
    schema=[Field(name=sensor, dtype=Float64) for sensor in SENSORS],
    description="The reading being scored.",
)


@on_demand_feature_view(
    name="reading_scores",
    sources=[
        reading_request,
        device_windows[
            [
                f"{sensor}_{function}_{label}"
                for sensor in SENSORS
                for function, label in (
                    ("mean", "1h"),
                    ("stddev", "1h"),
                    ("min", "5m"),
                    ("max", "5m"),
                    ("count", "5m"),
                )
            ]
        ],
    ],
    schema=[
        Field(name=f"{sensor}{suffix}", dtype=Float64)
        for sensor in SENSORS
        for suffix in ("_reading", "_zscore", "_flat_5m")
    ],
    mode="python",
    description="Each sensor's reading, its z-score against the last hour (0 if stddev is 0) "
    "and 1.0 when it has read one value for the last 5 minutes.",
)
def reading_scores(inputs: dict[str, Any]) -> dict[str, Any]:
    import math

    out: dict[str, Any] = {}
    for sensor in ("temperature", "vibration", "current"):
        values = [float(v) for v in inputs[sensor]]
        means = inputs[f"{sensor}_mean_1h"]
        stds = inputs[f"{sensor}_stddev_1h"]
        out[f"{sensor}_reading"] = values
        out[f"{sensor}_zscore"] = [
            (v - float(m)) / float(s) if s is not None and math.isfinite(s) and s > 0 else 0.0
            for v, m, s in zip(values, means, stds, strict=True)
        ]
        # A healthy sensor's noise never repeats one value over several readings.
        out[f"{sensor}_flat_5m"] = [
            1.0 if c >= 2 and lo == hi else 0.0
            for lo, hi, c in zip(
                inputs[f"{sensor}_min_5m"],
                inputs[f"{sensor}_max_5m"],
                inputs[f"{sensor}_count_5m"],
                strict=True,
            )
        ]
    return out


# The model's inputs in its input order: each sensor's z-score, then its flat flag. These are
# scale-free: the raw readings and window statistics sit at each device's own levels, and an
# isolation forest fed them isolates devices rather than faults.
anomaly_model_v1 = FeatureService(
    name="anomaly_model_v1",
    features=[
        reading_scores[
            [f"{sensor}_zscore" for sensor in SENSORS] + [f"{sensor}_flat_5m" for sensor in SENSORS]
        ],
    ],
    description="The anomaly model's 6 inputs, in its input order.",
)
