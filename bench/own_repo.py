"""The compiled feature step for a repository unlike the fraud example: issue 20's test
repository shape (the topic's entity plus a second one through a label-derived view; min, max,
stddev over a 10-minute and a 2-day window), declared as plain definitions (no Feast import).

``python -m bench.own_repo [--events N] [--passes P]``: synthetic payments (2,000 accounts,
500 merchants, one event a second on average, in time order), batches of 512, each pass from
empty state; prints the median µs an event of the stream kernel plus the daily rows (nothing
published: the worker's cost before labels arrive). ``make bench`` reports the same figure.

A benchmark, not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.streamdef_kernel import BATCH, MARGIN_S, median_us
from stream_infer.streamdef.daily import DailyRows
from stream_infer.streamdef.kernel import StreamKernel
from stream_infer.streamdef.spec import (
    SECONDS_PER_DAY,
    SEQ_COLUMN,
    AggSpec,
    DailyView,
    FieldSpec,
    SourceSpec,
    StreamDefinitions,
    StreamView,
)

Columns = dict[str, npt.NDArray[Any]]
_WINDOWS = (("10m", 600), ("2d", 2 * SECONDS_PER_DAY))


def definitions() -> StreamDefinitions:
    """Payments keyed by account; chargebacks keyed by merchant, one day behind."""
    payments = SourceSpec(
        name="payments",
        topic="payments",
        key_field="account_id",
        timestamp_field="ts",
        event_id_field="payment_id",
        fields=(
            FieldSpec("payment_id", "string"),
            FieldSpec("account_id", "string"),
            FieldSpec("merchant_id", "string"),
            FieldSpec("ts", "int64"),
            FieldSpec("amount", "float64"),
        ),
        format="avro",
        schema_text="{}",
    )
    chargebacks = SourceSpec(
        name="chargebacks",
        topic="chargebacks",
        key_field="merchant_id",
        timestamp_field="ts",
        event_id_field="payment_id",
        fields=(
            FieldSpec("payment_id", "string"),
            FieldSpec("merchant_id", "string"),
            FieldSpec("ts", "int64"),
            FieldSpec("charged_back", "float64"),
        ),
        format="avro",
        schema_text="{}",
    )
    stream = StreamView(
        "account_amounts",
        "payments",
        "account_id",
        tuple(
            AggSpec(f"{fn}_amount_{label}", "amount", fn, seconds)
            for label, seconds in _WINDOWS
            for fn in ("count", "mean", "min", "max", "stddev")
        ),
    )
    daily = DailyView(
        "merchant_chargebacks",
        "chargebacks",
        "merchant_id",
        "merchant_id",
        1,
        (
            AggSpec("merchant_nb_2d", "charged_back", "count", 2 * SECONDS_PER_DAY),
            AggSpec("merchant_chargeback_rate_2d", "charged_back", "mean", 2 * SECONDS_PER_DAY),
        ),
    )
    inputs = tuple(a.feature for a in stream.aggregations) + tuple(
        a.feature for a in daily.aggregations
    )
    return StreamDefinitions(payments, chargebacks, (stream,), (daily,), (), "payments_v1", inputs)


def payments(events: int, seed: int = 0) -> Columns:
    """Synthetic payments in time order (a few share a second)."""
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000 + np.cumsum(rng.poisson(1.0, events)).astype(np.int64)
    return {
        "payment_id": np.array([f"p{i}" for i in range(events)], dtype=object),
        "account_id": np.array([f"a{k}" for k in rng.integers(0, 2000, events)], dtype=object),
        "merchant_id": np.array([f"m{k}" for k in rng.integers(0, 500, events)], dtype=object),
        "ts": ts,
        "amount": np.round(rng.lognormal(3.0, 1.0, events), 2),
        SEQ_COLUMN: np.arange(events, dtype=np.int64),
    }


def feature_cost(events: int = 100_000, passes: int = 3) -> float:
    """Median µs an event of the kernel and the daily rows for :func:`definitions`."""
    defs = definitions()
    cols = payments(events)
    parts = [{k: v[i : i + BATCH] for k, v in cols.items()} for i in range(0, events, BATCH)]

    def make() -> Callable[[], object]:
        kernel = StreamKernel(defs, margin_s=MARGIN_S)
        daily = DailyRows(defs)
        return lambda: [(kernel.evaluate(b), daily.evaluate(b, {})) for b in parts]

    return median_us(passes, events, make)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    cost = feature_cost(args.events, args.passes)
    print(f"own repository (10 stream features, 2 daily): {cost:.2f} µs/event")


if __name__ == "__main__":
    main()
