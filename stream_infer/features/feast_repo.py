"""The Feast repository (``features/``), driven from Python: apply, sources, training, serving.

``import feast`` takes about 9 s, so nothing here imports it until a function needs it. The
repository folder is never edited: a Redis online store (or another project name) is an
in-memory :class:`feast.RepoConfig` built from its ``feature_store.yaml``; only the runtime
folder ``data/`` (registry, SQLite online store, parquet sources; not tracked) is written.

Point-in-time joins on the file offline store lose rows silently: an entity row is dropped when
its entity has feature rows but none in ``[t - ttl, t]`` (e.g. timestamped before the entity's
first row), and entity rows sharing keys and time are collapsed into one. Rows of an entity
with no feature rows at all come back with NaN features. :func:`historical_features` re-aligns
the result on ``transaction_id`` and raises, or flags the rows (``feast_missing``), when any row
lost a feature; entity frames from :func:`entity_frame` have times distinct per second
(:func:`~stream_infer.features.serving_frame.event_timestamps`), so nothing is collapsed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from stream_infer.features.definitions import (
    CUSTOMER_FEATURES,
    FEATURE_NAMES,
    SECONDS_PER_DAY,
    TERMINAL_FEATURES,
)
from stream_infer.features.serving_frame import feature_frame
from stream_infer.streamdef.training import epoch_seconds_of

if TYPE_CHECKING:
    from stream_infer.config import RedisSettings, Settings

FEATURE_SERVICE = "fraud_model_v1"
CUSTOMER_VIEW = "customer_spending"
CUSTOMER_PUSH_SOURCE = "customer_spending_push"
TERMINAL_VIEW = "terminal_risk"
REQUEST_VIEW = "request_flags"
#: Parquet batch sources, relative to the repository (as in ``features/repo.py``).
CUSTOMER_SOURCE = Path("data/customer_spending.parquet")
TERMINAL_SOURCE = Path("data/terminal_risk.parquet")
#: Request fields of ``request_flags``: the amount, and the time in whole UTC seconds.
AMOUNT_FIELD = "amount"
EPOCH_SECONDS_FIELD = "epoch_seconds"
#: Column :func:`historical_features` adds: True where Feast returned no value for a feature.
MISSING_COLUMN = "feast_missing"
ENTITY_COLUMNS = ("transaction_id", "customer_id", "terminal_id", "event_timestamp")

OnMissing = Literal["raise", "flag"]


class FeastRowsMissingError(RuntimeError):
    """Feast returned no features for some entity rows (see the module docstring)."""


def redis_connection_string(url: str) -> str:
    """Feast's ``host:port,db=N,...`` form of a ``redis://`` or ``rediss://`` URL.

    Raises:
        ValueError: not a redis URL, or a credential holds a comma (Feast splits on commas).
    """
    from stream_infer.features.feast_redis import online_store

    connection: str = online_store(url)["connection_string"]
    return connection


def repo_config(
    repo_dir: Path, redis_url: str | RedisSettings | None = None, project: str | None = None
) -> Any:
    """The repository's ``feature_store.yaml`` as a ``RepoConfig``, optionally retargeted.

    Args:
        repo_dir: the Feast repository folder.
        redis_url: serve from this Redis (a URL, or the whole settings: credentials, TLS,
            Sentinel or Cluster) instead of the file's online store; the registry is then
            ``data/registry-redis.db`` so the two stores' infrastructure never mix.
        project: another project name (Redis keys are namespaced by project).

    Raises:
        FileNotFoundError: no ``feature_store.yaml`` in ``repo_dir``.
    """
    import yaml  # Feast's dependency
    from feast import RepoConfig

    repo_dir = Path(repo_dir).resolve()
    raw = yaml.safe_load((repo_dir / "feature_store.yaml").read_text())
    if redis_url is not None:
        from stream_infer.features.feast_redis import online_store

        raw["online_store"] = online_store(redis_url)
        raw["registry"] = "data/registry-redis.db"
    if project is not None:
        raw["project"] = project
    config = RepoConfig(**raw)
    config.repo_path = repo_dir
    return config


def feature_store(
    repo_dir: Path, redis_url: str | RedisSettings | None = None, project: str | None = None
) -> Any:
    """A ``FeatureStore`` over an applied repository (see :func:`repo_config`)."""
    from feast import FeatureStore

    repo_dir = Path(repo_dir).resolve()
    (repo_dir / "data").mkdir(parents=True, exist_ok=True)
    # Both: Feast resolves the registry against repo_path (default: the cwd), not the config.
    return FeatureStore(repo_path=str(repo_dir), config=repo_config(repo_dir, redis_url, project))


@contextmanager
def _importable(repo_dir: Path) -> Iterator[None]:
    # Feast names repo modules by their path relative to the cwd and imports them; run from the
    # folder, then forget them so that another copy of the repository is read afresh.
    cwd, path, bytecode = os.getcwd(), list(sys.path), sys.dont_write_bytecode
    before = set(sys.modules)
    os.chdir(repo_dir)
    sys.path.insert(0, str(repo_dir))
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        sys.dont_write_bytecode = bytecode
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(str(repo_dir)):
                del sys.modules[name]


def apply(
    repo_dir: Path, redis_url: str | RedisSettings | None = None, project: str | None = None
) -> Any:
    """``feast apply`` for ``repo_dir`` (honouring ``.feastignore``); returns the FeatureStore.

    Missing parquet sources are created empty first, so a fresh clone applies cleanly. Not
    thread-safe: Feast imports the definitions from the repository folder as the cwd.

    Raises:
        FileNotFoundError: no ``feature_store.yaml`` in ``repo_dir``.
    """
    from feast import Project
    from feast.repo_operations import apply_total_with_repo_instance, parse_repo

    repo_dir = Path(repo_dir).resolve()
    store = feature_store(repo_dir, redis_url, project)
    _ensure_sources(repo_dir)
    with _importable(repo_dir):
        contents = parse_repo(repo_dir)
    if not contents.projects:
        contents.projects.append(Project(name=store.project))
    apply_total_with_repo_instance(
        store, store.project, store.registry, contents, skip_source_validation=False
    )
    return store


def teardown(store: Any) -> None:
    """Delete the project's online data and infrastructure (``feast teardown``)."""
    store.teardown()


def _as_str(values: pd.Series) -> pd.Series:
    # The entities are STRING: ids are strings on the wire (stream_infer.events.Identifier).
    return values.astype(str)


def customer_source_rows(features: pd.DataFrame) -> pd.DataFrame:
    """``customer_spending`` rows of a feature frame: ids as strings, one per transaction."""
    cols = ["transaction_id", "customer_id", "event_timestamp", *CUSTOMER_FEATURES]
    out = features[cols].copy()
    out["transaction_id"] = _as_str(out["transaction_id"])
    out["customer_id"] = _as_str(out["customer_id"])
    return out


def terminal_source_rows(features: pd.DataFrame) -> pd.DataFrame:
    """``terminal_risk`` rows of a feature frame: one per (terminal, day with a transaction).

    Every transaction then has its own day's row, at D 00:00 UTC, within the view's TTL.
    """
    day = features["event_timestamp"].dt.floor("D")
    rows = features.assign(event_timestamp=day).drop_duplicates(["terminal_id", "event_timestamp"])
    out = rows[["terminal_id", "event_timestamp", *TERMINAL_FEATURES]].reset_index(drop=True)
    out["terminal_id"] = _as_str(out["terminal_id"])
    return out


def _ensure_sources(repo_dir: Path) -> None:
    empty = pd.DataFrame(
        {
            "transaction_id": pd.Series(dtype=str),
            "customer_id": pd.Series(dtype=str),
            "terminal_id": pd.Series(dtype=str),
            "event_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
            **{name: pd.Series(dtype=np.float64) for name in FEATURE_NAMES},
        }
    )
    for path, rows in (
        (CUSTOMER_SOURCE, customer_source_rows),
        (TERMINAL_SOURCE, terminal_source_rows),
    ):
        target = repo_dir / path
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            rows(empty).to_parquet(target, index=False)


def write_offline_sources(features: pd.DataFrame, repo_dir: Path) -> tuple[Path, Path]:
    """Write the parquet batch sources of both views from a feature frame; returns their paths.

    Args:
        features: :func:`~stream_infer.features.serving_frame.feature_frame` output.
        repo_dir: the Feast repository; files go to its ``data/`` folder, replacing any there.
    """
    repo_dir = Path(repo_dir)
    paths = (repo_dir / CUSTOMER_SOURCE, repo_dir / TERMINAL_SOURCE)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    customer_source_rows(features).to_parquet(paths[0], index=False)
    terminal_source_rows(features).to_parquet(paths[1], index=False)
    return paths


def entity_frame(features: pd.DataFrame) -> pd.DataFrame:
    """The entity frame for :func:`historical_features`: keys, time, and the request data."""
    out = features[list(ENTITY_COLUMNS)].copy()
    for col in ("transaction_id", "customer_id", "terminal_id"):
        out[col] = _as_str(out[col])
    out[AMOUNT_FIELD] = features["tx_amount"].to_numpy(np.float64)
    out[EPOCH_SECONDS_FIELD] = epoch_seconds_of(out["event_timestamp"])
    return out


def historical_features(
    store: Any, entity_df: pd.DataFrame, *, on_missing: OnMissing = "raise"
) -> pd.DataFrame:
    """The :data:`FEATURE_NAMES` of each entity row, point-in-time, via ``fraud_model_v1``.

    Args:
        store: a FeatureStore with the repository applied and the offline sources written.
        entity_df: :func:`entity_frame` columns (``transaction_id`` unique).
        on_missing: ``"raise"``, or ``"flag"`` to return rows Feast left without features
            with NaN there and ``feast_missing`` True.

    Returns:
        ``entity_df``'s rows in its order: its columns, the 15 features, ``feast_missing``.

    Raises:
        ValueError: ``transaction_id`` repeats, or two rows share a customer or a terminal and
            a time (Feast would collapse them).
        FeastRowsMissingError: ``on_missing="raise"`` and Feast dropped a row or left a
            feature empty.
    """
    if not entity_df["transaction_id"].is_unique:
        raise ValueError("entity_df transaction_id values repeat")
    for key in ("customer_id", "terminal_id"):
        if entity_df.duplicated([key, "event_timestamp"]).any():
            raise ValueError(f"entity rows share {key} and event_timestamp: use event_timestamps()")
    service = store.get_feature_service(FEATURE_SERVICE)
    got = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    got["transaction_id"] = _as_str(got["transaction_id"])
    out = entity_df.drop(columns=list(FEATURE_NAMES), errors="ignore").merge(
        got[["transaction_id", *FEATURE_NAMES]], on="transaction_id", how="left", validate="1:1"
    )
    dropped = ~entity_df["transaction_id"].isin(got["transaction_id"]).to_numpy()
    empty = out[list(FEATURE_NAMES)].isna().any(axis=1).to_numpy()
    out[MISSING_COLUMN] = dropped | empty
    if on_missing == "raise" and out[MISSING_COLUMN].any():
        raise FeastRowsMissingError(_missing_report(out, dropped, empty & ~dropped))
    return out


def _missing_report(
    out: pd.DataFrame, dropped: npt.NDArray[np.bool_], empty: npt.NDArray[np.bool_]
) -> str:
    views = {
        CUSTOMER_VIEW: CUSTOMER_FEATURES,
        TERMINAL_VIEW: TERMINAL_FEATURES,
        REQUEST_VIEW: FEATURE_NAMES[:3],
    }
    lacking = [v for v, names in views.items() if out.loc[empty, list(names)].isna().any().any()]
    return (
        f"Feast dropped {int(dropped.sum())} of {len(out)} entity rows (no feature row within "
        f"the view's TTL before them), e.g. {out.loc[dropped, 'transaction_id'].head(5).tolist()}"
        f"; {int(empty.sum())} more came back without values from {lacking}, e.g. "
        f"{out.loc[empty, 'transaction_id'].head(5).tolist()}"
    )


def push_customer_rows(
    store: Any,
    rows: pd.DataFrame,
    *,
    batch_size: int = 1000,
    to: Literal["online", "offline", "online_and_offline"] = "online",
) -> int:
    """Push customer window rows through ``customer_spending_push`` in batches; returns rows.

    Args:
        rows: ``customer_id``, ``event_timestamp`` and the :data:`CUSTOMER_FEATURES` (e.g.
            :func:`customer_source_rows`); the online store keeps each customer's latest.
    """
    from feast.data_source import PushMode

    mode = PushMode[to.upper()]
    frame = rows[["customer_id", "event_timestamp", *CUSTOMER_FEATURES]].copy()
    frame["customer_id"] = _as_str(frame["customer_id"])
    for start in range(0, len(frame), batch_size):
        store.push(CUSTOMER_PUSH_SOURCE, frame.iloc[start : start + batch_size], to=mode)
    return len(frame)


def write_terminal_rows(store: Any, rows: pd.DataFrame) -> int:
    """Write terminal daily rows to the online store, the latest per terminal; returns rows.

    The online store holds one row per terminal, so a day's rows are written once that day's
    row is final (before the day starts) and replace the previous day's.
    """
    frame = rows.sort_values("event_timestamp", kind="stable").drop_duplicates(
        "terminal_id", keep="last"
    )
    frame = frame[["terminal_id", "event_timestamp", *TERMINAL_FEATURES]].copy()
    frame["terminal_id"] = _as_str(frame["terminal_id"])
    if len(frame):
        store.write_to_online_store(TERMINAL_VIEW, frame)
    return len(frame)


def online_features(
    store: Any,
    customer_ids: Sequence[object],
    terminal_ids: Sequence[object],
    amounts: Sequence[float],
    epoch_seconds: Sequence[int],
) -> pd.DataFrame:
    """The 15 features of transactions from the online store, via ``fraud_model_v1``.

    Returns:
        One row per transaction: the :data:`FEATURE_NAMES` (NaN where the store has no row)
        and ``terminal_day_ok``, False unless the terminal row is the transaction's own day's
        (the online store keeps only the latest row, and serving must never use another day's).
    """
    service = store.get_feature_service(FEATURE_SERVICE)
    entity_rows = {
        "customer_id": [str(c) for c in customer_ids],
        "terminal_id": [str(t) for t in terminal_ids],
        AMOUNT_FIELD: [float(a) for a in amounts],
        EPOCH_SECONDS_FIELD: [int(s) for s in epoch_seconds],
    }
    got = store.get_online_features(features=service, entity_rows=entity_rows)
    frame: pd.DataFrame = got.to_df(include_event_timestamps=True)
    out = frame[list(FEATURE_NAMES)].astype(np.float64)
    # Feast gives event times as epoch seconds, 0 where it has no row.
    row_day = frame[f"{TERMINAL_FEATURES[0]}__ts"].to_numpy(np.int64) // SECONDS_PER_DAY
    want_day = np.asarray(entity_rows[EPOCH_SECONDS_FIELD], dtype=np.int64) // SECONDS_PER_DAY
    present = out[list(TERMINAL_FEATURES)].notna().all(axis=1).to_numpy()
    out["terminal_day_ok"] = present & (row_day == want_day)
    return out


def training_frame_via_feast(raw: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The training frame through Feast's offline store (a check of the direct path).

    Computes the features with the training set builder from the declared repository
    (``features.repo_dir``), writes them as the serving repository's batch sources, applies it
    and retrieves every transaction point-in-time (rows in time order). The file store joins
    each entity row with all of its entity's rows, so this suits thousands of transactions,
    not millions.

    Raises:
        FeastRowsMissingError: Feast lost a row (a bug: every row's sources are written).
        DefinitionError: the declared repository is refused, or ``raw`` does not match it.
    """
    from stream_infer.streamdef.feast_reader import load_definitions

    features = feature_frame(load_definitions(settings.features.repo_dir), raw)
    repo_dir = settings.features.feast_repo_dir
    write_offline_sources(features, repo_dir)
    store = apply(repo_dir)
    frame = historical_features(store, entity_frame(features))
    labels = raw[["transaction_id", "tx_datetime", "tx_fraud"]].assign(
        transaction_id=_as_str(raw["transaction_id"])
    )
    return frame.drop(columns=[MISSING_COLUMN]).merge(labels, on="transaction_id", how="left")
