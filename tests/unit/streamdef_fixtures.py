"""Stream definitions written as spec objects (no Feast), and event columns, for the reference
and kernel tests.

:func:`fraud_definitions` is the fraud example as the design declares it: ``customer_spending``
(count and mean of ``tx_amount`` over 1, 7 and 30 days), the daily view ``terminal_counts``
(count and sum of ``tx_fraud`` over 1, 7 and 30 days, 7 days behind), and the on-demand views
``request_flags`` and ``terminal_risk``; its service's inputs are today's 15 features in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from stream_infer.features.definitions import FEATURE_NAMES, SECONDS_PER_DAY, WINDOWS_DAYS
from stream_infer.streamdef.spec import (
    SEQ_COLUMN,
    AggSpec,
    DailyView,
    FieldSpec,
    OnDemandView,
    SourceSpec,
    StreamDefinitions,
    StreamView,
    ValueKind,
)


def source(name: str, key: str, fields: Mapping[str, ValueKind]) -> SourceSpec:
    """A JSON source with an ``id`` event id and a ``ts`` timestamp besides ``fields``."""
    kinds: dict[str, ValueKind] = {"id": "string", "ts": "int64", key: "string", **fields}
    return SourceSpec(
        name=name,
        topic=name,
        key_field=key,
        timestamp_field="ts",
        event_id_field="id",
        fields=tuple(FieldSpec(k, v) for k, v in kinds.items()),
        format="json",
        schema_text="{}",
    )


def stream_only(src: SourceSpec, aggs: Sequence[AggSpec]) -> StreamDefinitions:
    """One stream view with ``aggs`` over ``src``; the service asks for all of them."""
    view = StreamView("view", src.name, src.key_field, tuple(aggs))
    return StreamDefinitions(src, None, (view,), (), (), "svc", tuple(a.feature for a in aggs))


def _flags(cols: dict[str, list[Any]]) -> dict[str, list[Any]]:
    secs = cols["tx_datetime"]
    return {
        "tx_amount": list(cols["tx_amount"]),
        "tx_during_weekend": [1.0 if (s // SECONDS_PER_DAY + 3) % 7 >= 5 else 0.0 for s in secs],
        "tx_during_night": [1.0 if (s % SECONDS_PER_DAY) // 3600 <= 6 else 0.0 for s in secs],
    }


def _risk(cols: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {
        f"terminal_risk_{n}d": [
            s / c if c else 0.0
            for s, c in zip(cols[f"terminal_fraud_{n}d"], cols[f"terminal_nb_tx_{n}d"], strict=True)
        ]
        for n in WINDOWS_DAYS
    }


def fraud_definitions() -> StreamDefinitions:
    """The fraud example's 15 features as stream definitions."""
    tx = SourceSpec(
        name="transactions",
        topic="transactions",
        key_field="customer_id",
        timestamp_field="tx_datetime",
        event_id_field="transaction_id",
        fields=(
            FieldSpec("transaction_id", "string"),
            FieldSpec("tx_datetime", "int64"),
            FieldSpec("customer_id", "string"),
            FieldSpec("terminal_id", "string"),
            FieldSpec("tx_amount", "float64"),
        ),
        format="json",
        schema_text="{}",
    )
    labels = SourceSpec(
        name="labels",
        topic="transaction-labels",
        key_field="terminal_id",
        timestamp_field="tx_datetime",
        event_id_field="transaction_id",
        fields=(
            FieldSpec("transaction_id", "string"),
            FieldSpec("tx_datetime", "int64"),
            FieldSpec("terminal_id", "string"),
            FieldSpec("tx_fraud", "int64"),
        ),
        format="json",
        schema_text="{}",
    )
    customer = StreamView(
        "customer_spending",
        "transactions",
        "customer_id",
        tuple(
            agg
            for n in WINDOWS_DAYS
            for agg in (
                AggSpec(f"customer_nb_tx_{n}d", "tx_amount", "count", n * SECONDS_PER_DAY),
                AggSpec(f"customer_avg_amount_{n}d", "tx_amount", "mean", n * SECONDS_PER_DAY),
            )
        ),
    )
    terminal = DailyView(
        "terminal_counts",
        "labels",
        "terminal_id",
        "terminal_id",
        7,
        tuple(
            agg
            for n in WINDOWS_DAYS
            for agg in (
                AggSpec(f"terminal_nb_tx_{n}d", "tx_fraud", "count", n * SECONDS_PER_DAY),
                AggSpec(f"terminal_fraud_{n}d", "tx_fraud", "sum", n * SECONDS_PER_DAY),
            )
        ),
    )
    flags = OnDemandView(
        "request_flags",
        ("tx_amount", "tx_datetime"),
        tuple(
            FieldSpec(n, "float64") for n in ("tx_amount", "tx_during_weekend", "tx_during_night")
        ),
        _flags,
    )
    risk = OnDemandView(
        "terminal_risk",
        tuple(f for n in WINDOWS_DAYS for f in (f"terminal_nb_tx_{n}d", f"terminal_fraud_{n}d")),
        tuple(FieldSpec(f"terminal_risk_{n}d", "float64") for n in WINDOWS_DAYS),
        _risk,
    )
    return StreamDefinitions(
        tx, labels, (customer,), (terminal,), (flags, risk), "fraud_model_v1", FEATURE_NAMES
    )


def fraud_columns(frame: pd.DataFrame) -> dict[str, npt.NDArray[Any]]:
    """A simulated history (``synthetic_transactions``' columns) as event columns in row order,
    ``SEQ_COLUMN`` the row index; ``tx_fraud`` rides along for the label side."""

    def strings(col: str) -> npt.NDArray[np.object_]:
        out = np.empty(len(frame), dtype=object)
        out[:] = [str(v) for v in frame[col]]
        return out

    return {
        "transaction_id": strings("transaction_id"),
        "tx_datetime": np.asarray(
            frame["tx_datetime"].astype("int64") // 1_000_000_000, dtype=np.int64
        ),
        "customer_id": strings("customer_id"),
        "terminal_id": strings("terminal_id"),
        "tx_amount": np.asarray(frame["tx_amount"], dtype=np.float64),
        "tx_fraud": np.asarray(frame["tx_fraud"], dtype=np.int64),
        SEQ_COLUMN: np.arange(len(frame), dtype=np.int64),
    }


def batch(columns: Mapping[str, npt.NDArray[Any]], lo: int, hi: int) -> dict[str, Any]:
    """Rows ``[lo, hi)`` of every column."""
    return {k: v[lo:hi] for k, v in columns.items()}
