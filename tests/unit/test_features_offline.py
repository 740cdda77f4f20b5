"""Offline (batch) features agree with the shared definitions, row by row.

The reference is the stream's own code: :class:`CustomerHistory` fed in row order with
``seq`` = row index, and :func:`terminal_features` over per-(terminal, day) label counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.features.definitions import (
    CUSTOMER_FEATURES,
    FEATURE_NAMES,
    SECONDS_PER_DAY,
    TERMINAL_FEATURES,
    CustomerHistory,
    assemble,
    request_features,
    terminal_features,
)
from stream_infer.features.offline import (
    compute_features,
    customer_feature_rows,
    customer_windows,
    epoch_seconds,
    terminal_daily_rows,
)
from stream_infer.features.synthetic import synthetic_transactions

TOLERANCE = 1e-9
T0 = int(pd.Timestamp("2026-03-02", tz="UTC").timestamp())


def daily_counts(frame: pd.DataFrame) -> dict[object, dict[int, tuple[int, int]]]:
    """``{terminal: {day: (labelled transactions, frauds)}}``, as the label processor keeps."""
    out: dict[object, dict[int, tuple[int, int]]] = {}
    labelled = frame[frame["tx_fraud"].notna()]
    days = epoch_seconds(labelled["tx_datetime"]) // SECONDS_PER_DAY
    for term, day, fraud in zip(labelled["terminal_id"], days, labelled["tx_fraud"], strict=True):
        nb, fr = out.setdefault(term, {}).get(int(day), (0, 0))
        out[term][int(day)] = (nb + 1, fr + int(fraud))
    return out


def reference_features(frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The stream's features for each row, rows added in order with seq = row index."""
    seconds = epoch_seconds(frame["tx_datetime"])
    daily = daily_counts(frame)
    histories: dict[object, CustomerHistory] = {}
    rows: list[list[float]] = []
    for i, (sec, cust, term, amount, tid) in enumerate(
        zip(
            seconds.tolist(),
            frame["customer_id"],
            frame["terminal_id"],
            frame["tx_amount"].tolist(),
            frame["transaction_id"],
            strict=True,
        )
    ):
        hist = histories.setdefault(cust, CustomerHistory())
        idx = hist.add(sec, i, amount, str(tid))
        rows.append(
            assemble(
                request_features(sec, amount),
                hist.features_at(idx),
                terminal_features(daily.get(term, {}), sec // SECONDS_PER_DAY),
            )
        )
    return np.array(rows, dtype=np.float64).reshape(len(frame), len(FEATURE_NAMES))


def assert_features_equal(
    got: pd.DataFrame,
    want: npt.NDArray[np.float64],
    names: Sequence[str] = FEATURE_NAMES,
    ids: Sequence[object] | None = None,
) -> None:
    """Fail naming every (transaction id, feature) that differs by more than TOLERANCE."""
    values = got[list(names)].to_numpy(np.float64)
    bad = ~(np.abs(values - want) <= TOLERANCE)
    if not bad.any():
        return
    tx_ids = list(got["transaction_id"] if ids is None else ids)
    rows, cols = np.nonzero(bad)
    lines = [
        f"  transaction {tx_ids[r]!r} {names[c]}: offline {values[r, c]!r} != stream {want[r, c]!r}"
        for r, c in zip(rows[:30], cols[:30], strict=True)
    ]
    pytest.fail(
        f"{int(bad.any(axis=1).sum())} transactions differ in {int(bad.sum())} features "
        f"(features: {sorted({names[c] for c in cols})}):\n" + "\n".join(lines)
    )


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return synthetic_transactions(n_customers=40, n_terminals=30, n_days=45, seed=11)


def test_the_synthetic_history_has_what_the_test_needs(history: pd.DataFrame) -> None:
    seconds = pd.Series(epoch_seconds(history["tx_datetime"]))
    same_second = pd.DataFrame({"c": history["customer_id"], "s": seconds}).duplicated()
    assert same_second.sum() >= 20, "no same-second ties for one customer"
    gaps = history.assign(s=seconds).groupby("customer_id")["s"].apply(lambda s: s.diff().max())
    assert (gaps > 30 * SECONDS_PER_DAY).any(), "no customer pauses longer than 30 days"
    assert history["tx_fraud"].sum() > 10


def test_offline_equals_the_stream_definitions_for_every_row(history: pd.DataFrame) -> None:
    got = compute_features(history)
    assert list(got.columns) == [
        "transaction_id",
        "customer_id",
        "terminal_id",
        "event_timestamp",
        *FEATURE_NAMES,
    ]
    assert (got["transaction_id"].to_numpy() == history["transaction_id"].to_numpy()).all()
    assert all(got[name].dtype == np.float64 for name in FEATURE_NAMES)
    assert_features_equal(got, reference_features(history))
    # Not vacuous: windows and terminal risks are populated.
    assert got["customer_nb_tx_30d"].max() > 20
    assert got["terminal_risk_30d"].max() > 0


def test_a_parity_failure_names_transactions_and_features(history: pd.DataFrame) -> None:
    got = compute_features(history.head(50))
    want = reference_features(history.head(50))
    want[7, FEATURE_NAMES.index("customer_avg_amount_7d")] += 1.0
    with pytest.raises(pytest.fail.Exception, match=r"transaction 7 customer_avg_amount_7d"):
        assert_features_equal(got, want)


def test_same_second_rows_are_ordered_by_row_and_stamped_apart() -> None:
    when = pd.Timestamp("2026-03-07 12:00:00")  # a Saturday
    frame = pd.DataFrame(
        {
            "transaction_id": ["a", "b", "c", "d"],
            "tx_datetime": [when, when, when, when - pd.Timedelta(days=1)],
            "customer_id": ["x", "x", "x", "x"],
            "terminal_id": ["t", "t", "t", "t"],
            "tx_amount": [10.0, 20.0, 60.0, 5.0],
            "tx_fraud": [0, 0, 0, 0],
        }
    )
    got = compute_features(frame)
    # "d" is exactly one day earlier: out of the 1-day window, in the 7-day one.
    assert got["customer_nb_tx_1d"].tolist() == [1.0, 2.0, 3.0, 1.0]
    assert got["customer_avg_amount_1d"].tolist() == [10.0, 15.0, 30.0, 5.0]
    assert got["customer_nb_tx_7d"].tolist() == [2.0, 3.0, 4.0, 1.0]
    assert got["tx_during_weekend"].tolist() == [1.0, 1.0, 1.0, 0.0]
    stamps = got["event_timestamp"]
    assert str(stamps.dtype) == "datetime64[ns, UTC]"
    assert (stamps.iloc[:3] - when.tz_localize("UTC")).dt.total_seconds().tolist() == pytest.approx(
        [0.0, 1e-6, 2e-6]
    )


def test_times_are_whole_utc_seconds_whatever_the_input_zone() -> None:
    base = synthetic_transactions(n_customers=5, n_terminals=3, n_days=10, seed=2)
    aware = base.assign(
        tx_datetime=base["tx_datetime"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")
    )
    fine = base.assign(tx_datetime=base["tx_datetime"] + pd.Timedelta(milliseconds=999))
    want = compute_features(base)
    for variant in (aware, fine):
        got = compute_features(variant)
        assert_features_equal(got, want[list(FEATURE_NAMES)].to_numpy())
        assert (got["event_timestamp"] == want["event_timestamp"]).all()


def test_separate_labels_count_once_and_unlabelled_rows_not_at_all(history: pd.DataFrame) -> None:
    labels = history[["transaction_id", "tx_fraud"]].sample(frac=0.7, random_state=1)
    repeated = pd.concat([labels, labels.head(100)])
    got = compute_features(history.drop(columns="tx_fraud"), repeated)
    partial = history.assign(tx_fraud=np.nan)
    partial.loc[labels.index, "tx_fraud"] = labels["tx_fraud"]
    assert_features_equal(got, reference_features(partial))
    # Labels carrying their own terminal and time give the same rows.
    own = history.loc[labels.index, ["transaction_id", "terminal_id", "tx_datetime", "tx_fraud"]]
    again = compute_features(history.drop(columns="tx_fraud"), own)
    pd.testing.assert_frame_equal(again, got)


def test_terminal_daily_rows_are_the_terminal_features_of_each_day(history: pd.DataFrame) -> None:
    daily = daily_counts(history)
    rows = terminal_daily_rows(history)
    days = (rows["event_timestamp"].astype("int64") // 10**9 // SECONDS_PER_DAY).to_numpy()
    assert (rows["event_timestamp"].dt.floor("D") == rows["event_timestamp"]).all()
    assert len(rows) == history["terminal_id"].nunique() * (days.max() - days.min() + 1)
    want = np.array(
        [
            terminal_features(daily.get(t, {}), int(d))
            for t, d in zip(rows["terminal_id"], days, strict=True)
        ]
    )
    ids = [f"terminal {t} day {d}" for t, d in zip(rows["terminal_id"], days, strict=True)]
    assert_features_equal(rows, want, TERMINAL_FEATURES, ids)
    later = terminal_daily_rows(history, days=[int(days.max()) + 8, int(days.max()) + 60])
    assert (later["terminal_nb_tx_30d"].to_numpy()[0::2] > 0).any()
    assert (later["terminal_nb_tx_30d"].to_numpy()[1::2] == 0).all()


def test_customer_rows_are_the_customer_columns(history: pd.DataFrame) -> None:
    rows = customer_feature_rows(history.drop(columns="tx_fraud"))
    full = compute_features(history)
    pd.testing.assert_frame_equal(
        rows, full[["transaction_id", "customer_id", "event_timestamp", *CUSTOMER_FEATURES]]
    )


def test_empty_input_gives_empty_typed_frames() -> None:
    empty = synthetic_transactions(n_customers=0, n_terminals=1, n_days=3)
    got = compute_features(empty)
    assert got.empty and list(got.columns[4:]) == list(FEATURE_NAMES)
    assert customer_feature_rows(empty).empty
    assert terminal_daily_rows(empty).empty


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns="tx_amount"), "lacks columns"),
        (lambda f: f.drop(columns="tx_fraud"), "no labels given"),
        (lambda f: f.assign(transaction_id=0), "duplicate transaction_id"),
        (lambda f: f.assign(tx_amount=np.nan), "missing tx_amount"),
        (lambda f: f.assign(tx_datetime=pd.NaT), "missing tx_datetime"),
    ],
)
def test_bad_input_is_refused_with_a_reason(mutate: object, message: str) -> None:
    frame = synthetic_transactions(n_customers=3, n_terminals=2, n_days=3, seed=1)
    with pytest.raises(ValueError, match=message):
        compute_features(mutate(frame))  # type: ignore[operator]


def test_labels_for_unknown_transactions_are_refused() -> None:
    frame = synthetic_transactions(n_customers=3, n_terminals=2, n_days=3, seed=1)
    labels = pd.DataFrame({"transaction_id": [10**9], "tx_fraud": [1]})
    with pytest.raises(ValueError, match="unknown transactions"):
        compute_features(frame, labels)


# -- property: customer windows -----------------------------------------------------------------

# Offsets on a coarse grid make rows exactly 1, 7 and 30 days apart, and same-second ties, common.
_offsets = st.one_of(
    st.builds(
        lambda d, s: d * SECONDS_PER_DAY + s, st.integers(0, 40), st.sampled_from([0, 1, -1])
    ),
    st.integers(0, 40 * SECONDS_PER_DAY),
)
_events = st.lists(
    st.tuples(st.integers(0, 3), _offsets, st.floats(0, 1e4, allow_nan=False)),
    min_size=1,
    max_size=80,
)


def _brute_force(
    customers: list[int], seconds: list[int], amounts: list[float]
) -> npt.NDArray[np.float64]:
    """The definition, literally: same customer, time in (t - n days, t], not a later tie."""
    out = np.zeros((len(seconds), 6))
    for i, (c, t) in enumerate(zip(customers, seconds, strict=True)):
        for j, n in enumerate((1, 7, 30)):
            inside = [
                amounts[k]
                for k in range(len(seconds))
                if customers[k] == c
                and t - n * SECONDS_PER_DAY < seconds[k] <= t
                and (seconds[k] < t or k <= i)
            ]
            out[i, 2 * j] = len(inside)
            out[i, 2 * j + 1] = sum(inside) / len(inside)
    return out


@settings(max_examples=300, deadline=None)
@given(_events)
def test_customer_windows_match_stream_and_definition(events: list[tuple[int, int, float]]) -> None:
    # Stream order is time order (a customer's partition); ties keep their drawn order.
    events = sorted(events, key=lambda e: e[1])
    customers = [e[0] for e in events]
    seconds = [T0 + e[1] for e in events]
    amounts = [e[2] for e in events]
    got = customer_windows(
        np.array(customers, np.int64), np.array(seconds, np.int64), np.array(amounts)
    )
    histories: dict[int, CustomerHistory] = {}
    stream = np.array(
        [
            (h := histories.setdefault(c, CustomerHistory())).features_at(h.add(t, i, a, str(i)))
            for i, (c, t, a) in enumerate(zip(customers, seconds, amounts, strict=True))
        ]
    )
    np.testing.assert_allclose(got, stream, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got, _brute_force(customers, seconds, amounts), rtol=0, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(_events)
def test_customer_windows_of_unordered_rows_see_the_whole_history(
    events: list[tuple[int, int, float]],
) -> None:
    customers = [e[0] for e in events]
    seconds = [T0 + e[1] for e in events]
    amounts = [e[2] for e in events]
    got = customer_windows(
        np.array(customers, np.int64), np.array(seconds, np.int64), np.array(amounts)
    )
    np.testing.assert_allclose(got, _brute_force(customers, seconds, amounts), rtol=0, atol=1e-6)
