"""The fraud example's definitions and event columns for tests that drive the feature computer
directly: transactions as (id, customer, time, amount, seq) rows."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import numpy.typing as npt

from stream_infer.state.entity_rows import EntityRows, EntityWriteSet
from stream_infer.streamdef.reference import stream_features
from stream_infer.streamdef.spec import SEQ_COLUMN, StreamDefinitions

from .conftest import REPO

Tx = tuple[str, str, int, float, int]  # transaction_id, customer_id, epoch s, amount, seq


@cache
def fraud_defs() -> StreamDefinitions:
    from stream_infer.streamdef.feast_reader import load_definitions

    return load_definitions(REPO / "examples" / "fraud" / "feature_repo")


def columns(txs: Sequence[Tx]) -> dict[str, np.ndarray]:
    """Event columns (terminal ``T``) of ``txs``."""
    return {
        "transaction_id": np.array([t[0] for t in txs], dtype=object),
        "customer_id": np.array([t[1] for t in txs], dtype=object),
        "terminal_id": np.array(["T"] * len(txs), dtype=object),
        "tx_datetime": np.array([t[2] for t in txs], dtype=np.int64),
        "tx_amount": np.array([t[3] for t in txs], dtype=np.float64),
        SEQ_COLUMN: np.array([t[4] for t in txs], dtype=np.int64),
    }


def stream_columns(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The stream views' features of a computer's matrix (the service's order)."""
    defs = fraud_defs()
    return matrix[:, [defs.inputs.index(n) for n in defs.stream_features()]]


def reference(txs: Sequence[Tx]) -> npt.NDArray[np.float64]:
    """Each event's stream features by the reference evaluator (nothing evicted or pruned)."""
    cols = {name: values.tolist() for name, values in columns(txs).items()}
    feats = stream_features(fraud_defs(), cols)
    return np.array([feats[n] for n in fraud_defs().stream_features()]).T.reshape(len(txs), -1)


def write_set(
    rows: Sequence[tuple[str, str, int, int, list[float]]], dropped: bool = False
) -> EntityWriteSet:
    """A write set adding (or, ``dropped``, deleting) (key, id, time, seq, data) rows."""
    width = len(rows[0][4]) if rows else 0
    cols = EntityRows(
        [r[0] for r in rows],
        [r[1] for r in rows],
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=np.int64),
        np.array([r[4] for r in rows], dtype=np.float64).reshape(len(rows), width),
    )
    empty = EntityRows.empty(width)
    return EntityWriteSet([0], empty, cols) if dropped else EntityWriteSet([0], cols, empty)
