"""``loadgen replay --repo``: any parquet of a repository's events, as that source's records.

- every record decodes with the stream's own decoder for the source, back to the file's values
  (fields, kinds, the timestamp as the schema types it), keyed by the source's key field;
- records go out in time order, with nothing but the source's fields (no ``fault``);
- ``sent_ids`` are the event ids as text, a failed delivery left out;
- an epoch-seconds timestamp in the schema is written as a number.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from loadgen.replay import ReplayOptions, replay
from loadgen.source_events import SourceEvents
from loadgen.telemetry import SENSORS, TelemetryConfig, generate_telemetry
from stream_infer.streamdef.decoders import build_decoder
from stream_infer.streamdef.feast_reader import load_definitions
from stream_infer.streamdef.spec import SourceSpec

REPO = Path(__file__).resolve().parents[2] / "examples" / "anomaly" / "feature_repo"


class _Msg:
    def __init__(self, topic: str, value: bytes) -> None:
        self._topic, self._value = topic, value

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value


class RecordingProducer:
    """Records produce() calls; deliveries of the ids in ``fail`` report an error."""

    def __init__(self, fail: set[str]) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.pending: list[tuple[Callable[[Any, Any], None], str, bytes]] = []

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None:
        assert on_delivery is not None
        self.sent.append((topic, key, value))
        self.pending.append((on_delivery, topic, value))

    def poll(self, timeout: float) -> int:
        for cb, topic, value in self.pending:
            failed = orjson.loads(value)["reading_id"] in self.fail
            cb("boom" if failed else None, _Msg(topic, value))
        n, self.pending = len(self.pending), []
        return n

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> None:
        return None


@pytest.fixture(scope="module")
def source() -> SourceSpec:
    return load_definitions(REPO).source


@pytest.fixture(scope="module")
def readings() -> pd.DataFrame:
    frame = generate_telemetry(TelemetryConfig(devices=3, days=1, seed=2))
    # Shuffled: replay restores time order (ties in row order).
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


def _replay(events: SourceEvents, fail: set[str] | None = None) -> tuple[Any, RecordingProducer]:
    producers: list[RecordingProducer] = []

    def factory(config: dict[str, Any]) -> RecordingProducer:
        producers.append(RecordingProducer(fail or set()))
        return producers[0]

    options = ReplayOptions(transactions_topic=events.source.topic, labels_topic="-", labels="none")
    result = replay(events, options, {"bootstrap.servers": "x"}, progress=False,
                    producer_factory=factory)  # fmt: skip
    return result, producers[0]


def test_records_decode_with_the_streams_decoder_to_the_files_values(
    source: SourceSpec, readings: pd.DataFrame
) -> None:
    result, producer = _replay(SourceEvents.from_frame(readings, source))
    assert result.transactions_sent == len(readings) and result.labels_sent == 0
    want = readings.sort_values("reading_time", kind="stable")
    assert [topic for topic, _, _ in producer.sent] == ["readings"] * len(readings)
    assert [k.decode() for _, k, _ in producer.sent] == want["device_id"].tolist()
    assert all(set(orjson.loads(v)) == {f.name for f in source.fields} for _, _, v in producer.sent)

    decoded = build_decoder(source).decode_batch([v for _, _, v in producer.sent])
    assert decoded.refused == []
    assert decoded.columns["reading_id"].tolist() == want["reading_id"].astype(str).tolist()
    assert decoded.columns["device_id"].tolist() == want["device_id"].tolist()
    seconds = want["reading_time"].astype("int64") // 1_000_000_000
    assert decoded.columns["reading_time"].tolist() == seconds.tolist()
    for sensor in SENSORS:
        assert decoded.columns[sensor].tolist() == want[sensor].tolist()
    assert result.sent_ids.tolist() == want["reading_id"].astype(str).tolist()


def test_a_failed_delivery_is_not_counted_sent(source: SourceSpec, readings: pd.DataFrame) -> None:
    events = SourceEvents.from_frame(readings, source).head(20)
    lost = {events.ids[3], events.ids[11]}
    result, _ = _replay(events, fail={str(i) for i in lost})
    assert result.delivery_errors == 2
    assert sorted(result.failed_ids) == sorted(lost)
    assert result.sent_ids.tolist() == [i for i in events.ids.tolist() if i not in lost]


def test_an_epoch_seconds_timestamp_is_written_as_a_number(
    source: SourceSpec, readings: pd.DataFrame
) -> None:
    schema = json.loads(source.schema_text)
    schema["properties"]["reading_time"] = {"type": "integer"}
    epoch = replace(source, schema_text=json.dumps(schema))
    frame = readings.assign(reading_time=readings["reading_time"].astype("int64") // 10**9)
    _, producer = _replay(SourceEvents.from_frame(frame, epoch).head(5))
    stamps = [orjson.loads(v)["reading_time"] for _, _, v in producer.sent]
    assert stamps == np.sort(frame["reading_time"].to_numpy()).tolist()[:5]
    assert build_decoder(epoch).decode_batch([v for _, _, v in producer.sent]).refused == []


def test_missing_fields_and_avro_sources_are_refused(
    source: SourceSpec, readings: pd.DataFrame
) -> None:
    with pytest.raises(ValueError, match=r"lack the fields \['vibration'\]"):
        SourceEvents.from_frame(readings.drop(columns=["vibration"]), source)
    with pytest.raises(ValueError, match="JSON only"):
        SourceEvents.from_frame(readings, replace(source, format="avro"))
