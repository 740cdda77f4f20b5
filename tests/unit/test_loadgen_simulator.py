"""The handbook simulator: deterministic, the right columns, the handbook's shape."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loadgen.simulator import COLUMNS, SimulationConfig, generate, summary, write_parquet

SMALL = SimulationConfig(n_customers=200, n_terminals=400, nb_days=60, seed=11)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return generate(SMALL, progress=False)


def test_same_seed_same_frame_other_seed_other_frame(small: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(small, generate(SMALL, progress=False))
    other = generate(SimulationConfig(200, 400, 60, seed=12), progress=False)
    assert len(other) != len(small) or not other["tx_amount"].equals(small["tx_amount"])


def test_columns_dtypes_and_order(small: pd.DataFrame) -> None:
    assert tuple(small.columns) == COLUMNS
    dtypes = {c: str(t) for c, t in small.dtypes.items()}
    assert dtypes == {
        "transaction_id": "int64",
        "tx_datetime": "datetime64[ns]",
        "customer_id": "int64",
        "terminal_id": "int64",
        "tx_amount": "float64",
        "tx_time_seconds": "int64",
        "tx_time_days": "int64",
        "tx_fraud": "int8",
        "tx_fraud_scenario": "int8",
    }
    assert (small["transaction_id"].to_numpy() == np.arange(len(small))).all()
    assert small["tx_datetime"].is_monotonic_increasing
    expected_time = pd.Timestamp("2018-04-01") + pd.to_timedelta(small["tx_time_seconds"], "s")
    assert (small["tx_datetime"] == expected_time).all()


def test_times_amounts_and_ids_in_range(small: pd.DataFrame) -> None:
    second_of_day = small["tx_time_seconds"] % 86_400
    assert ((second_of_day > 0) & (second_of_day < 86_400)).all()
    assert (small["tx_time_days"] == small["tx_time_seconds"] // 86_400).all()
    assert small["tx_time_days"].between(0, 59).all()
    assert (small["tx_amount"] >= 0).all()
    assert (small["tx_amount"] == small["tx_amount"].round(2)).all()
    assert small["customer_id"].between(0, 199).all()
    assert small["terminal_id"].between(0, 399).all()
    # ~2 transactions a customer-day, times kept with P(|N(0,1)| < 2.16) ~ 0.97, minus the
    # customers with no terminal in range (~5-10 % at this density).
    assert 18_000 <= len(small) <= 25_000
    # Times ~ N(12h, 20000 s): the mean second of day is near noon.
    assert abs(second_of_day.mean() - 43_200) < 600


def test_fraud_scenarios_have_the_handbook_shape(small: pd.DataFrame) -> None:
    fraud, scenario = small["tx_fraud"], small["tx_fraud_scenario"]
    assert (fraud == (scenario > 0)).all()
    assert set(scenario.unique()) == {0, 1, 2, 3}
    # Scenario 1 first: no genuine transaction is above 220.
    assert (small.loc[scenario == 0, "tx_amount"] <= 220).all()
    assert (small.loc[scenario == 1, "tx_amount"] > 220).all()
    # With 400 terminals, 2 compromised a day for 28 days cover ~10 % of them; 3 customers in
    # 200 for 14 days, a third of their transactions, ~6 %. Much more than the defaults' 0.84 %
    # because the compromise counts do not scale with the population.
    assert 0.10 < fraud.mean() < 0.25
    shares = scenario[fraud == 1].value_counts(normalize=True)
    assert shares[2] > shares[3] > shares[1] > 0
    # Scenario 3 multiplies amounts by 5.
    genuine = small.loc[scenario == 0, "tx_amount"].mean()
    assert small.loc[scenario == 3, "tx_amount"].mean() > 3 * genuine


def test_scenario_2_marks_whole_terminal_windows(small: pd.DataFrame) -> None:
    # A terminal's scenario-2 days form runs of whole days: every transaction on that
    # terminal and day is fraud (scenario 2 or 3 overriding it).
    hit = small[small["tx_fraud_scenario"] == 2][["terminal_id", "tx_time_days"]].drop_duplicates()
    same = small.merge(hit, on=["terminal_id", "tx_time_days"])
    assert same["tx_fraud_scenario"].isin([2, 3]).all()


def test_scenario_3_is_about_a_third_of_compromised_customer_days(small: pd.DataFrame) -> None:
    three = small[small["tx_fraud_scenario"] == 3]
    assert three["customer_id"].nunique() > 20
    # Within the customers' compromised windows, frauds are a minority (~1/3 sampled).
    window = small[small["customer_id"].isin(three["customer_id"].unique())]
    assert (window["tx_fraud_scenario"] == 3).mean() < 0.5


def test_defaults_match_the_handbook() -> None:
    df = generate(SimulationConfig(), progress=False)
    facts = summary(df)
    # Handbook: 1,754,155 transactions, 0.84 % fraud.
    assert 1_700_000 <= facts.transactions <= 1_850_000
    assert 0.0070 <= facts.fraud_rate <= 0.0100
    assert facts.scenario_share(2) > facts.scenario_share(3) > facts.scenario_share(1) > 0.02
    assert facts.days == 183 and facts.terminals == 10_000


def test_config_validates_and_parquet_round_trips(small: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        SimulationConfig(n_customers=0)
    with pytest.raises(ValueError, match="radius"):
        SimulationConfig(radius=-1)
    path = write_parquet(small, tmp_path / "sub" / "tx.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), small)
    other_start = generate(
        SimulationConfig(20, 40, 3, start_date=date(2024, 1, 1), seed=1), progress=False
    )
    assert other_start["tx_datetime"].min() >= pd.Timestamp("2024-01-01")
