"""Fraud-detection metrics as the handbook reports them.

- AUC ROC and average precision over all test transactions (threshold-free);
- card precision@k: per test day, the k customers with the highest score that day, the share of
  them that were really compromised (had a fraud that day); averaged over the days.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd


def card_precision_at_k(
    frame: pd.DataFrame, scores: npt.NDArray[np.floating], k: int = 100
) -> float:
    """Mean daily precision@k over customers (``frame``: customer_id, tx_datetime, tx_fraud)."""
    df = pd.DataFrame(
        {
            "day": pd.to_datetime(frame["tx_datetime"]).dt.floor("D").to_numpy(),
            "customer_id": frame["customer_id"].to_numpy(),
            "fraud": frame["tx_fraud"].to_numpy(),
            "score": np.asarray(scores, dtype=np.float64),
        }
    )
    per_card = df.groupby(["day", "customer_id"], sort=False).agg(
        score=("score", "max"), fraud=("fraud", "max")
    )
    daily: list[float] = []
    for _day, group in per_card.groupby(level="day", sort=True):
        top = group.nlargest(k, "score")
        daily.append(float(top["fraud"].sum()) / k)
    return float(np.mean(daily)) if daily else 0.0


def evaluate(
    frame: pd.DataFrame, scores: npt.NDArray[np.floating], k: int = 100
) -> dict[str, float]:
    """``auc_roc``, ``average_precision`` and ``card_precision_at_{k}`` on a test frame."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = frame["tx_fraud"].to_numpy()
    has_both = 0 < int(y.sum()) < len(y)
    return {
        "auc_roc": float(roc_auc_score(y, scores)) if has_both else float("nan"),
        "average_precision": float(average_precision_score(y, scores)) if has_both else 0.0,
        f"card_precision_at_{k}": card_precision_at_k(frame, scores, k),
        "test_transactions": float(len(y)),
        "test_frauds": float(y.sum()),
    }
