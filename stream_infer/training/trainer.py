"""Fit, evaluate, export and register a model on a feature frame.

The split follows the handbook (Le Borgne et al., ch. 3.4 "Baseline fraud detection system"):
a training week, a 7-day gap for the label delay, then a test week; customers known to be
compromised (frauds in the training week, or discovered during the gap, day by day) are
removed from each test day. Days are counted from the frame's first UTC day, as the handbook's
``TX_TIME_DAYS`` are from the simulation's start (2018-04-01 -> 2018-07-25 is day 115).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd

from stream_infer.model.registry import ModelVersion
from stream_infer.training.evaluate import evaluate

ModelKind = Literal["logreg", "tree", "tree-deep", "forest", "forest-deep", "mlp"]
#: Every kind :func:`make_estimator` builds (for a CLI's choices).
MODEL_KINDS: Final[tuple[str, ...]] = get_args(ModelKind)
#: The handbook's training-week start for its baselines (day 115 of its 2018-04-01 simulation).
HANDBOOK_TRAIN_START: Final = date(2018, 7, 25)
#: The handbook's gap between the training and the test week (its labels' delay, in days).
HANDBOOK_DELAY_DAYS: Final = 7


@dataclass(frozen=True)
class SplitConfig:
    """The split's weeks; ``train_start_day`` is a day index (0 = the frame's first UTC day,
    see :func:`day_index`)."""

    train_start_day: int
    train_days: int = 7
    delay_days: int = HANDBOOK_DELAY_DAYS
    test_days: int = 7

    @property
    def span_days(self) -> int:
        """Days from the training week's first day to the test week's last, inclusive."""
        return self.train_days + self.delay_days + self.test_days


def utc_naive(times: pd.Series) -> pd.Series:
    """``times`` as naive UTC datetimes: tz-aware ones converted to UTC, then the zone dropped;
    naive ones are taken as UTC already. Day indexes and dates are computed on this only, so a
    frame's zone (the training set's times are tz-aware UTC) never shifts a day.

    Raises:
        ValueError: a value is not a time.
    """
    stamps = pd.to_datetime(times)
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps


def first_day(frame: pd.DataFrame) -> date:
    """The UTC date of the frame's earliest ``tx_datetime`` (day index 0 of the split).

    Raises:
        ValueError: the frame is empty.
    """
    if frame.empty:
        raise ValueError("no transactions")
    first: date = utc_naive(frame["tx_datetime"]).min().date()
    return first


def day_index(frame: pd.DataFrame, when: date) -> int:
    """``when`` as a day index of ``frame`` (0 = :func:`first_day`; negative = before it).

    Raises:
        ValueError: the frame is empty.
    """
    return (when - first_day(frame)).days


def _days(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    times = utc_naive(frame["tx_datetime"])
    first = times.min().floor("D")
    return np.asarray((times - first).dt.days, dtype=np.int64)


def handbook_split(frame: pd.DataFrame, split: SplitConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and test frames (``frame`` needs tx_datetime, customer_id, tx_fraud).

    Training: days ``[t0, t0 + train_days)``. Test day ``i`` (``t0 + train_days + delay_days +
    i``) keeps only customers not known to be compromised by then: the frauds of the training
    week and of the gap days ``t0 + train_days .. t0 + train_days + i - 1`` (one more day of
    labels arrives per test day, as in the handbook's ``get_train_test_set``).
    """
    day = _days(frame)
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
    """A scikit-learn pipeline (standard scaling + classifier) for ``kind``.

    ``tree``, ``tree-deep`` and ``forest-deep`` are the handbook's baselines as it builds them
    (scikit-learn defaults, depth 2 / unlimited / 100 unlimited trees); ``forest`` caps depth
    at 10 to keep the ONNX artifact small; ``logreg`` is the handbook's with more iterations.

    Raises:
        KeyError: ``kind`` is not one of :data:`MODEL_KINDS`.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    classifiers: dict[str, Any] = {
        "logreg": LogisticRegression(C=1.0, max_iter=1000, random_state=seed),
        "tree": DecisionTreeClassifier(max_depth=2, random_state=seed),
        "tree-deep": DecisionTreeClassifier(random_state=seed),
        "forest": RandomForestClassifier(
            n_estimators=100, max_depth=10, n_jobs=1, random_state=seed
        ),
        # n_jobs changes only the speed: with a fixed random_state the trees are the same.
        "forest-deep": RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed),
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
    """A registered version, its test metrics and the split's sizes."""

    version: ModelVersion
    metrics: dict[str, float]
    train_rows: int
    test_rows: int


def fit_and_evaluate(
    train: pd.DataFrame,
    test: pd.DataFrame,
    kind: ModelKind,
    seed: int = 0,
    *,
    inputs: Sequence[str],
) -> tuple[Any, dict[str, float]]:
    """Fit ``kind`` on ``train``'s ``inputs`` columns (the model's features, in its input
    order) and return it with its metrics on ``test``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    estimator = make_estimator(kind, seed)
    x = train[list(inputs)].to_numpy(np.float32)
    with warnings.catch_warnings():
        # Early stopping on a short quick run is expected; the metrics tell the real story.
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(x, train["tx_fraud"].to_numpy())
    scores = estimator.predict_proba(test[list(inputs)].to_numpy(np.float32))[:, 1]
    return estimator, evaluate(test, scores)
