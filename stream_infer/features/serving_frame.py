"""The Feast serving repository's feature frame: the declared repository's training set
(:func:`stream_infer.streamdef.training.training_frame`), keyed and stamped as the serving
repository's batch sources and entity rows want it.

The serving repository (``features.feast_repo_dir``) declares the same inputs as the fraud
example's service; its batch sources are written from this frame, so what Feast joins back is
what the stream computes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from stream_infer.streamdef.spec import StreamDefinitions
from stream_infer.streamdef.training import epoch_seconds_of, training_frame

Ints = npt.NDArray[np.int64]

#: Transactions of one second are stamped this far apart (see :func:`event_timestamps`).
TIE_STEP_US = 1
_MAX_TIES = 1_000_000 // TIE_STEP_US
#: The keys of the frame, before the inputs.
KEY_COLUMNS = ("transaction_id", "customer_id", "terminal_id", "event_timestamp")


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


def label_rows(transactions: pd.DataFrame, labels: pd.DataFrame | None) -> pd.DataFrame:
    """The label source's rows: ``labels`` (``transaction_id``, ``tx_fraud``, and the
    transaction's ``terminal_id`` and ``tx_datetime`` or else taken from ``transactions``), or
    ``transactions``' own ``tx_fraud`` when ``labels`` is None. Unlabelled rows (NaN) are not
    labels; a repeated id counts once (the first).

    Raises:
        ValueError: a column is missing, or a label names an unknown transaction.
    """
    source = transactions if labels is None else labels
    need = ("transaction_id", "tx_fraud")
    missing = [c for c in need if c not in source.columns]
    if missing:
        raise ValueError(f"{'transactions' if labels is None else 'labels'} lack {missing}")
    out = source.drop_duplicates("transaction_id", keep="first")
    if not {"terminal_id", "tx_datetime"} <= set(out.columns):
        # Ids are strings on the wire: a parquet's ints and another's strings name the same.
        where = transactions[["transaction_id", "terminal_id", "tx_datetime"]]
        where = where.assign(transaction_id=where["transaction_id"].astype(str))
        out = out[list(need)].assign(transaction_id=out["transaction_id"].astype(str))
        out = out.drop_duplicates("transaction_id", keep="first")
        out = out.merge(where, on="transaction_id", how="left", validate="1:1")
        unknown = out["terminal_id"].isna()
        if unknown.any():
            ids = out.loc[unknown, "transaction_id"].head(5).tolist()
            raise ValueError(
                f"{int(unknown.sum())} labels name unknown transactions (e.g. {ids}) and "
                "carry no terminal_id/tx_datetime of their own"
            )
    out = out[out["tx_fraud"].notna()]
    return out.assign(tx_fraud=out["tx_fraud"].astype(np.int64))


def feature_frame(
    defs: StreamDefinitions, transactions: pd.DataFrame, labels: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every transaction's inputs (``defs.inputs``) after :data:`KEY_COLUMNS` (ids as
    strings, ``event_timestamp`` from :func:`event_timestamps`), rows in ``(time, row)``
    order, from the training set builder; labels as :func:`label_rows` reads them.

    Raises:
        ValueError: as :func:`label_rows`.
        DefinitionError: ``transactions`` lack a field of the event source.
    """
    frame = training_frame(defs, transactions, label_rows(transactions, labels))
    seconds = epoch_seconds_of(frame["tx_datetime"])
    out = frame[list(KEY_COLUMNS[:3])].reset_index(drop=True)
    out["event_timestamp"] = event_timestamps(seconds)
    return pd.concat([out, frame[list(defs.inputs)].reset_index(drop=True)], axis=1)
