"""The Feast repository end to end: apply (SQLite, Redis, the CLI), point-in-time retrieval
equal to the training set builder's features, Feast's silent row drops caught, push and
online reads.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stream_infer.features import feast_repo
from stream_infer.features.definitions import (
    CUSTOMER_FEATURES,
    FEATURE_NAMES,
    SECONDS_PER_DAY,
    TERMINAL_FEATURES,
)
from stream_infer.features.serving_frame import feature_frame
from stream_infer.features.synthetic import synthetic_transactions
from stream_infer.streamdef.feast_reader import load_definitions

REPO = Path(__file__).resolve().parents[2]
FEATURES_REPO = REPO / "features"

pytestmark = [
    # Feast warns on every apply that on-demand views are "experimental"; nothing to act on.
    pytest.mark.filterwarnings(
        "ignore:On demand feature view is an experimental feature:RuntimeWarning"
    ),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module", autouse=True)
def _feast_imported() -> None:
    # Feast's modules call warnings.simplefilter("once", ...) when imported, which would
    # override this suite's "error" filter for the rest of the test that imports them first.
    with warnings.catch_warnings():
        import feast.infra.offline_stores.dask
        import feast.infra.online_stores.redis
        import feast.infra.online_stores.sqlite
        import feast.repo_operations  # noqa: F401


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    """~500 transactions over 40 days, with same-second ties and paused customers."""
    tx = synthetic_transactions(n_customers=12, n_terminals=8, n_days=40, seed=5)
    return feature_frame(load_definitions(REPO / "examples" / "fraud" / "feature_repo"), tx)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the repository without its runtime data, plus a file .feastignore must hide."""
    target = tmp_path / "features"
    shutil.copytree(FEATURES_REPO, target, ignore=shutil.ignore_patterns("data", "__pycache__"))
    (target / "scratch").mkdir()
    (target / "scratch" / "boom.py").write_text("raise SystemExit('feast imported scratch/')\n")
    return target


@pytest.fixture
def redis_project(redis_url: str) -> Iterator[str]:
    """A project name of its own: Feast's Redis keys end with the project, so none collide."""
    import redis

    project = f"si_{uuid.uuid4().hex[:10]}"
    yield project
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{project}".encode(), count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def assert_same(got: pd.DataFrame, want: pd.DataFrame, names: tuple[str, ...]) -> None:
    diff = np.abs(got[list(names)].to_numpy(np.float64) - want[list(names)].to_numpy(np.float64))
    bad = ~(diff <= 1e-9)
    if bad.any():
        rows, cols = np.nonzero(bad)
        detail = [
            f"{got['transaction_id'].iloc[r]} {names[c]}: {got[names[c]].iloc[r]} != "
            f"{want[names[c]].iloc[r]}"
            for r, c in zip(rows[:20], cols[:20], strict=True)
        ]
        pytest.fail(f"{int(bad.sum())} values differ:\n" + "\n".join(detail))


def test_the_service_names_the_model_inputs_in_order(repo: Path) -> None:
    store = feast_repo.apply(repo)
    service = store.get_feature_service(feast_repo.FEATURE_SERVICE)
    names = [f.name for p in service.feature_view_projections for f in p.features]
    assert tuple(names) == FEATURE_NAMES
    assert {e.name: e.join_key for e in store.list_entities()} == {
        "customer": "customer_id",
        "terminal": "terminal_id",
    }
    push = store.get_data_source(feast_repo.CUSTOMER_PUSH_SOURCE)
    assert push.batch_source.path == str(feast_repo.CUSTOMER_SOURCE)
    # The source repository is untouched: runtime files went to the copy's data/ only.
    assert (repo / "data" / "registry.db").exists()
    assert not (FEATURES_REPO / "scratch").exists()


def test_historical_features_equal_the_offline_features(repo: Path, features: pd.DataFrame) -> None:
    feast_repo.write_offline_sources(features, repo)
    store = feast_repo.apply(repo)
    got = feast_repo.historical_features(store, feast_repo.entity_frame(features))
    assert got["transaction_id"].tolist() == features["transaction_id"].astype(str).tolist()
    assert not got[feast_repo.MISSING_COLUMN].any()
    assert_same(got, features, FEATURE_NAMES)
    # Not vacuous: same-second rows of one customer got different (their own) windows.
    ties = features.assign(s=features["event_timestamp"].dt.floor("s")).duplicated(
        ["customer_id", "s"]
    )
    assert ties.sum() >= 3


def test_rows_feast_drops_are_named_or_flagged(repo: Path, features: pd.DataFrame) -> None:
    feast_repo.write_offline_sources(features, repo)
    store = feast_repo.apply(repo)
    # Lose a customer's first two rows and one terminal day: Feast drops those entity rows.
    customers = feast_repo.customer_source_rows(features)
    first_two = customers.index[customers["customer_id"] == customers["customer_id"].iloc[0]][:2]
    customers.drop(first_two).to_parquet(repo / feast_repo.CUSTOMER_SOURCE, index=False)
    terminals = feast_repo.terminal_source_rows(features)
    gone = terminals.iloc[len(terminals) // 2]
    keep = (terminals["terminal_id"] != gone["terminal_id"]) | (
        terminals["event_timestamp"] != gone["event_timestamp"]
    )
    terminals[keep].to_parquet(repo / feast_repo.TERMINAL_SOURCE, index=False)
    entities = feast_repo.entity_frame(features)
    last = entities.index[-1]
    entities.loc[last, "terminal_id"] = "never-seen"  # no rows at all: NaN, not dropped

    lost_terminal_day = (entities["terminal_id"] == gone["terminal_id"]) & (
        entities["event_timestamp"].dt.floor("D") == gone["event_timestamp"]
    )
    dropped = set(customers.loc[first_two, "transaction_id"])
    dropped |= set(entities.loc[lost_terminal_day, "transaction_id"])
    assert len(dropped) >= 3

    with pytest.raises(feast_repo.FeastRowsMissingError, match="Feast dropped") as info:
        feast_repo.historical_features(store, entities)
    assert f"dropped {len(dropped - {entities.loc[last, 'transaction_id']})} of" in str(info.value)
    assert customers.loc[first_two[0], "transaction_id"] in str(info.value)

    flagged = feast_repo.historical_features(store, entities, on_missing="flag")
    assert flagged["transaction_id"].tolist() == entities["transaction_id"].tolist()
    missing = set(flagged.loc[flagged[feast_repo.MISSING_COLUMN], "transaction_id"])
    assert missing == dropped | {entities.loc[last, "transaction_id"]}
    fine = ~flagged[feast_repo.MISSING_COLUMN].to_numpy()
    assert_same(flagged[fine], features[fine], FEATURE_NAMES)


def test_entity_rows_feast_would_collapse_are_refused(repo: Path, features: pd.DataFrame) -> None:
    entities = feast_repo.entity_frame(features)
    entities.loc[1, ["customer_id", "event_timestamp"]] = entities.loc[
        0, ["customer_id", "event_timestamp"]
    ].to_numpy()
    with pytest.raises(ValueError, match="share customer_id and event_timestamp"):
        feast_repo.historical_features(object(), entities)


def push_and_read(store: Any, features: pd.DataFrame) -> None:
    """Push every customer row and one day's terminal rows; read the day's transactions back."""
    pushed = feast_repo.push_customer_rows(
        store, feast_repo.customer_source_rows(features), batch_size=100
    )
    assert pushed == len(features)
    day = features["event_timestamp"].dt.floor("D")
    last_day = day.max()
    written = feast_repo.write_terminal_rows(store, feast_repo.terminal_source_rows(features))
    assert written == features["terminal_id"].nunique()
    # The online store keeps each customer's latest row: customers whose last transaction is
    # on the last day are served exactly that transaction's features.
    last_rows = features.groupby("customer_id").tail(1)
    latest = last_rows[last_rows["event_timestamp"].dt.floor("D") == last_day]
    assert len(latest) >= 3
    seconds = latest["event_timestamp"].astype("int64") // 1_000_000_000
    got = feast_repo.online_features(
        store,
        latest["customer_id"].tolist(),
        latest["terminal_id"].tolist(),
        latest["tx_amount"].tolist(),
        seconds.tolist(),
    )
    want = latest.reset_index(drop=True)
    assert_same(got.assign(transaction_id=want["transaction_id"]), want, FEATURE_NAMES)
    assert got["terminal_day_ok"].all()
    # A transaction a day later must not be served the previous day's terminal row.
    later = feast_repo.online_features(
        store,
        latest["customer_id"].tolist()[:1],
        latest["terminal_id"].tolist()[:1],
        [1.0],
        [int(seconds.iloc[0]) + SECONDS_PER_DAY],
    )
    assert not later["terminal_day_ok"].any()
    unknown = feast_repo.online_features(store, ["nobody"], ["nowhere"], [1.0], [0])
    assert unknown[list(CUSTOMER_FEATURES + TERMINAL_FEATURES)].isna().all(axis=None)
    assert unknown["tx_during_night"].tolist() == [1.0]


def test_push_then_online_features_on_sqlite(repo: Path, features: pd.DataFrame) -> None:
    store = feast_repo.apply(repo)
    push_and_read(store, features)


def test_apply_push_and_online_features_on_redis(
    repo: Path, features: pd.DataFrame, redis_url: str, redis_project: str
) -> None:
    import redis

    store = feast_repo.apply(repo, redis_url=redis_url, project=redis_project)
    assert store.config.online_store.type == "redis"
    assert (repo / "data" / "registry-redis.db").exists()
    yaml = (repo / "feature_store.yaml").read_text()
    assert yaml == (FEATURES_REPO / "feature_store.yaml").read_text()
    push_and_read(store, features)
    client = redis.Redis.from_url(redis_url)
    try:
        assert any(client.scan_iter(match=f"*{redis_project}".encode(), count=1000))
        feast_repo.teardown(store)
        assert not any(client.scan_iter(match=f"*{redis_project}".encode(), count=1000))
    finally:
        client.close()


def test_the_feast_cli_applies_the_repository(repo: Path) -> None:
    feast = Path(sys.executable).with_name("feast")
    done = subprocess.run(
        [str(feast), "apply"], cwd=repo, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "feature service fraud_model_v1" in done.stdout
    assert "scratch" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "when",
    [
        "2026-04-04 06:59:59",  # Saturday, night
        "2026-04-05 07:00:00",  # Sunday, day
        "2026-04-06 00:00:00",  # Monday, night
        "2026-04-03 23:59:59",  # Friday, day
    ],
)
def test_request_flags_agree_with_the_definitions(repo: Path, when: str) -> None:
    from stream_infer.features.definitions import request_features

    store = feast_repo.apply(repo)
    seconds = int(pd.Timestamp(when, tz="UTC").timestamp())
    got = feast_repo.online_features(store, ["c"], ["t"], [12.5], [seconds])
    assert tuple(got[list(FEATURE_NAMES[:3])].iloc[0]) == request_features(seconds, 12.5)


def test_training_frame_via_feast_equals_the_direct_one(repo: Path) -> None:
    from stream_infer.config import load_settings

    raw = synthetic_transactions(n_customers=8, n_terminals=5, n_days=35, seed=9)
    settings = load_settings(features={"feast_repo_dir": str(repo)})
    frame = feast_repo.training_frame_via_feast(raw, settings)
    direct = feature_frame(load_definitions(settings.features.repo_dir), raw)
    assert len(frame) == len(raw)
    assert frame["transaction_id"].tolist() == direct["transaction_id"].tolist()
    labels = raw.set_index(raw["transaction_id"].astype(str))["tx_fraud"]
    assert frame["tx_fraud"].tolist() == labels.loc[frame["transaction_id"]].tolist()
    assert_same(frame, direct, FEATURE_NAMES)
