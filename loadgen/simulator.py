"""The handbook's transaction simulator, vectorised with numpy.

Reproduces chapter 3 ("Transaction data simulator") of Le Borgne et al., *Reproducible Machine
Learning for Credit Card Fraud Detection*:

- customers at uniform (x, y) on a 100 x 100 grid, each with ``mean_amount ~ U(5, 100)``,
  ``std_amount = mean_amount / 2`` and ``mean_nb_tx_per_day ~ U(0, 4)``;
- terminals at uniform (x, y); a customer uses the terminals strictly within ``radius`` of it
  (a customer with none makes no transactions);
- per customer and day a Poisson number of transactions; each one's second of the day is
  ``int(N(43200, 20000))``, kept only when ``0 < t < 86400``; its amount is
  ``N(mean_amount, std_amount)``, redrawn ``U(0, 2 * mean_amount)`` when negative, rounded to
  cents; its terminal is drawn uniformly among the customer's terminals;
- fraud, applied in the handbook's order, each scenario overriding the one before:
  (1) every amount above 220 is fraud; (2) each day two random terminals are compromised and all
  their transactions of that day and the next 27 are fraud; (3) each day three random customers
  are compromised and a third (rounded down) of their transactions of that day and the next 13
  get their amount multiplied by 5 and are fraud.

Differences from the handbook, all deliberate: one seeded ``numpy.random.Generator`` instead of a
per-customer legacy seed (same distributions, not the same draws); the scenario loops cover every
simulated day (the handbook stops one day early); rows are sorted by time with ties kept in
(customer, day, draw) order before ``transaction_id`` is assigned.

Measured at the defaults (5,000 customers, 10,000 terminals, 183 days, radius 5, seed 0) on this
2-core machine: 1,779,993 transactions by 4,997 customers, 14,803 frauds = 0.832 % (scenario 1:
1,072 = 7.2 %, scenario 2: 8,833 = 59.7 %, scenario 3: 4,898 = 33.1 % of the frauds);
:func:`generate` takes about 2.6 s, ``loadgen generate`` 4.7 s with the parquet write, peak RSS
about 0.6 GB. The handbook reports 1,754,155 transactions and 0.84 % fraud.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from rich.progress import Progress

SECONDS_PER_DAY: Final = 86_400
AMOUNT_FRAUD_THRESHOLD: Final = 220.0
TERMINALS_PER_DAY: Final = 2
TERMINAL_FRAUD_DAYS: Final = 28
CUSTOMERS_PER_DAY: Final = 3
CUSTOMER_FRAUD_DAYS: Final = 14
CUSTOMER_FRAUD_MULTIPLIER: Final = 5.0
#: Customers per block of the distance matrix: 500 x 10,000 float64 = 40 MB at a time.
_DISTANCE_BLOCK: Final = 500

#: Output columns, in order.
COLUMNS: Final = (
    "transaction_id",
    "tx_datetime",
    "customer_id",
    "terminal_id",
    "tx_amount",
    "tx_time_seconds",
    "tx_time_days",
    "tx_fraud",
    "tx_fraud_scenario",
)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. The same config (seed included) always gives the same frame.

    Raises:
        ValueError: a count is not positive or the radius is negative.
    """

    n_customers: int = 5000
    n_terminals: int = 10000
    nb_days: int = 183
    start_date: date = date(2018, 4, 1)
    radius: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_customers < 1 or self.n_terminals < 1 or self.nb_days < 1:
            raise ValueError("n_customers, n_terminals and nb_days must be positive")
        if self.radius < 0:
            raise ValueError("radius must not be negative")


@dataclass(frozen=True)
class _Customers:
    xy: Floats
    mean_amount: Floats
    std_amount: Floats
    mean_nb_tx_per_day: Floats


def _customer_profiles(rng: np.random.Generator, n: int) -> _Customers:
    xy = rng.uniform(0, 100, (n, 2))
    mean_amount = rng.uniform(5, 100, n)
    return _Customers(xy, mean_amount, mean_amount / 2, rng.uniform(0, 4, n))


def _terminals_within(
    customers_xy: Floats, terminals_xy: Floats, radius: float, progress: Progress | None
) -> tuple[Ints, Ints]:
    """Each customer's terminals as CSR: ``(offsets, flat)``; customer c's are
    ``flat[offsets[c]:offsets[c + 1]]``, ascending."""
    n = len(customers_xy)
    task = progress.add_task("terminals in radius", total=n) if progress else None
    counts = np.zeros(n, dtype=np.int64)
    parts: list[Ints] = []
    r2 = radius * radius
    for lo in range(0, n, _DISTANCE_BLOCK):
        block = customers_xy[lo : lo + _DISTANCE_BLOCK]
        d2 = ((block[:, None, :] - terminals_xy[None, :, :]) ** 2).sum(axis=2)
        rows, cols = np.nonzero(d2 < r2)  # row-major: grouped by customer, terminals ascending
        counts[lo : lo + len(block)] = np.bincount(rows, minlength=len(block))
        parts.append(cols.astype(np.int64))
        if progress is not None and task is not None:
            progress.advance(task, len(block))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _transactions(
    rng: np.random.Generator,
    cust: _Customers,
    offsets: Ints,
    flat_terminals: Ints,
    nb_days: int,
) -> dict[str, npt.NDArray[np.generic]]:
    """Genuine transactions in (customer, day, draw) order."""
    n = len(cust.mean_amount)
    counts = rng.poisson(np.repeat(cust.mean_nb_tx_per_day, nb_days)).astype(np.int64)
    customer = np.repeat(np.repeat(np.arange(n, dtype=np.int64), nb_days), counts)
    day = np.repeat(np.tile(np.arange(nb_days, dtype=np.int64), n), counts)
    # int() truncates toward zero, as the handbook's `int(np.random.normal(...))` does.
    second = np.trunc(rng.normal(SECONDS_PER_DAY / 2, 20000, len(customer))).astype(np.int64)
    n_available = offsets[1:] - offsets[:-1]
    keep = (second > 0) & (second < SECONDS_PER_DAY) & (n_available[customer] > 0)
    customer, day, second = customer[keep], day[keep], second[keep]

    mean, std = cust.mean_amount[customer], cust.std_amount[customer]
    amount = rng.normal(mean, std)
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean[negative])
    amount = np.round(amount, 2)

    pick = np.floor(rng.random(len(customer)) * n_available[customer]).astype(np.int64)
    terminal = flat_terminals[offsets[customer] + pick]
    return {
        "customer_id": customer,
        "terminal_id": terminal,
        "tx_amount": amount,
        "tx_time_seconds": day * SECONDS_PER_DAY + second,
        "tx_time_days": day,
    }


def _add_frauds(
    rng: np.random.Generator,
    tx: dict[str, npt.NDArray[np.generic]],
    n_customers: int,
    n_terminals: int,
    nb_days: int,
    progress: Progress | None,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
    """Apply the three scenarios in order (later ones override); amounts change in place."""
    customer = tx["customer_id"].astype(np.int64)
    terminal = tx["terminal_id"].astype(np.int64)
    day = tx["tx_time_days"].astype(np.int64)
    amount = tx["tx_amount"].astype(np.float64)
    task = progress.add_task("fraud scenarios", total=2 * nb_days) if progress else None

    scenario = np.zeros(len(amount), dtype=np.int8)
    scenario[amount > AMOUNT_FRAUD_THRESHOLD] = 1

    # Scenario 2 as a (terminal x day) coverage grid built from a difference array: a
    # compromise on day c covers days [c, c + 28) of that terminal.
    diff = np.zeros((n_terminals, nb_days + 1), dtype=np.int32)
    for c in range(nb_days):
        hit = rng.choice(n_terminals, size=min(TERMINALS_PER_DAY, n_terminals), replace=False)
        diff[hit, c] += 1  # `hit` has no repeats, so fancy-index += is exact
        diff[hit, min(c + TERMINAL_FRAUD_DAYS, nb_days)] -= 1
        if progress is not None and task is not None:
            progress.advance(task)
    covered = np.cumsum(diff[:, :nb_days], axis=1) > 0
    scenario[covered[terminal, day]] = 2

    # Scenario 3 depends on the order of draws (an amount may be multiplied twice), so it
    # runs day by day; rows are in (customer, day) order, so each customer's window is one
    # contiguous slice found by binary search.
    key = customer * nb_days + day
    for c in range(nb_days):
        hit = rng.choice(n_customers, size=min(CUSTOMERS_PER_DAY, n_customers), replace=False)
        end_day = min(c + CUSTOMER_FRAUD_DAYS, nb_days)
        lo = np.searchsorted(key, np.sort(hit) * nb_days + c, side="left")
        hi = np.searchsorted(key, np.sort(hit) * nb_days + end_day, side="left")
        window = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])
        if len(window) >= 3:
            chosen = rng.choice(window, size=len(window) // 3, replace=False)
            amount[chosen] = np.round(amount[chosen] * CUSTOMER_FRAUD_MULTIPLIER, 2)
            scenario[chosen] = 3
        if progress is not None and task is not None:
            progress.advance(task)
    tx["tx_amount"] = amount
    return (scenario > 0).astype(np.int8), scenario


def generate(config: SimulationConfig, *, progress: bool = True) -> pd.DataFrame:
    """Simulate ``config`` and return the labelled transactions.

    Returns:
        One row per transaction, sorted by ``tx_datetime`` then ``transaction_id``, with the
        columns of :data:`COLUMNS`: ``transaction_id`` (int64, 0..N-1 in row order),
        ``tx_datetime`` (naive UTC, datetime64[ns], whole seconds), ``customer_id`` and
        ``terminal_id`` (int64), ``tx_amount`` (float64, cents), ``tx_time_seconds`` and
        ``tx_time_days`` (int64, since ``start_date`` 00:00), ``tx_fraud`` (int8 0/1) and
        ``tx_fraud_scenario`` (int8 0..3).

    Args:
        progress: show a rich progress bar on the terminal.
    """
    root = np.random.SeedSequence(config.seed)
    rng_cust, rng_term, rng_tx, rng_fraud = (np.random.default_rng(s) for s in root.spawn(4))
    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task("profiles and transactions", total=3)
        cust = _customer_profiles(rng_cust, config.n_customers)
        terminals_xy = rng_term.uniform(0, 100, (config.n_terminals, 2))
        bar.advance(task)
        offsets, flat = _terminals_within(cust.xy, terminals_xy, config.radius, bar)
        bar.advance(task)
        tx = _transactions(rng_tx, cust, offsets, flat, config.nb_days)
        bar.advance(task)
        fraud, scenario = _add_frauds(
            rng_fraud, tx, config.n_customers, config.n_terminals, config.nb_days, bar
        )

    seconds = tx["tx_time_seconds"].astype(np.int64)
    order = np.argsort(seconds, kind="stable")
    start = np.datetime64(config.start_date.isoformat(), "ns")
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(len(order), dtype=np.int64),
            "tx_datetime": start + seconds[order].astype("timedelta64[s]"),
            "customer_id": tx["customer_id"][order].astype(np.int64),
            "terminal_id": tx["terminal_id"][order].astype(np.int64),
            "tx_amount": tx["tx_amount"][order].astype(np.float64),
            "tx_time_seconds": seconds[order],
            "tx_time_days": tx["tx_time_days"][order].astype(np.int64),
            "tx_fraud": fraud[order],
            "tx_fraud_scenario": scenario[order],
        }
    )
    frame["tx_datetime"] = frame["tx_datetime"].astype("datetime64[ns]")
    return frame


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` to ``path`` (parents created, overwritten if present); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return path


@dataclass(frozen=True)
class SimulationSummary:
    """Headline figures of a simulated frame."""

    transactions: int
    frauds: int
    scenario_frauds: dict[int, int]
    customers: int
    terminals: int
    days: int

    @property
    def fraud_rate(self) -> float:
        """Fraction of transactions that are fraud."""
        return self.frauds / self.transactions if self.transactions else 0.0

    def scenario_share(self, scenario: int) -> float:
        """Fraction of the frauds that come from ``scenario`` (1, 2 or 3)."""
        return self.scenario_frauds.get(scenario, 0) / self.frauds if self.frauds else 0.0


def summary(df: pd.DataFrame) -> SimulationSummary:
    """Size, fraud count and frauds per scenario of a frame from :func:`generate`."""
    fraud = df["tx_fraud"] == 1
    by_scenario = df.loc[fraud, "tx_fraud_scenario"].value_counts()
    return SimulationSummary(
        transactions=len(df),
        frauds=int(fraud.sum()),
        scenario_frauds={s: int(by_scenario.get(s, 0)) for s in (1, 2, 3)},
        customers=int(df["customer_id"].nunique()),
        terminals=int(df["terminal_id"].nunique()),
        days=int(df["tx_time_days"].max()) + 1 if len(df) else 0,
    )
