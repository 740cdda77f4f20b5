"""Fit, evaluate, export and register a model on a feature frame.

The split follows the handbook (Le Borgne et al., ch. 3.3/5): a training week, a 7-day gap
for the label delay, then a test week; customers known to be compromised (frauds in the
training week, or discovered during the gap, day by day) are removed from each test day.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from stream_infer.features.definitions import FEATURE_NAMES, LABEL_DELAY_DAYS
from stream_infer.model.export import to_onnx
from stream_infer.model.registry import ModelRegistry, ModelVersion
from stream_infer.training.evaluate import evaluate

ModelKind = Literal["logreg", "tree", "forest", "mlp"]


@dataclass(frozen=True)
class SplitConfig:
    """Where the training week starts (day index from the dataset's first day)."""

    train_start_day: int
    train_days: int = 7
    delay_days: int = LABEL_DELAY_DAYS
    test_days: int = 7


def handbook_split(frame: pd.DataFrame, split: SplitConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and test frames (``frame`` needs tx_datetime, customer_id, tx_fraud)."""
    first = pd.to_datetime(frame["tx_datetime"]).min().floor("D")
    day = ((pd.to_datetime(frame["tx_datetime"]) - first).dt.days).to_numpy()
    t0 = split.train_start_day
    train = frame[(day >= t0) & (day < t0 + split.train_days)]
    known = set(train.loc[train["tx_fraud"] == 1, "customer_id"])
    test_parts: list[pd.DataFrame] = []
    test0 = t0 + split.train_days + split.delay_days
    for i in range(split.test_days):
        # Labels of the gap arrive day by day: one more gap day is known per test day.
        gap_day = frame[day == t0 + split.train_days + i - 1]
        known |= set(gap_day.loc[gap_day["tx_fraud"] == 1, "customer_id"])
        today = frame[day == test0 + i]
        test_parts.append(today[~today["customer_id"].isin(known)])
    return train, pd.concat(test_parts) if test_parts else frame.iloc[:0]


def make_estimator(kind: ModelKind, seed: int = 0) -> Any:
    """A scikit-learn pipeline (scaling + classifier) for ``kind``."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    classifiers: dict[str, Any] = {
        "logreg": LogisticRegression(C=1.0, max_iter=1000, random_state=seed),
        "tree": DecisionTreeClassifier(max_depth=2, random_state=seed),
        "forest": RandomForestClassifier(
            n_estimators=100, max_depth=10, n_jobs=1, random_state=seed
        ),
        "mlp": MLPClassifier(
            hidden_layer_sizes=(64, 32), max_iter=200, early_stopping=True, random_state=seed
        ),
    }
    return make_pipeline(StandardScaler(), classifiers[kind])


def frame_hash(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """A stable hash of the training rows (for the manifest's provenance)."""
    values = pd.util.hash_pandas_object(frame[list(columns)], index=False).to_numpy()
    return hashlib.sha256(values.tobytes()).hexdigest()


@dataclass(frozen=True)
class TrainResult:
    version: ModelVersion
    metrics: dict[str, float]
    train_rows: int
    test_rows: int


def fit_and_evaluate(
    train: pd.DataFrame, test: pd.DataFrame, kind: ModelKind, seed: int = 0
) -> tuple[Any, dict[str, float]]:
    """Fit ``kind`` on ``train`` and return it with its metrics on ``test``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    estimator = make_estimator(kind, seed)
    x = train[list(FEATURE_NAMES)].to_numpy(np.float32)
    with warnings.catch_warnings():
        # Early stopping on a short quick run is expected; the metrics tell the real story.
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(x, train["tx_fraud"].to_numpy())
    scores = estimator.predict_proba(test[list(FEATURE_NAMES)].to_numpy(np.float32))[:, 1]
    return estimator, evaluate(test, scores)


def train_and_register(
    frame: pd.DataFrame,
    registry: ModelRegistry,
    name: str,
    split: SplitConfig,
    kind: ModelKind = "logreg",
    *,
    feature_service: str | None = None,
    seed: int = 0,
) -> TrainResult:
    """Split, fit, evaluate, export to ONNX, and register as the production version.

    ``frame`` holds the 15 features plus tx_datetime, customer_id and tx_fraud.

    Raises:
        ValueError: the split leaves no training or no test rows.
    """
    train, test = handbook_split(frame, split)
    if train.empty or test.empty or train["tx_fraud"].nunique() < 2:
        raise ValueError(
            f"split {split} leaves {len(train)} training rows ({int(train['tx_fraud'].sum())} "
            f"frauds) and {len(test)} test rows: generate more days"
        )
    estimator, metrics = fit_and_evaluate(train, test, kind, seed)
    metrics["train_transactions"] = float(len(train))
    version = registry.register(
        name,
        to_onnx(estimator, len(FEATURE_NAMES)),
        FEATURE_NAMES,
        metrics=metrics,
        training_data_hash=frame_hash(train, [*FEATURE_NAMES, "tx_fraud"]),
        feature_service=feature_service,
        description=f"{kind} on {len(train)} rows",
    )
    return TrainResult(version, metrics, len(train), len(test))
