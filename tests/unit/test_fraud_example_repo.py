"""The fraud example declared in Feast (examples/fraud/feature_repo) is today's 15 features.

- read through Feast's objects, its service names today's 15 inputs in today's order;
- ``feast apply`` accepts it offline (a real CLI call in a copy; no broker);
- its on-demand functions compute what stream_infer.features.definitions computes;
- its training set (the stream's kernel) equals the row-by-row reference evaluator's.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.features.definitions import FEATURE_NAMES, request_features
from stream_infer.features.synthetic import synthetic_transactions
from stream_infer.streamdef.feast_reader import load_definitions
from stream_infer.streamdef.spec import StreamDefinitions
from stream_infer.streamdef.training import training_frame

REPO = Path(__file__).resolve().parents[2] / "examples" / "fraud" / "feature_repo"


@pytest.fixture(scope="module")
def defs() -> StreamDefinitions:
    return load_definitions(REPO)


def test_the_service_names_todays_15_inputs_in_order(defs: StreamDefinitions) -> None:
    assert defs.service == "fraud_model_v1"
    assert defs.inputs == FEATURE_NAMES
    assert defs.source.topic == "transactions"
    assert (defs.source.key_field, defs.source.event_id_field) == ("customer_id", "transaction_id")
    assert defs.label_source is not None and defs.label_source.key_field == "terminal_id"
    (daily,) = defs.daily_views
    assert (daily.delay_days, daily.join_field) == (7, "terminal_id")


def test_feast_apply_accepts_it_offline(tmp_path: Path) -> None:
    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    feast = Path(sys.executable).parent / "feast"
    done = subprocess.run(
        [str(feast), "apply"], cwd=repo, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for line in (
        "Created stream feature view customer_spending",
        "Created stream feature view terminal_counts",
        "Created on demand feature view request_flags",
        "Created on demand feature view terminal_risk",
        "Created feature service fraud_model_v1",
    ):
        assert line in done.stdout


@settings(max_examples=200, deadline=None)
@given(
    seconds=st.lists(st.integers(0, 4_102_444_800), min_size=1, max_size=20),
    amount=st.floats(0, 1e9, allow_nan=False),
)
def test_request_flags_is_todays_request_math(
    defs: StreamDefinitions, seconds: list[int], amount: float
) -> None:
    view = next(v for v in defs.on_demand if v.name == "request_flags")
    got = view.function({"tx_amount": [amount] * len(seconds), "tx_datetime": seconds})
    for i, s in enumerate(seconds):
        row = tuple(got[o.name][i] for o in view.outputs)
        assert row == request_features(s, amount)


def test_terminal_risk_is_frauds_over_count_and_0_without_labels(defs: StreamDefinitions) -> None:
    view = next(v for v in defs.on_demand if v.name == "terminal_risk")
    counts = [0.0, 4.0, 3.0]
    frauds = [0.0, 1.0, 3.0]
    inputs = {
        f"terminal_{kind}_{n}d": values
        for n in (1, 7, 30)
        for kind, values in (("nb_tx", counts), ("nb_fraud", frauds))
    }
    got = view.function(inputs)
    for n in (1, 7, 30):
        assert got[f"terminal_risk_{n}d"] == [0.0, 0.25, 1.0]


def test_its_training_set_is_the_reference_evaluators(defs: StreamDefinitions) -> None:
    history = synthetic_transactions(n_customers=8, n_terminals=6, n_days=45, seed=5)
    want = training_frame(defs, history, history, reference=True).set_index("transaction_id")
    got = training_frame(defs, history, history).set_index("transaction_id")
    assert got.index.tolist() == want.index.tolist()
    assert sorted(got.index) == sorted(history["transaction_id"].astype(str))
    for name in FEATURE_NAMES:
        if "avg" in name:  # a mean's sum is taken in another order: equal to rounding
            np.testing.assert_allclose(got[name], want[name], rtol=1e-12, err_msg=name)
        else:
            assert got[name].tolist() == want[name].tolist(), name
    assert (
        got["tx_fraud"].tolist()
        == history.set_index(history["transaction_id"].astype(str))["tx_fraud"]
        .loc[got.index]
        .tolist()
    )
    assert not any(math.isnan(v) for v in got[list(FEATURE_NAMES)].to_numpy().ravel())
    assert got["terminal_nb_tx_30d"].max() > 0  # not vacuous: the daily view read labels
    times = pd.to_datetime(history.set_index(history["transaction_id"].astype(str))["tx_datetime"])
    assert (got["tx_datetime"] == times.loc[got.index].dt.tz_localize("UTC").dt.floor("s")).all()
