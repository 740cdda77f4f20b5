"""stream-infer's Feast objects: entities, sources, views, the on-demand view and the service.

Feature names and their order come from :mod:`stream_infer.features.definitions`, the one place
the math lives; this file only says where each feature is stored and how it is served.

- ``customer_spending``: customer window features, computed in the stream (and in batch for
  training) and pushed through ``customer_spending_push``; one row per transaction.
- ``terminal_risk``: terminal window features, one row per terminal and UTC day D, stamped
  D 00:00 UTC. Its TTL is just under a day, so a row serves its own day and no other: a point-in-
  time lookup never falls back to an older day's row.
- ``request_flags``: the request-time features, from the transaction itself.
- ``fraud_model_v1``: the model's 15 inputs in its input order.

Ids are strings, as on the wire (:mod:`stream_infer.events`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

from stream_infer.features.definitions import (
    CUSTOMER_FEATURES,
    FEATURE_NAMES,
    REQUEST_FEATURES,
    TERMINAL_FEATURES,
    WINDOWS_DAYS,
)

CUSTOMER_SOURCE_PATH = "data/customer_spending.parquet"
TERMINAL_SOURCE_PATH = "data/terminal_risk.parquet"

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A card holder (the transactions topic's key).",
)
terminal = Entity(
    name="terminal",
    join_keys=["terminal_id"],
    value_type=ValueType.STRING,
    description="A payment terminal (the labels topic's key).",
)

customer_spending_source = FileSource(
    name="customer_spending_source",
    path=CUSTOMER_SOURCE_PATH,
    timestamp_field="event_timestamp",
    description="One row per transaction: its customer's windows at that transaction.",
)
customer_spending_push = PushSource(
    name="customer_spending_push",
    batch_source=customer_spending_source,
    description="The stream's customer rows, pushed in batches.",
)
customer_spending = FeatureView(
    name="customer_spending",
    entities=[customer],
    # A row older than the longest window describes an empty window: it is no longer true.
    ttl=timedelta(days=max(WINDOWS_DAYS)),
    schema=[
        Field(name="customer_id", dtype=String),
        *(Field(name=name, dtype=Float64) for name in CUSTOMER_FEATURES),
    ],
    source=customer_spending_push,
    online=True,
    description="Customer transaction counts and mean amounts over 1, 7 and 30 days.",
)

terminal_risk_source = FileSource(
    name="terminal_risk_source",
    path=TERMINAL_SOURCE_PATH,
    timestamp_field="event_timestamp",
    description="One row per (terminal, UTC day D), stamped D 00:00 UTC.",
)
terminal_risk = FeatureView(
    name="terminal_risk",
    entities=[terminal],
    # Feast keeps a row for entity times in [row time, row time + ttl]: 1 µs short of a day
    # means exactly day D for the row of day D, so a missing day is missing, never stale.
    ttl=timedelta(days=1) - timedelta(microseconds=1),
    schema=[
        Field(name="terminal_id", dtype=String),
        *(Field(name=name, dtype=Float64) for name in TERMINAL_FEATURES),
    ],
    source=terminal_risk_source,
    online=True,
    description="Terminal labelled-transaction counts and fraud rates, 7 days behind.",
)

# Request fields are named apart from the outputs: a request field called tx_amount would come
# back from get_historical_features as a second tx_amount column.
transaction_request = RequestSource(
    name="transaction_request",
    schema=[
        Field(name="amount", dtype=Float64),
        Field(name="epoch_seconds", dtype=Int64),
    ],
    description="The transaction being scored: its amount and its time in whole UTC seconds.",
)


@on_demand_feature_view(
    name="request_flags",
    sources=[transaction_request],
    schema=[Field(name=name, dtype=Float64) for name in REQUEST_FEATURES],
    mode="python",
    description="tx_amount, tx_during_weekend, tx_during_night, as the stream computes them.",
)
def request_flags(inputs: dict[str, Any]) -> dict[str, Any]:
    # Feast stores this function as source and runs it elsewhere: imports belong inside. The
    # math is the stream's own; every process that serves or trains installs stream_infer.
    from stream_infer.features.definitions import REQUEST_FEATURES, request_features

    rows = [
        request_features(int(seconds), float(amount))
        for seconds, amount in zip(inputs["epoch_seconds"], inputs["amount"], strict=True)
    ]
    return {name: [row[i] for row in rows] for i, name in enumerate(REQUEST_FEATURES)}


fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[request_flags, customer_spending, terminal_risk],
    description="The fraud model's inputs, in its input order: " + ", ".join(FEATURE_NAMES),
)
