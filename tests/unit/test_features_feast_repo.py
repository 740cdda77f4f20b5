"""The Feast helpers that need no Feast: connection strings, source rows, entity frames."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from stream_infer.features import feast_repo
from stream_infer.features.definitions import CUSTOMER_FEATURES, SECONDS_PER_DAY, TERMINAL_FEATURES
from stream_infer.features.serving_frame import feature_frame
from stream_infer.features.synthetic import synthetic_transactions

from .fraud_defs import fraud_defs


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    tx = synthetic_transactions(n_customers=10, n_terminals=6, n_days=20)
    return feature_frame(fraud_defs(), tx)


def test_importing_the_module_does_not_import_feast() -> None:
    code = "import sys, stream_infer.features.feast_repo; sys.exit('feast' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "127.0.0.1:6379,db=0"),
        ("redis://cache", "cache:6379"),
        (
            "rediss://app:p%40ss@cache.internal:6380/3",
            "cache.internal:6380,db=3,username=app,password=p@ss,ssl=true",
        ),
    ],
)
def test_redis_urls_become_feast_connection_strings(url: str, expected: str) -> None:
    assert feast_repo.redis_connection_string(url) == expected


@pytest.mark.parametrize("url", ["http://cache:6379", "redis://:a%2Cb@cache", "cache:6379"])
def test_unusable_redis_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"redis://|comma"):
        feast_repo.redis_connection_string(url)


def test_terminal_source_has_each_transactions_own_day(features: pd.DataFrame) -> None:
    rows = feast_repo.terminal_source_rows(features)
    assert not rows.duplicated(["terminal_id", "event_timestamp"]).any()
    assert (rows["event_timestamp"] == rows["event_timestamp"].dt.floor("D")).all()
    joined = features.assign(
        terminal_id=features["terminal_id"].astype(str),
        event_timestamp=features["event_timestamp"].dt.floor("D"),
    ).merge(rows, on=["terminal_id", "event_timestamp"], suffixes=("", "_row"), validate="m:1")
    assert len(joined) == len(features)
    for name in TERMINAL_FEATURES:
        assert (joined[name] == joined[f"{name}_row"]).all(), name


def test_customer_source_and_entity_frame_use_string_ids(features: pd.DataFrame) -> None:
    rows = feast_repo.customer_source_rows(features)
    assert list(rows.columns) == [
        "transaction_id",
        "customer_id",
        "event_timestamp",
        *CUSTOMER_FEATURES,
    ]
    entities = feast_repo.entity_frame(features)
    assert list(entities.columns) == [
        *feast_repo.ENTITY_COLUMNS,
        feast_repo.AMOUNT_FIELD,
        feast_repo.EPOCH_SECONDS_FIELD,
    ]
    for frame, col in ((rows, "customer_id"), (entities, "terminal_id")):
        assert frame[col].map(type).eq(str).all()
    seconds = entities[feast_repo.EPOCH_SECONDS_FIELD].to_numpy()
    stamps = features["event_timestamp"].dt.floor("s").astype("int64").to_numpy() // 10**9
    assert np.array_equal(seconds, stamps)
    assert (seconds // SECONDS_PER_DAY).min() > 0


def test_historical_features_refuses_repeated_transactions(features: pd.DataFrame) -> None:
    entities = feast_repo.entity_frame(features)
    twice = pd.concat([entities, entities.head(1)], ignore_index=True)
    with pytest.raises(ValueError, match="transaction_id values repeat"):
        feast_repo.historical_features(object(), twice)


def test_separate_labels_give_the_frame_of_labelled_transactions() -> None:
    tx = synthetic_transactions(n_customers=8, n_terminals=5, n_days=35, seed=9)
    own = feature_frame(fraud_defs(), tx)
    # Labels by id only, repeated (at-least-once), and one transaction never labelled.
    labels = tx[["transaction_id", "tx_fraud"]]
    labels = pd.concat([labels, labels.head(50)], ignore_index=True)
    unlabelled = tx.drop(columns="tx_fraud")
    separate = feature_frame(fraud_defs(), unlabelled, labels)
    pd.testing.assert_frame_equal(separate, own)
    assert own["terminal_nb_tx_30d"].max() > 0  # not vacuous: the labels were read
    assert own["event_timestamp"].is_unique and own["transaction_id"].is_unique
    with pytest.raises(ValueError, match="unknown transactions"):
        feature_frame(fraud_defs(), unlabelled, labels.assign(transaction_id="nope"))
