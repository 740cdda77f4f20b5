"""Where Feast computes the same thing, it agrees with our training set (fraud example).

Feast 0.67 computes the plain fields (a point-in-time lookup), the on-demand views (the
repository's own python functions) and a batch view's rows joined point in time; it refuses
windowed aggregations offline (``aggregation_specs_to_agg_ops`` raises on ``time_window``), so
the customer windows have no Feast counterpart and are held to our reference elsewhere.

The label-derived rows go to Feast as a batch view, the way the service publishes them: one row
per (terminal, UTC day D) stamped D 00:00 UTC with a TTL just under a day, so a row serves its
own day only. Feast's file store drops an entity row timestamped before its entity's first
feature row: every (terminal, day) an event needs gets a row (zeros included), so none is
dropped, and the test asserts that every row came back.
"""

from __future__ import annotations

import shutil
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stream_infer.features.synthetic import synthetic_transactions
from stream_infer.streamdef.feast_reader import build_definitions, parse_feast_repo
from stream_infer.streamdef.reference import daily_features
from stream_infer.streamdef.spec import SECONDS_PER_DAY, StreamDefinitions
from stream_infer.streamdef.training import event_columns, training_frame

REPO = Path(__file__).resolve().parents[2] / "examples" / "fraud" / "feature_repo"


def daily_rows(defs: StreamDefinitions, ours: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Our label-derived rows for every (terminal, day) of an event: the batch view's source."""
    seconds = ours["tx_datetime"].astype("int64") // 1_000_000_000
    days = pd.DataFrame({"terminal_id": ours["terminal_id"], "day": seconds // SECONDS_PER_DAY})
    keys = days.drop_duplicates().reset_index(drop=True)
    midnight = (keys["day"] * SECONDS_PER_DAY).to_numpy()
    assert defs.label_source is not None
    probe = {"terminal_id": keys["terminal_id"].tolist(), "tx_datetime": midnight.tolist()}
    label_columns = {k: v.tolist() for k, v in event_columns(labels, defs.label_source).items()}
    rows = pd.DataFrame(daily_features(defs, probe, label_columns))
    rows.insert(0, "terminal_id", keys["terminal_id"])
    rows.insert(1, "event_timestamp", pd.to_datetime(midnight, unit="s", utc=True))
    return rows


def test_feast_get_historical_features_agrees(tmp_path: Path) -> None:
    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    contents = parse_feast_repo(repo)
    defs = build_definitions(contents)
    history = synthetic_transactions(n_customers=8, n_terminals=6, n_days=45, seed=7)
    history["transaction_id"] = history["transaction_id"].astype(str)
    history["customer_id"] = history["customer_id"].astype(str)
    history["terminal_id"] = history["terminal_id"].astype(str)
    ours = training_frame(defs, history, history)

    (repo / "data").mkdir()
    plain_path = repo / "data" / "transaction_fields.parquet"
    pd.DataFrame(
        {
            "transaction_id": ours["transaction_id"],
            "event_timestamp": ours["tx_datetime"],
            "tx_amount": history.set_index("transaction_id")
            .loc[ours["transaction_id"]]["tx_amount"]
            .to_numpy(),
        }
    ).to_parquet(plain_path)
    daily_path = repo / "data" / "terminal_daily_rows.parquet"
    daily_rows(defs, ours, history).to_parquet(daily_path)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
        from feast.types import Float64

        entities = {e.name: e for e in contents.entities if not e.name.startswith("__")}
        transaction = Entity(
            name="transaction", join_keys=["transaction_id"], value_type=ValueType.STRING
        )
        plain = FeatureView(
            name="transaction_fields",
            entities=[transaction],
            ttl=timedelta(seconds=1),
            schema=[Field(name="tx_amount", dtype=Float64)],
            source=FileSource(
                name="transaction_fields", path=str(plain_path), timestamp_field="event_timestamp"
            ),
        )
        (daily,) = defs.daily_views
        terminal_counts = FeatureView(  # the daily view's rows, under the daily view's name
            name=daily.name,
            entities=[entities["terminal"]],
            ttl=timedelta(days=1) - timedelta(microseconds=1),
            schema=[Field(name=a.feature, dtype=Float64) for a in daily.aggregations],
            source=FileSource(
                name="terminal_daily_rows", path=str(daily_path), timestamp_field="event_timestamp"
            ),
        )
        odfvs = list(contents.on_demand_feature_views)
        store = FeatureStore(repo_path=str(repo))
        store.apply([*entities.values(), transaction, plain, terminal_counts, *odfvs])

        entity_df = pd.DataFrame(
            {
                "transaction_id": ours["transaction_id"],
                "terminal_id": ours["terminal_id"],
                "event_timestamp": ours["tx_datetime"],
                # request data: the event's fields as stream-infer hands them to the views
                "tx_amount": history.set_index("transaction_id")
                .loc[ours["transaction_id"]]["tx_amount"]
                .to_numpy(),
                "tx_datetime": ours["tx_datetime"].astype("int64") // 1_000_000_000,
            }
        )
        on_demand = [f"{v.name}:{o.name}" for v in defs.on_demand for o in v.outputs]
        counts = [f"{daily.name}:{a.feature}" for a in daily.aggregations]
        plain_refs = ["transaction_fields:tx_amount"]
        theirs = store.get_historical_features(
            entity_df=entity_df, features=plain_refs + counts + on_demand, full_feature_names=True
        ).to_df()

    assert len(theirs) == len(ours), "Feast dropped entity rows"
    theirs = theirs.set_index("transaction_id").loc[ours["transaction_id"]]
    mine = ours.set_index("transaction_id")
    checked = 0
    for ref in plain_refs + counts + on_demand:
        view, name = ref.split(":")
        column = theirs[f"{view}__{name}"].to_numpy(dtype=np.float64)
        want = (
            history.set_index("transaction_id").loc[mine.index, "tx_amount"].to_numpy()
            if view == "transaction_fields"
            else mine[name].to_numpy(dtype=np.float64)
            if name in mine.columns
            else None
        )
        if want is None:  # a daily count the service does not name: ours by the reference
            continue
        np.testing.assert_array_equal(column, want, err_msg=ref)
        checked += 1
    # tx_amount, weekend, night; 3 counts and 3 risks of the service; the plain amount
    assert checked == 10
    assert not theirs.filter(like="__").isna().any().any()


@pytest.mark.parametrize("kind", ["count", "sum"])
def test_feast_refuses_windowed_aggregations_offline(kind: str) -> None:
    from feast.aggregation import Aggregation, aggregation_specs_to_agg_ops

    with pytest.raises(ValueError, match="windowed"):
        aggregation_specs_to_agg_ops(
            [Aggregation(column="x", function=kind, time_window=timedelta(days=1))],
            time_window_unsupported_error_message="windowed aggregations are not supported",
        )
