"""The handbook split, card precision@k and the training-start resolution, on hand-made frames."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from stream_infer.training.baselines import HANDBOOK_BASELINES, compare, markdown_table
from stream_infer.training.evaluate import card_precision_at_k, evaluate
from stream_infer.training.trainer import (
    MODEL_KINDS,
    SplitConfig,
    day_index,
    handbook_split,
    make_estimator,
)
from stream_infer.training.workflow import (
    default_train_start_day,
    resolve_train_start,
    warm_up_days,
)

from .fraud_defs import fraud_defs

START = datetime(2018, 4, 1)
#: The fraud example's warm-up (its terminal windows: the 7-day label delay, then 30 days).
WARM_UP_DAYS = 37


def tx(day: int, customer: str, fraud: int = 0, hour: int = 12) -> dict[str, object]:
    return {
        "tx_datetime": START + timedelta(days=day, hours=hour),
        "customer_id": customer,
        "tx_fraud": fraud,
    }


def frame_of(rows: list[dict[str, object]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.insert(0, "transaction_id", range(len(df)))
    return df


def split_frame() -> pd.DataFrame:
    """Day 0 anchors the index; training week = days 2..8, gap 9..15, test 16..22."""
    rows = [tx(0, "anchor")]
    rows += [tx(d, "steady") for d in range(0, 25)]
    rows += [tx(1, "before"), tx(9, "gap-only")]
    rows += [tx(4, "trained-fraud", fraud=1)] + [tx(d, "trained-fraud") for d in range(16, 23)]
    # Fraud on gap day 9 + j is known from test day j + 1 on (one more gap day per test day).
    rows += [tx(11, "gap2-fraud", fraud=1)] + [tx(d, "gap2-fraud") for d in range(16, 23)]
    # The last gap day's labels arrive only after the test week: the card stays in all week.
    rows += [tx(15, "late-fraud", fraud=1)] + [tx(d, "late-fraud") for d in range(16, 23)]
    rows += [tx(17, "test-fraud", fraud=1), tx(18, "test-fraud")]
    return frame_of(rows)


def test_split_training_week_gap_and_test_week() -> None:
    frame = split_frame()
    train, test = handbook_split(frame, SplitConfig(train_start_day=2))
    train_days = set((train["tx_datetime"] - START).dt.days)
    test_days = set((test["tx_datetime"] - START).dt.days)
    assert train_days == set(range(2, 9))
    assert test_days == set(range(16, 23))  # days 9..15 are the label-delay gap
    assert "before" not in set(train["customer_id"]) and "gap-only" not in set(test["customer_id"])


def test_split_removes_known_compromised_customers_day_by_day() -> None:
    train, test = handbook_split(split_frame(), SplitConfig(train_start_day=2))
    test_day = (test["tx_datetime"] - START).dt.days - 16
    by_customer = test.assign(i=test_day).groupby("customer_id")["i"].apply(set)
    assert "trained-fraud" not in by_customer  # fraud in the training week: gone from day 0
    assert by_customer["gap2-fraud"] == {0, 1, 2}  # gap day 11 = 9 + 2: known from test day 3
    assert by_customer["late-fraud"] == set(range(7))  # gap day 15 is never known in time
    assert by_customer["test-fraud"] == {1, 2}  # a test-week fraud does not remove its card
    assert by_customer["steady"] == set(range(7))
    assert int(train["tx_fraud"].sum()) == 1


def test_split_counts_days_from_the_first_utc_day_and_dates_resolve() -> None:
    frame = split_frame()
    frame.loc[0, "tx_datetime"] = START + timedelta(hours=23, minutes=59)  # still day 0
    assert day_index(frame, date(2018, 7, 25)) == 115
    assert resolve_train_start(frame, None, date(2018, 4, 3), WARM_UP_DAYS) == SplitConfig(2)
    assert resolve_train_start(frame, 5, None, WARM_UP_DAYS) == SplitConfig(5)
    with pytest.raises(ValueError, match="not both"):
        resolve_train_start(frame, 5, date(2018, 4, 3), WARM_UP_DAYS)
    with pytest.raises(ValueError, match="before"):
        resolve_train_start(frame, None, date(2018, 3, 31), WARM_UP_DAYS)


def test_default_start_is_the_handbook_week_when_covered() -> None:
    span = SplitConfig(0).span_days
    full = frame_of([tx(0, "a"), tx(182, "a")])  # the default simulation's 183 days
    assert default_train_start_day(full, span, WARM_UP_DAYS) == 115
    short = frame_of([tx(0, "a"), tx(59, "a")])  # --quick: 60 days
    assert default_train_start_day(short, span, WARM_UP_DAYS) == WARM_UP_DAYS
    late = frame_of([tx(100, "a"), tx(200, "a")])  # 2018-07-25 is inside the warm-up
    assert default_train_start_day(late, span, WARM_UP_DAYS) == WARM_UP_DAYS


def cp_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """Two days, k = 2. Day 0: cards a (fraud), b, c (fraud). Day 1: a again, d (fraud), e."""
    rows = [
        (0, "a", 1, 0.9),
        (0, "a", 0, 0.1),  # a card's score is its day's maximum, its label the maximum too
        (0, "b", 0, 0.8),
        (0, "c", 1, 0.7),
        (1, "a", 1, 0.95),
        (1, "d", 1, 0.6),
        (1, "e", 0, 0.5),
    ]
    frame = frame_of([tx(d, c, f) for d, c, f, _s in rows])
    return frame, np.array([s for *_x, s in rows])


def test_card_precision_removes_cards_detected_on_earlier_days() -> None:
    frame, scores = cp_frame()
    # Day 0: top 2 = a (fraud), b -> 1/2; a is detected and blocked. Day 1: d, e -> 1/2.
    assert card_precision_at_k(frame, scores, k=2) == pytest.approx(0.5)
    # Without blocking, day 1's top 2 = a, d -> 2/2.
    assert card_precision_at_k(frame, scores, k=2, remove_detected=False) == pytest.approx(0.75)
    # Precision divides by k even when a day has fewer cards (day 1 has 2 left after blocking).
    assert card_precision_at_k(frame, scores, k=4) == pytest.approx((2 / 4 + 1 / 4) / 2)


def test_card_precision_ties_resolve_by_card_id_and_bad_input_raises() -> None:
    frame = frame_of([tx(0, "z", 0), tx(0, "y", 1), tx(0, "x", 0)])
    assert card_precision_at_k(frame, np.array([0.5, 0.5, 0.5]), k=1) == 0.0  # x first
    assert card_precision_at_k(frame, np.array([0.5, 0.5, 0.1]), k=1) == 1.0  # y before z
    assert card_precision_at_k(frame.iloc[:0], np.array([]), k=1) == 0.0
    with pytest.raises(ValueError, match="positive"):
        card_precision_at_k(frame, np.zeros(3), k=0)
    with pytest.raises(ValueError, match="scores"):
        card_precision_at_k(frame, np.zeros(2), k=1)


def test_evaluate_reports_the_handbook_metrics() -> None:
    frame, scores = cp_frame()
    metrics = evaluate(frame, scores, k=2)
    assert metrics["auc_roc"] == pytest.approx(10 / 12)  # frauds .9 .7 .95 .6 vs .1 .8 .5
    assert metrics["card_precision_at_2"] == pytest.approx(0.5)
    assert (metrics["test_transactions"], metrics["test_frauds"]) == (7.0, 4.0)
    one_class = evaluate(frame.assign(tx_fraud=0), scores, k=2)
    assert np.isnan(one_class["auc_roc"]) and one_class["average_precision"] == 0.0


def test_every_kind_builds_and_the_baselines_table_runs() -> None:
    for kind in MODEL_KINDS:
        assert hasattr(make_estimator(kind), "predict_proba")  # type: ignore[arg-type]
    from loadgen.simulator import SimulationConfig, generate
    from stream_infer.config import load_settings
    from stream_infer.training.workflow import build_frame

    defs = fraud_defs()
    assert warm_up_days(defs) == WARM_UP_DAYS
    raw = generate(SimulationConfig(n_customers=300, n_terminals=600, nb_days=60), progress=False)
    frame = build_frame(raw, defs, load_settings())
    assert len(frame) == len(raw) and frame["tx_datetime"].dt.tz is None
    rows = compare(frame, SplitConfig(WARM_UP_DAYS), extra=["forest"], inputs=defs.inputs)
    assert [r["model"] for r in rows][: len(HANDBOOK_BASELINES)] == [
        b.label for b in HANDBOOK_BASELINES
    ]
    for row in rows:
        if row["kind"] is not None:
            assert 0.5 < float(row["auc_roc"]) <= 1.0  # type: ignore[arg-type]
    table = markdown_table(rows)
    assert "| logistic regression |" in table and "| XGBoost | n/a |" in table


def test_day_indexes_read_tz_aware_times_in_utc() -> None:
    frame = split_frame()
    frame.loc[0, "tx_datetime"] = START + timedelta(hours=23, minutes=59)  # 01:59 in Paris
    # The training set's times are tz-aware UTC; other zones count by their UTC day too.
    aware = frame.assign(tx_datetime=frame["tx_datetime"].dt.tz_localize("UTC"))
    paris = aware.assign(tx_datetime=aware["tx_datetime"].dt.tz_convert("Europe/Paris"))
    want = handbook_split(frame, SplitConfig(train_start_day=2))
    for other in (aware, paris):
        assert day_index(other, date(2018, 7, 25)) == 115
        got = handbook_split(other, SplitConfig(train_start_day=2))
        for g, w in zip(got, want, strict=True):
            assert g["transaction_id"].tolist() == w["transaction_id"].tolist()
