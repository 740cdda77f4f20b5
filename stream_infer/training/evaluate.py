"""Fraud-detection metrics as the handbook reports them (Le Borgne et al., ch. 3.4 and 4).

- AUC ROC and average precision over all test transactions (threshold-free);
- card precision@k: per test day, in day order, the k cards (customers) with the highest score
  that day (a card's score is the maximum over its transactions of the day, and it counts as
  compromised when any of them is a fraud); the day's precision is the share of those k that
  were compromised, always divided by k. A card found compromised in a day's top k is blocked:
  it is left out of every later test day, as the handbook's ``card_precision_top_k`` does with
  ``remove_detected_compromised_cards=True``. The metric is the mean over the test days.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd


def card_precision_at_k(
    frame: pd.DataFrame,
    scores: npt.NDArray[np.floating],
    k: int = 100,
    *,
    remove_detected: bool = True,
) -> float:
    """Mean daily card precision@k (see the module docstring); 0.0 for an empty frame.

    Args:
        frame: ``customer_id``, ``tx_datetime`` (the UTC day is its floor) and ``tx_fraud``,
            one row per scored transaction, aligned with ``scores``.
        scores: fraud scores, higher = more suspicious.
        k: cards an investigator checks per day.
        remove_detected: leave cards detected on earlier days out of later days (the
            handbook's protocol); False scores every day independently.

    Raises:
        ValueError: ``k`` is not positive or ``scores`` does not match ``frame``'s length.
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (len(frame),):
        raise ValueError(f"{values.shape} scores for {len(frame)} transactions")
    df = pd.DataFrame(
        {
            "day": pd.to_datetime(frame["tx_datetime"]).dt.floor("D").to_numpy(),
            "customer_id": frame["customer_id"].to_numpy(),
            "fraud": frame["tx_fraud"].to_numpy(),
            "score": values,
        }
    )
    # One row per (day, card), cards in id order within a day (as the handbook's groupby).
    per_card = (
        df.groupby(["day", "customer_id"], sort=True)
        .agg(score=("score", "max"), fraud=("fraud", "max"))
        .reset_index()
    )
    detected: set[object] = set()
    daily: list[float] = []
    for _day, day_cards in per_card.groupby("day", sort=True):
        cards = (
            day_cards[~day_cards["customer_id"].isin(detected)] if remove_detected else day_cards
        )
        # A stable sort makes ties (frequent with shallow trees) resolve by card id, so the
        # metric is deterministic; the handbook's unstable quicksort may pick other tied cards.
        top = cards.sort_values("score", ascending=False, kind="stable").head(k)
        hits = top.loc[top["fraud"] == 1, "customer_id"]
        daily.append(len(hits) / k)
        detected.update(hits.tolist())
    return float(np.mean(daily)) if daily else 0.0


def evaluate(
    frame: pd.DataFrame, scores: npt.NDArray[np.floating], k: int = 100
) -> dict[str, float]:
    """``auc_roc``, ``average_precision``, ``card_precision_at_{k}``, ``test_transactions`` and
    ``test_frauds`` on a test frame (see :func:`card_precision_at_k` for ``frame``).

    AUC ROC is NaN and average precision 0.0 when the frame holds only one class.

    Raises:
        ValueError: as :func:`card_precision_at_k`.
    """
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
