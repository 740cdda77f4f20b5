"""The card-fraud example, declared in Feast: what stream-infer computes, and how it is named.

- ``transactions`` (Kafka, JSON, key ``customer_id``): one event per card transaction.
- ``customer_spending``: per customer, the count and mean of ``tx_amount`` over the last 1, 7
  and 30 days, the transaction itself included (computed in the stream, exact to the second).
- ``transaction_labels`` (Kafka, JSON, key ``terminal_id``): each transaction's fraud label,
  published 7 days after it.
- ``terminal_counts`` (``stream_infer.kind = daily``): per terminal, the labelled transactions
  and the frauds among them on the whole UTC days ``[D - 7 - n, D - 7)`` for an event on day D,
  joined to the event by its ``terminal_id``.
- ``request_flags`` and ``terminal_risk``: on-demand views over the event and those counts.
- ``fraud_model_v1``: the model's 15 inputs, in its input order.

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
from feast.types import Float64, Int64

WINDOWS_DAYS = (1, 7, 30)
LABEL_DELAY_DAYS = 7

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

# A JSON Schema of the events; tx_datetime is an RFC 3339 date-time string on the wire.
TRANSACTION_SCHEMA = {
    "type": "object",
    "properties": {
        "transaction_id": {"type": "string", "maxLength": 128},
        "tx_datetime": {"type": "string", "format": "date-time"},
        "customer_id": {"type": "string", "maxLength": 128},
        "terminal_id": {"type": "string", "maxLength": 128},
        "tx_amount": {"type": "number", "minimum": 0, "maximum": 1e9},
    },
    "required": ["transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount"],
}
LABEL_SCHEMA = {
    "type": "object",
    "properties": {
        "transaction_id": {"type": "string"},
        "tx_datetime": {"type": "string", "format": "date-time"},
        "terminal_id": {"type": "string"},
        "tx_fraud": {"type": "integer"},
    },
    "required": ["transaction_id", "tx_datetime", "terminal_id", "tx_fraud"],
}

transactions = KafkaSource(
    name="transactions",
    kafka_bootstrap_servers="localhost:9092",
    topic="transactions",
    timestamp_field="tx_datetime",
    message_format=JsonFormat(schema_json=json.dumps(TRANSACTION_SCHEMA)),
    batch_source=FileSource(
        name="transactions_history",
        path="data/transactions.parquet",
        timestamp_field="tx_datetime",
    ),
    tags={"stream_infer.event_id": "transaction_id"},
    description="Card transactions, keyed by customer_id.",
)
transaction_labels = KafkaSource(
    name="transaction_labels",
    kafka_bootstrap_servers="localhost:9092",
    topic="transaction-labels",
    timestamp_field="tx_datetime",
    message_format=JsonFormat(schema_json=json.dumps(LABEL_SCHEMA)),
    batch_source=FileSource(
        name="transaction_labels_history",
        path="data/transaction_labels.parquet",
        timestamp_field="tx_datetime",
    ),
    tags={"stream_infer.event_id": "transaction_id"},
    description="Fraud labels, 7 days after their transaction, keyed by terminal_id.",
)

customer_spending = StreamFeatureView(
    name="customer_spending",
    source=transactions,
    entities=[customer],
    timestamp_field="tx_datetime",
    schema=[
        Field(name=f"customer_{kind}_{n}d", dtype=Float64)
        for n in WINDOWS_DAYS
        for kind in ("nb_tx", "avg_amount")
    ],
    aggregations=[
        agg
        for n in WINDOWS_DAYS
        for agg in (
            Aggregation(
                column="tx_amount",
                function="count",
                time_window=timedelta(days=n),
                name=f"customer_nb_tx_{n}d",
            ),
            Aggregation(
                column="tx_amount",
                function="mean",
                time_window=timedelta(days=n),
                name=f"customer_avg_amount_{n}d",
            ),
        )
    ],
    online=True,
    description="Customer transaction counts and mean amounts over 1, 7 and 30 days.",
)

terminal_counts = StreamFeatureView(
    name="terminal_counts",
    source=transaction_labels,
    entities=[terminal],
    timestamp_field="tx_datetime",
    schema=[
        Field(name=f"terminal_{kind}_{n}d", dtype=Float64)
        for n in WINDOWS_DAYS
        for kind in ("nb_tx", "nb_fraud")
    ],
    aggregations=[
        agg
        for n in WINDOWS_DAYS
        for agg in (
            Aggregation(
                column="tx_fraud",
                function="count",
                time_window=timedelta(days=n),
                name=f"terminal_nb_tx_{n}d",
            ),
            Aggregation(
                column="tx_fraud",
                function="sum",
                time_window=timedelta(days=n),
                name=f"terminal_nb_fraud_{n}d",
            ),
        )
    ],
    tags={
        "stream_infer.kind": "daily",
        "stream_infer.delay_days": str(LABEL_DELAY_DAYS),
        "stream_infer.join_field": "terminal_id",
    },
    online=True,
    description="Terminal labelled transactions and frauds, whole days, 7 days behind.",
)

# The event's own fields, as stream-infer hands them to on-demand views: the timestamp field
# in whole UTC epoch seconds.
transaction_request = RequestSource(
    name="transaction_request",
    schema=[
        Field(name="tx_amount", dtype=Float64),
        Field(name="tx_datetime", dtype=Int64),
    ],
    description="The transaction being scored.",
)


# Both on-demand views are tagged ``stream_infer.vectorized``: the stream hands them numpy
# arrays (one call a batch, no Python per event); Feast's python mode hands them lists, which
# numpy.asarray takes as well, so both compute the same values.
@on_demand_feature_view(
    name="request_flags",
    sources=[transaction_request],
    schema=[
        Field(name="tx_amount", dtype=Float64),
        Field(name="tx_during_weekend", dtype=Float64),
        Field(name="tx_during_night", dtype=Float64),
    ],
    mode="python",
    description="The amount; 1.0 on a UTC Saturday or Sunday; 1.0 at UTC hours 0 to 6.",
    tags={"stream_infer.vectorized": "true"},
)
def request_flags(inputs: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    day = 86_400
    seconds = np.asarray(inputs["tx_datetime"], dtype=np.int64)
    out = {
        "tx_amount": np.asarray(inputs["tx_amount"], dtype=np.float64),
        # 1970-01-01 was a Thursday: (day number + 3) % 7 is 0 on Mondays, 5 and 6 on weekends.
        "tx_during_weekend": ((seconds // day + 3) % 7 >= 5).astype(np.float64),
        "tx_during_night": ((seconds % day) // 3600 <= 6).astype(np.float64),
    }
    # Lists in (Feast's python mode): lists out, as Feast infers the schema from them.
    if isinstance(inputs["tx_datetime"], list):
        return {name: values.tolist() for name, values in out.items()}
    return out


@on_demand_feature_view(
    name="terminal_risk",
    sources=[terminal_counts],
    schema=[Field(name=f"terminal_risk_{n}d", dtype=Float64) for n in WINDOWS_DAYS],
    mode="python",
    description="The fraction of a terminal's labelled transactions that were fraud (0 if none).",
    tags={"stream_infer.vectorized": "true"},
)
def terminal_risk(inputs: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {}
    for n in (1, 7, 30):
        counts = np.asarray(inputs[f"terminal_nb_tx_{n}d"], dtype=np.float64)
        frauds = np.asarray(inputs[f"terminal_nb_fraud_{n}d"], dtype=np.float64)
        safe = np.where(counts != 0, counts, 1.0)
        out[f"terminal_risk_{n}d"] = np.where(counts != 0, frauds / safe, 0.0)
    # Lists in (Feast's python mode): lists out, as Feast infers the schema from them.
    if isinstance(inputs["terminal_nb_tx_1d"], list):
        return {name: values.tolist() for name, values in out.items()}
    return out


# The model's inputs in its input order: projections interleave counts and risks.
fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[
        request_flags,
        customer_spending,
        terminal_counts[["terminal_nb_tx_1d"]],
        terminal_risk[["terminal_risk_1d"]],
        terminal_counts[["terminal_nb_tx_7d"]],
        terminal_risk[["terminal_risk_7d"]],
        terminal_counts[["terminal_nb_tx_30d"]],
        terminal_risk[["terminal_risk_30d"]],
    ],
    description="The fraud model's 15 inputs, in its input order.",
)
