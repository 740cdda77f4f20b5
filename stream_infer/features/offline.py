"""The 15 features of a whole history at once: the training set, vectorised.

Same definitions as the stream (:mod:`stream_infer.features.definitions`), evaluated in batch
with numpy: every transaction's customer windows by binary search over its customer's
time-sorted history, every terminal window by binary search over the time-sorted labels. No
per-row Python, so 1.75M transactions take seconds.

Conventions shared with the stream:

- times are whole UTC seconds (naive datetimes are UTC; sub-second parts are dropped, as
  ``int(datetime.timestamp())`` does in the stream);
- row order is stream order: transactions of one customer within one second are ordered by
  their row, and a later row is never in an earlier row's window. A row's windows hold its
  customer's rows up to its own (second, row) position in the whole history: exactly what the
  stream computes as long as each customer's rows arrive in time order (one Kafka partition
  per customer, a time-ordered producer);
- terminal windows count labelled transactions only (a NaN ``tx_fraud`` is not a label).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from stream_infer.features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_HORIZON_S,
    FEATURE_NAMES,
    LABEL_DELAY_DAYS,
    SECONDS_PER_DAY,
    TERMINAL_FEATURES,
    WINDOWS_DAYS,
)

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

TRANSACTION_COLUMNS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount")
#: Transactions of one second are stamped this far apart (see `event_timestamps`).
TIE_STEP_US = 1
_MAX_TIES = 1_000_000 // TIE_STEP_US


def epoch_seconds(times: pd.Series) -> Ints:
    """Whole UTC seconds of a datetime column (naive = UTC), floored like the stream's ``int()``.

    Raises:
        ValueError: a time is missing.
    """
    ts = pd.to_datetime(times)
    if ts.isna().any():
        raise ValueError(f"{int(ts.isna().sum())} missing tx_datetime values")
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = ts.to_numpy("datetime64[ns]").view(np.int64)
    return ns // 1_000_000_000


def request_columns(seconds: Ints, amounts: Floats) -> Floats:
    """``(n, 3)`` request features, as :func:`definitions.request_features` for each row."""
    weekday = (seconds // SECONDS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday
    hour = (seconds % SECONDS_PER_DAY) // 3600
    return np.column_stack([amounts, weekday >= 5, hour <= 6]).astype(np.float64)


def _codes(values: pd.Series | pd.Index) -> Ints:
    codes, _ = pd.factorize(values, use_na_sentinel=False)
    return codes.astype(np.int64)


def customer_windows(customers: Ints, seconds: Ints, amounts: Floats) -> Floats:
    """``(n, 6)`` customer window features, in :data:`CUSTOMER_FEATURES` order.

    Row ``i``'s windows hold its customer's rows with time in ``(t_i - n days, t_i]`` that are
    not later rows of the same second: what :class:`definitions.CustomerHistory` gives when the
    rows are added in order with ``seq`` = row index.
    """
    n = len(seconds)
    out = np.empty((n, len(CUSTOMER_FEATURES)), dtype=np.float64)
    if n == 0:
        return out
    # lexsort is stable: rows of one customer and one second keep their input (stream) order.
    order = np.lexsort((seconds, customers))
    cust = customers[order]
    t = seconds[order] - seconds.min()
    span = int(t.max()) + CUSTOMER_HORIZON_S + 1
    if int(cust.max()) >= np.iinfo(np.int64).max // span:
        raise ValueError("too many customers over too long a time span for int64 keys")
    # One sorted key (customer, time): a window start is one binary search, and a search for
    # t - n days can never land in the previous customer (span exceeds the horizon).
    key = cust * span + t
    pos = np.arange(n, dtype=np.int64)
    first = np.searchsorted(cust, cust, side="left")
    # Per-customer running sums (pandas uses Kahan summation here), so a window's sum is a
    # difference of two near-exact numbers of the customer's own magnitude.
    running = pd.Series(amounts[order]).groupby(cust, sort=False).cumsum().to_numpy(np.float64)
    sorted_out = np.empty_like(out)
    for j, days in enumerate(WINDOWS_DAYS):
        start = np.searchsorted(key, key - days * SECONDS_PER_DAY, side="right")
        count = pos - start + 1
        before = np.where(start > first, running[np.maximum(start - 1, 0)], 0.0)
        sorted_out[:, 2 * j] = count
        sorted_out[:, 2 * j + 1] = (running - before) / count
    out[order] = sorted_out
    return out


def terminal_windows(
    label_terminals: Ints,
    label_days: Ints,
    label_frauds: Ints,
    terminals: Ints,
    days: Ints,
) -> Floats:
    """``(m, 6)`` terminal window features for ``(terminals[k], days[k])`` queries.

    Each window counts the labels of the terminal dated on UTC days
    ``[D - LABEL_DELAY_DAYS - n, D - LABEL_DELAY_DAYS)`` and the fraction of them that were
    fraud (0 when there are none): :func:`definitions.terminal_features` for day D. Terminal
    codes must come from one factorisation shared by labels and queries.
    """
    m = len(days)
    out = np.zeros((m, len(TERMINAL_FEATURES)), dtype=np.float64)
    if m == 0 or len(label_days) == 0:
        return out
    dmin = int(label_days.min())
    dmax = int(label_days.max())
    span = dmax - dmin + 2
    order = np.lexsort((label_days, label_terminals))
    key = label_terminals[order] * span + (label_days[order] - dmin)
    frauds = np.concatenate([[0], np.cumsum(label_frauds[order], dtype=np.int64)])

    # Sorted needles make the binary searches cache-friendly (about 6x faster at 1.7M rows);
    # clipping is monotone, so every shifted bound below stays sorted too.
    q_order = np.lexsort((days, terminals))
    q_base = terminals[q_order] * span
    end = days[q_order] - LABEL_DELAY_DAYS

    def labels_before(day: Ints) -> Ints:
        # Labels of the query's terminal dated before ``day``; clipping to the labelled range
        # keeps each search inside its own terminal and changes no count.
        offset = np.clip(day, dmin, dmax + 1) - dmin
        return np.searchsorted(key, q_base + offset, side="left").astype(np.int64)

    upto = labels_before(end)
    sorted_out = np.empty_like(out)
    for j, n in enumerate(WINDOWS_DAYS):
        since = labels_before(end - n)
        nb = upto - since
        fr = frauds[upto] - frauds[since]
        sorted_out[:, 2 * j] = nb
        sorted_out[:, 2 * j + 1] = np.divide(fr, nb, out=np.zeros(m), where=nb > 0)
    out[q_order] = sorted_out
    return out


def event_timestamps(seconds: Ints) -> pd.Series:
    """Event timestamps: the second, plus ``k`` µs for the ``k``-th row (row order) in it.

    Feast's point-in-time join keeps, per entity row, the last feature row at or before it, and
    collapses entity rows that share keys and time. Distinct times ordered like the stream keep
    two transactions of one customer (or terminal) in one second apart; otherwise the stamp is
    the transaction's time.

    Raises:
        ValueError: a million rows share one second.
    """
    order = np.argsort(seconds, kind="stable")
    ordered = seconds[order]
    rank = np.empty_like(seconds)
    rank[order] = np.arange(len(seconds)) - np.searchsorted(ordered, ordered, side="left")
    if len(rank) and int(rank.max()) >= _MAX_TIES:
        raise ValueError("a million transactions share one second")
    us = seconds * 1_000_000 + rank * TIE_STEP_US
    return pd.Series(pd.to_datetime(us, unit="us", utc=True), name="event_timestamp")


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}")


def _labels_frame(transactions: pd.DataFrame, labels: pd.DataFrame | None) -> pd.DataFrame:
    """``terminal_id``, ``tx_datetime``, ``tx_fraud`` of every labelled transaction."""
    if labels is None:
        _require(transactions, ("tx_fraud",), "transactions (no labels given)")
        out = transactions[["terminal_id", "tx_datetime", "tx_fraud"]]
    else:
        _require(labels, ("transaction_id", "tx_fraud"), "labels")
        # At-least-once delivery repeats labels; the label processor counts each one once.
        labels = labels.drop_duplicates("transaction_id", keep="first")
        if {"terminal_id", "tx_datetime"} <= set(labels.columns):
            out = labels[["terminal_id", "tx_datetime", "tx_fraud"]]
        else:
            where = transactions[["transaction_id", "terminal_id", "tx_datetime"]]
            out = labels[["transaction_id", "tx_fraud"]].merge(
                where, on="transaction_id", how="left", validate="one_to_one"
            )
            unknown = out["terminal_id"].isna()
            if unknown.any():
                ids = out.loc[unknown, "transaction_id"].head(5).tolist()
                raise ValueError(
                    f"{int(unknown.sum())} labels name unknown transactions (e.g. {ids}) and "
                    "carry no terminal_id/tx_datetime of their own"
                )
    return out[out["tx_fraud"].notna()]


def _label_arrays(
    labels: pd.DataFrame, query_terminals: pd.Series
) -> tuple[Ints, Ints, Ints, Ints]:
    """Label terminal codes, days, frauds, and the query terminals' codes (one factorisation)."""
    codes = _codes(pd.concat([labels["terminal_id"], query_terminals], ignore_index=True))
    n = len(labels)
    days = epoch_seconds(labels["tx_datetime"]) // SECONDS_PER_DAY
    frauds = labels["tx_fraud"].to_numpy(np.int64)
    return codes[:n], days, frauds, codes[n:]


def _checked(transactions: pd.DataFrame) -> pd.DataFrame:
    _require(transactions, TRANSACTION_COLUMNS, "transactions")
    ids = transactions["transaction_id"]
    if not ids.is_unique:
        dup = ids[ids.duplicated()].head(5).tolist()
        raise ValueError(f"duplicate transaction_id values, e.g. {dup}")
    if transactions["tx_amount"].isna().any():
        raise ValueError("missing tx_amount values")
    return transactions.reset_index(drop=True)


def _keys(tx: pd.DataFrame, seconds: Ints) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": tx["transaction_id"].to_numpy(),
            "customer_id": tx["customer_id"].to_numpy(),
            "terminal_id": tx["terminal_id"].to_numpy(),
            "event_timestamp": event_timestamps(seconds),
        }
    )


def compute_features(
    transactions: pd.DataFrame, labels: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every transaction's 15 model inputs, in input row order.

    Args:
        transactions: ``transaction_id`` (unique), ``tx_datetime`` (naive = UTC),
            ``customer_id``, ``terminal_id``, ``tx_amount``, and ``tx_fraud`` when ``labels``
            is None. Row order is stream order (it breaks same-second ties).
        labels: ``transaction_id`` and ``tx_fraud``, plus ``terminal_id`` and
            ``tx_datetime`` or else taken from ``transactions``. Repeated ids count once.

    Returns:
        ``transaction_id``, ``customer_id``, ``terminal_id``, ``event_timestamp`` (UTC, see
        :func:`event_timestamps`) and the :data:`FEATURE_NAMES` columns (float64).

    Raises:
        ValueError: a column is missing, a transaction id repeats, an amount or time is
            missing, or a label names an unknown transaction.
    """
    tx = _checked(transactions)
    seconds = epoch_seconds(tx["tx_datetime"])
    amounts = tx["tx_amount"].to_numpy(np.float64)
    customers = _codes(tx["customer_id"])
    lab = _labels_frame(tx, labels)
    l_term, l_days, l_fraud, q_term = _label_arrays(lab, tx["terminal_id"])
    values = np.hstack(
        [
            request_columns(seconds, amounts),
            customer_windows(customers, seconds, amounts),
            terminal_windows(l_term, l_days, l_fraud, q_term, seconds // SECONDS_PER_DAY),
        ]
    )
    out = _keys(tx, seconds)
    return pd.concat([out, pd.DataFrame(values, columns=list(FEATURE_NAMES))], axis=1)


def customer_feature_rows(transactions: pd.DataFrame) -> pd.DataFrame:
    """The customer view's offline rows: one per transaction, at its event timestamp.

    Columns: ``transaction_id``, ``customer_id``, ``event_timestamp`` and the
    :data:`CUSTOMER_FEATURES` (float64), in input row order. Labels are not needed.

    Raises:
        ValueError: as :func:`compute_features` (minus the label checks).
    """
    tx = _checked(transactions)
    seconds = epoch_seconds(tx["tx_datetime"])
    customers = _codes(tx["customer_id"])
    values = customer_windows(customers, seconds, tx["tx_amount"].to_numpy(np.float64))
    out = _keys(tx, seconds).drop(columns="terminal_id")
    return pd.concat([out, pd.DataFrame(values, columns=list(CUSTOMER_FEATURES))], axis=1)


def terminal_daily_rows(labels: pd.DataFrame, days: npt.ArrayLike | None = None) -> pd.DataFrame:
    """One row per (terminal, UTC day D): the terminal features of any transaction on day D.

    Args:
        labels: labelled transactions: ``terminal_id``, ``tx_datetime``, ``tx_fraud`` (NaN =
            not labelled, not counted).
        days: the day numbers (days since 1970-01-01) to emit for every terminal; default each
            day from the first to the last labelled day.

    Returns:
        ``terminal_id``, ``event_timestamp`` (D 00:00 UTC) and the :data:`TERMINAL_FEATURES`
        (float64), terminal-major, days ascending.

    Raises:
        ValueError: a column is missing.
    """
    _require(labels, ("terminal_id", "tx_datetime", "tx_fraud"), "labels")
    lab = labels[labels["tx_fraud"].notna()]
    terminals = pd.Series(pd.unique(labels["terminal_id"]))
    l_term, l_days, l_fraud, t_codes = _label_arrays(lab, terminals)
    if days is None:
        day_list = (
            np.arange(l_days.min(), l_days.max() + 1) if len(l_days) else np.empty(0, np.int64)
        )
    else:
        day_list = np.unique(np.asarray(days, dtype=np.int64))
    q_term = np.repeat(t_codes, len(day_list))
    q_days = np.tile(day_list, len(t_codes))
    values = terminal_windows(l_term, l_days, l_fraud, q_term, q_days)
    out = pd.DataFrame(
        {
            "terminal_id": np.repeat(terminals.to_numpy(), len(day_list)),
            "event_timestamp": pd.to_datetime(q_days * SECONDS_PER_DAY, unit="s", utc=True),
        }
    )
    return pd.concat([out, pd.DataFrame(values, columns=list(TERMINAL_FEATURES))], axis=1)
