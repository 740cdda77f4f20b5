"""The fraud example declared as stream definitions gives exactly today's hand-written features.

Customer windows: the compiled kernel (in batches, with eviction and reload) against
:class:`~stream_infer.features.definitions.CustomerHistory` fed one event at a time, bit for
bit. Terminal windows: the daily view's count and sum from day partials, then the on-demand
``terminal_risk``, against :func:`~stream_infer.features.definitions.terminal_features`.
Request features: the on-demand ``request_flags`` against ``request_matrix``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from stream_infer.features.definitions import (
    CUSTOMER_FEATURES,
    SECONDS_PER_DAY,
    TERMINAL_FEATURES,
    CustomerHistory,
    request_matrix,
    terminal_features,
)
from stream_infer.features.synthetic import synthetic_transactions
from stream_infer.streamdef import reference
from stream_infer.streamdef.daily import DailyRows, day_partials
from stream_infer.streamdef.kernel import StreamKernel
from stream_infer.streamdef.ondemand import apply_on_demand
from stream_infer.streamdef.spec import SEQ_COLUMN
from tests.unit.streamdef_fixtures import batch, fraud_columns, fraud_definitions


@pytest.fixture(scope="module")
def columns() -> dict[str, npt.NDArray[Any]]:
    # Ties (5 % of rows share a customer and a second), pauses longer than 30 days, and times
    # on exact window edges: every branch of the kernel runs.
    return fraud_columns(synthetic_transactions(n_customers=40, n_terminals=30, n_days=45))


def customer_history(cols: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float64]:
    hists: dict[str, CustomerHistory] = {}
    rows = []
    for cid, t, seq, amount, tid in zip(
        cols["customer_id"].tolist(),
        cols["tx_datetime"].tolist(),
        cols[SEQ_COLUMN].tolist(),
        cols["tx_amount"].tolist(),
        cols["transaction_id"].tolist(),
        strict=True,
    ):
        hist = hists.setdefault(cid, CustomerHistory())
        rows.append(hist.features_at(hist.add(t, seq, amount, tid)))
    return np.array(rows, dtype=np.float64)


def test_customer_windows_equal_customer_history_bit_for_bit(
    columns: dict[str, npt.NDArray[Any]],
) -> None:
    defs = fraud_definitions()
    assert defs.stream_features() == CUSTOMER_FEATURES
    kernel = StreamKernel(defs)
    n = len(columns["transaction_id"])
    parts = []
    for i, lo in enumerate(range(0, n, 97)):
        part = batch(columns, lo, min(n, lo + 97))
        parts.append(kernel.evaluate(part))
        for key in part["customer_id"].tolist()[:: 7 + i % 5]:  # evict a few, reload them
            if key in kernel:
                kernel.load_entity(key, kernel.export_entity(key))
    got = np.concatenate(parts)
    np.testing.assert_array_equal(got, customer_history(columns))
    # The reference sums each window afresh: counts exact, means to rounding.
    want = reference.stream_features(defs, {k: v[:2000] for k, v in columns.items()})
    ref = np.array([want[f] for f in CUSTOMER_FEATURES]).T
    np.testing.assert_array_equal(got[:2000, 0::2], ref[:, 0::2])
    np.testing.assert_allclose(got[:2000, 1::2], ref[:, 1::2], rtol=1e-12)


def test_terminal_and_request_features_equal_the_hand_written_ones(
    columns: dict[str, npt.NDArray[Any]],
) -> None:
    defs = fraud_definitions()
    labels = {k: columns[k] for k in ("transaction_id", "tx_datetime", "terminal_id", "tx_fraud")}
    daily = DailyRows(defs).evaluate(columns, day_partials(defs, labels))
    features = dict(zip(defs.daily_features(), daily.T, strict=True))
    on_demand = apply_on_demand(defs.on_demand, columns, features, len(daily))

    counts: dict[str, dict[int, tuple[int, int]]] = {}
    for term, t, fraud in zip(
        labels["terminal_id"].tolist(),
        labels["tx_datetime"].tolist(),
        labels["tx_fraud"].tolist(),
        strict=True,
    ):
        day = t // SECONDS_PER_DAY
        nb, fr = counts.setdefault(term, {}).get(day, (0, 0))
        counts[term][day] = (nb + 1, fr + fraud)
    want = np.array(
        [
            terminal_features(counts.get(term, {}), t // SECONDS_PER_DAY)
            for term, t in zip(
                columns["terminal_id"].tolist(), columns["tx_datetime"].tolist(), strict=True
            )
        ]
    )
    got = np.column_stack(
        [features[f] if f in features else on_demand[f] for f in TERMINAL_FEATURES]
    )
    assert want[:, 0].max() > 0  # some terminals have labelled days in their windows
    np.testing.assert_array_equal(got, want)
    request = np.column_stack(
        [on_demand[f] for f in ("tx_amount", "tx_during_weekend", "tx_during_night")]
    )
    np.testing.assert_array_equal(
        request, request_matrix(columns["tx_datetime"], columns["tx_amount"])
    )
