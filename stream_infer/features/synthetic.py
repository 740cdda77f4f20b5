"""Synthetic transaction histories for feature tests and benchmarks (numpy, seconds to build).

Not the handbook simulator (``loadgen.simulator``): no fraud scenarios, just the shapes that
stress the feature math. Customers have their own rates and spending levels, some stop and
resume (gaps longer than every window), some transactions share a customer and a second (ties),
and times land on exact window boundaries often.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stream_infer.features.definitions import SECONDS_PER_DAY

DEFAULT_START = pd.Timestamp("2026-01-05")  # a Monday


def synthetic_transactions(
    n_customers: int = 40,
    n_terminals: int = 30,
    n_days: int = 45,
    *,
    tx_per_day: float = 2.0,
    tie_fraction: float = 0.05,
    fraud_rate: float = 0.05,
    start: pd.Timestamp = DEFAULT_START,
    seed: int = 0,
) -> pd.DataFrame:
    """A labelled history in stream order (time ascending; same-second rows in random order).

    Args:
        n_customers: customers, each with a rate in ``[0, 2 * tx_per_day]`` a day.
        n_terminals: terminals; each has its own fraud rate around ``fraud_rate``.
        n_days: days from ``start`` (naive UTC midnight).
        tx_per_day: mean transactions per customer per day.
        tie_fraction: share of extra rows copied onto another row's customer and second.
        fraud_rate: mean fraud rate.
        seed: random seed; the same arguments give the same frame.

    Returns:
        ``transaction_id`` (0..n-1 in row order), ``tx_datetime`` (naive UTC, whole seconds),
        ``customer_id``, ``terminal_id``, ``tx_amount`` (2 decimals), ``tx_fraud`` (0/1).
    """
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0, 2 * tx_per_day, n_customers)
    # A third of the customers pause for a stretch longer than the longest window.
    pause_from = rng.integers(0, max(n_days, 1), n_customers)
    pause_len = np.where(rng.random(n_customers) < 1 / 3, rng.integers(31, 40, n_customers), 0)
    counts = rng.poisson(rate[:, None], (n_customers, n_days))
    day_idx = np.arange(n_days)[None, :]
    paused = (day_idx >= pause_from[:, None]) & (day_idx < (pause_from + pause_len)[:, None])
    counts[paused] = 0
    cust = np.repeat(np.repeat(np.arange(n_customers), n_days), counts.ravel())
    day = np.repeat(np.tile(np.arange(n_days), n_customers), counts.ravel())
    # Half the times sit on a few instants, so many pairs are exactly 1, 7 or 30 days apart.
    on_grid = rng.random(len(day)) < 0.5
    grid = np.array([0, 1, 3600 * 6, 3600 * 6 + 3599, 3600 * 7, SECONDS_PER_DAY - 1])
    second = np.where(
        on_grid, rng.choice(grid, len(day)), rng.integers(0, SECONDS_PER_DAY, len(day))
    )
    t = day * SECONDS_PER_DAY + second
    n_ties = int(len(t) * tie_fraction)
    if len(t) and n_ties:
        src = rng.integers(0, len(t), n_ties)
        cust = np.concatenate([cust, cust[src]])
        t = np.concatenate([t, t[src]])
    n = len(t)
    shuffle = rng.permutation(n)
    cust, t = cust[shuffle], t[shuffle]
    order = np.argsort(t, kind="stable")
    cust, t = cust[order], t[order]
    mean_amount = rng.uniform(5, 100, n_customers)
    amount = np.round(np.abs(rng.normal(mean_amount[cust], mean_amount[cust] / 2)), 2)
    terminal_risk = rng.beta(1, 1 / max(fraud_rate, 1e-9) - 1, n_terminals)
    terminal = rng.integers(0, n_terminals, n)
    fraud = (rng.random(n) < terminal_risk[terminal]).astype(np.int64)
    return pd.DataFrame(
        {
            "transaction_id": np.arange(n, dtype=np.int64),
            "tx_datetime": start + pd.to_timedelta(t, unit="s"),
            "customer_id": cust.astype(np.int64),
            "terminal_id": terminal.astype(np.int64),
            "tx_amount": amount,
            "tx_fraud": fraud,
        }
    )
