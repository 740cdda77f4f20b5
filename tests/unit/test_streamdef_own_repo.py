"""A user's own stream, declared only here: Avro payments keyed by account, a label-derived
view keyed by merchant, min/max/stddev over 10 minutes and 2 days, an on-demand view.

Done when it loads, its training set (the CLI) equals the reference evaluated event by event,
and the stream's way (Avro bytes decoded in random batches, the compiled kernel) gives the
same features for every event.
"""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from stream_infer.cli import cli
from stream_infer.streamdef.decoders import build_decoder
from stream_infer.streamdef.feast_reader import load_definitions
from stream_infer.streamdef.kernel import StreamKernel
from stream_infer.streamdef.reference import feature_rows
from stream_infer.streamdef.spec import SEQ_COLUMN, StreamDefinitions
from tests.unit.streamdef_repos import write_repo

PAYMENT_SCHEMA = {
    "type": "record",
    "name": "Payment",
    "fields": [
        {"name": "payment_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "account_id", "type": "string"},
        {"name": "merchant_id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "items", "type": "long"},
    ],
}
CHARGEBACK_SCHEMA = {
    "type": "record",
    "name": "Chargeback",
    "fields": [
        {"name": "payment_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "merchant_id", "type": "string"},
        {"name": "disputed", "type": "long"},
        {"name": "loss", "type": "double"},
    ],
}
DEFINITIONS = f"""\
import json
from datetime import timedelta

from feast import (
    Entity, FeatureService, Field, FileSource, KafkaSource, RequestSource, StreamFeatureView,
    ValueType,
)
from feast.aggregation import Aggregation
from feast.data_format import AvroFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64

account = Entity(name="account", join_keys=["account_id"], value_type=ValueType.STRING)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)
payments = KafkaSource(
    name="payments",
    kafka_bootstrap_servers="localhost:9092",
    topic="payments",
    timestamp_field="ts",
    message_format=AvroFormat(schema_json=json.dumps({PAYMENT_SCHEMA!r})),
    batch_source=FileSource(name="payments_file", path="data/p.parquet", timestamp_field="ts"),
    tags={{"stream_infer.event_id": "payment_id"}},
)
chargebacks = KafkaSource(
    name="chargebacks",
    kafka_bootstrap_servers="localhost:9092",
    topic="chargebacks",
    timestamp_field="ts",
    message_format=AvroFormat(schema_json=json.dumps({CHARGEBACK_SCHEMA!r})),
    batch_source=FileSource(name="chargebacks_file", path="data/c.parquet", timestamp_field="ts"),
    tags={{"stream_infer.event_id": "payment_id"}},
)
TEN_MINUTES = timedelta(minutes=10)
TWO_DAYS = timedelta(days=2)
account_activity = StreamFeatureView(
    name="account_activity",
    source=payments,
    entities=[account],
    timestamp_field="ts",
    schema=[
        Field(name=n, dtype=Float64)
        for n in (
            "min_amount_600s", "max_amount_600s", "count_amount_600s",
            "std_amount_172800s", "max_items_172800s", "mean_amount_172800s",
        )
    ],
    aggregations=[
        Aggregation(column="amount", function="min", time_window=TEN_MINUTES),
        Aggregation(column="amount", function="max", time_window=TEN_MINUTES),
        Aggregation(column="amount", function="count", time_window=TEN_MINUTES),
        Aggregation(column="amount", function="std", time_window=TWO_DAYS),
        Aggregation(column="items", function="max", time_window=TWO_DAYS),
        Aggregation(column="amount", function="mean", time_window=TWO_DAYS),
    ],
)
merchant_losses = StreamFeatureView(
    name="merchant_losses",
    source=chargebacks,
    entities=[merchant],
    timestamp_field="ts",
    schema=[Field(name=n, dtype=Float64) for n in ("disputes_2d", "worst_loss_2d", "loss_sd_2d")],
    aggregations=[
        Aggregation(column="disputed", function="sum", time_window=TWO_DAYS, name="disputes_2d"),
        Aggregation(column="loss", function="max", time_window=TWO_DAYS, name="worst_loss_2d"),
        Aggregation(column="loss", function="stddev", time_window=TWO_DAYS, name="loss_sd_2d"),
    ],
    tags={{
        "stream_infer.kind": "daily",
        "stream_infer.delay_days": "1",
        "stream_infer.join_field": "merchant_id",
    }},
)
payment = RequestSource(name="payment", schema=[Field(name="amount", dtype=Float64)])


@on_demand_feature_view(
    name="relative",
    sources=[payment, account_activity],
    schema=[Field(name="amount_over_max_10m", dtype=Float64)],
    mode="python",
)
def relative(inputs):
    return {{
        "amount_over_max_10m": [
            a / m if m else 0.0 for a, m in zip(inputs["amount"], inputs["max_amount_600s"])
        ]
    }}


risk_v2 = FeatureService(
    name="risk_v2",
    features=[relative, merchant_losses, account_activity],
)
"""

STREAM_FEATURES = (
    "min_amount_600s",
    "max_amount_600s",
    "count_amount_600s",
    "std_amount_172800s",
    "max_items_172800s",
    "mean_amount_172800s",
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_repo(tmp_path_factory.mktemp("own") / "repo", DEFINITIONS)


@pytest.fixture(scope="module")
def defs(repo: Path) -> StreamDefinitions:
    return load_definitions(repo)


def history(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Payments in time order with ties and re-deliveries; chargebacks for some of them."""
    rng = np.random.default_rng(seed)
    start = 1_767_225_600  # 2026-01-01 00:00 UTC
    rows: list[dict[str, Any]] = []
    t = start
    for i in range(160):
        # bursts inside 10 minutes, pauses longer than 10 minutes and than 2 days
        t += int(rng.choice([0, 30, 200, 599, 600, 601, 5_000, 90_000, 172_800, 200_000]))
        rows.append(
            {
                "payment_id": f"p{i}",
                "ts": t,
                "account_id": f"a{rng.integers(4)}",
                "merchant_id": f"m{rng.integers(3)}",
                "amount": float(np.round(rng.gamma(2.0, 30.0), 2)),
                "items": int(rng.integers(1, 9)),
            }
        )
        if rng.random() < 0.08:  # a re-delivery: the same event again
            rows.append(dict(rows[-1]))
    events = pd.DataFrame(rows)
    labelled = events.drop_duplicates("payment_id").sample(frac=0.5, random_state=seed)
    labels = labelled[["payment_id", "ts", "merchant_id"]].copy()
    labels["disputed"] = rng.integers(0, 2, len(labels))
    labels["loss"] = np.round(rng.uniform(0, 500, len(labels)), 2)
    labels = pd.concat([labels, labels.head(3)])  # re-delivered labels count once
    events["ts"] = pd.to_datetime(events["ts"], unit="s", utc=True)
    labels["ts"] = pd.to_datetime(labels["ts"], unit="s", utc=True)
    return events, labels


def test_it_loads_with_feasts_names(defs: StreamDefinitions) -> None:
    assert defs.source.format == "avro" and defs.source.key_field == "account_id"
    assert defs.stream_features() == STREAM_FEATURES
    functions = [a.function for v in defs.stream_views for a in v.aggregations]
    assert functions == ["min", "max", "count", "stddev", "max", "mean"]
    (daily,) = defs.daily_views
    assert (daily.entity, daily.join_field, daily.delay_days) == ("merchant_id", "merchant_id", 1)
    assert [a.function for a in daily.aggregations] == ["sum", "max", "stddev"]
    assert defs.inputs == (
        "amount_over_max_10m",
        "disputes_2d",
        "worst_loss_2d",
        "loss_sd_2d",
        *STREAM_FEATURES,
    )


def same(a: float, b: float, *, exact: bool) -> bool:
    """Equal (NaN to NaN); ``exact=False``: equal to the rounding of sums taken in another
    order (running and per-day sums against the reference's one pass)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b if exact else math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


@pytest.mark.parametrize("seed", [1, 2])
def test_training_set_is_the_reference_event_by_event(
    repo: Path, defs: StreamDefinitions, tmp_path: Path, seed: int
) -> None:
    events, labels = history(seed)
    events.to_parquet(tmp_path / "events.parquet")
    labels.to_parquet(tmp_path / "labels.parquet")
    out = tmp_path / "set.parquet"
    args = ["features", "training-set", "--repo", str(repo), "--events"]
    args += [str(tmp_path / "events.parquet"), "--labels", str(tmp_path / "labels.parquet")]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(out)
    assert list(got.columns) == [
        "payment_id", "account_id", "merchant_id", "ts", *defs.inputs, "disputed", "loss",
    ]  # fmt: skip
    assert len(got) == len(events)
    # The history is in time order already: the set's rows are its rows.
    assert got["payment_id"].tolist() == events["payment_id"].tolist()

    columns: dict[str, list[Any]] = {
        name: events[name].tolist() for name in ("payment_id", "account_id", "merchant_id")
    }
    columns |= {"amount": events["amount"].tolist(), "items": events["items"].tolist()}
    columns["ts"] = (events["ts"].astype("int64") // 1_000_000_000).tolist()
    label_columns = {name: labels[name].tolist() for name in labels.columns if name != "ts"}
    label_columns["ts"] = (labels["ts"].astype("int64") // 1_000_000_000).tolist()
    functions = {
        a.feature: a.function
        for v in (*defs.stream_views, *defs.daily_views)
        for a in v.aggregations
    }
    exact = {name: functions.get(name, "max") in ("count", "min", "max") for name in defs.inputs}
    for i in range(len(events)):
        # The stream's view of event i: every event before it and itself, nothing after.
        prefix = {name: values[: i + 1] for name, values in columns.items()}
        want = feature_rows(defs, prefix, label_columns)
        for name in defs.inputs:
            assert same(got[name].iloc[i], want[name][-1], exact=exact[name]), (i, name)
    nonzero = got[["disputes_2d", "count_amount_600s"]].gt(0).sum()
    assert (nonzero > 5).all(), "the history must exercise both views"
    assert got["std_amount_172800s"].isna().any() and got["std_amount_172800s"].notna().any()


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_the_streams_way_gives_the_training_set(
    defs: StreamDefinitions, tmp_path: Path, seed: int
) -> None:
    from stream_infer.streamdef.training import training_frame

    events, labels = history(seed)
    want = training_frame(defs, events, labels)
    schema = fastavro.parse_schema(PAYMENT_SCHEMA)
    records = []
    for row in events.to_dict("records"):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, {**row, "ts": row["ts"].to_pydatetime()})
        records.append(buffer.getvalue())
    decoder = build_decoder(defs.source)
    kernel = StreamKernel(defs)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(records)), size=12, replace=False))
    rows: list[np.ndarray] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(records)], strict=True):
        decoded = decoder.decode_batch(records[lo:hi])
        assert not decoded.refused
        batch = dict(decoded.columns)
        batch[SEQ_COLUMN] = np.arange(lo, hi, dtype=np.int64)  # the partition offset
        rows.append(kernel.evaluate(batch))
    stream = np.vstack(rows)
    aggs = [a for v in defs.stream_views for a in v.aggregations]
    for j, agg in enumerate(aggs):
        got, expected = stream[:, j], want[agg.feature].to_numpy()
        if agg.function in ("count", "min", "max"):
            np.testing.assert_array_equal(got, expected, err_msg=agg.feature)
        else:  # running sums add in another order than the reference: equal to rounding
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9, err_msg=agg.feature)


def test_avro_timestamps_are_decoded_to_the_training_sets_seconds(defs: StreamDefinitions) -> None:
    when = datetime(2026, 3, 1, 12, 30, 5, 999_000, tzinfo=UTC)
    buffer = io.BytesIO()
    row = {"payment_id": "x", "ts": when, "account_id": "a", "merchant_id": "m"}
    fastavro.schemaless_writer(
        buffer, fastavro.parse_schema(PAYMENT_SCHEMA), {**row, "amount": 1.5, "items": 2}
    )
    decoded = build_decoder(defs.source).decode_one(buffer.getvalue())
    assert decoded["ts"] == int(when.timestamp())  # floored to the second
    assert json.loads(defs.source.schema_text) == PAYMENT_SCHEMA
