"""On-demand views tagged stream_infer.vectorized get numpy arrays from the stream (lists from
Feast and the reference), and give the same values either way."""

from __future__ import annotations

from typing import Any

import numpy as np

from stream_infer.streamdef.ondemand import apply_on_demand
from stream_infer.streamdef.reference import on_demand_features
from stream_infer.streamdef.spec import FieldSpec, OnDemandView

from .fraud_defs import fraud_defs


def test_a_vectorized_view_receives_arrays_and_a_plain_one_lists() -> None:
    seen: dict[str, type] = {}

    def record(name: str) -> Any:
        def fn(inputs: dict[str, Any]) -> dict[str, Any]:
            seen[name] = type(inputs["x"])
            return {f"{name}_y": [float(v) * 2 for v in inputs["x"]]}

        return fn

    views = (
        OnDemandView("plain", ("x",), (FieldSpec("plain_y", "float64"),), record("plain")),
        OnDemandView("vec", ("x",), (FieldSpec("vec_y", "float64"),), record("vec"), True),
    )
    out = apply_on_demand(views, {"x": np.array([1.0, 2.0])}, {}, 2)
    assert seen == {"plain": list, "vec": np.ndarray}
    assert out["plain_y"].tolist() == out["vec_y"].tolist() == [2.0, 4.0]


def test_the_fraud_example_views_give_the_same_values_from_arrays_and_lists() -> None:
    defs = fraud_defs()
    assert all(v.vectorized for v in defs.on_demand)
    rng = np.random.default_rng(3)
    n = 500
    events = {
        "tx_amount": np.round(rng.uniform(0, 300, n), 2),
        "tx_datetime": rng.integers(0, 2_000_000_000, n),
    }
    counts = rng.integers(0, 5, (3, n)).astype(np.float64)
    feats: dict[str, np.ndarray] = {}
    for i, d in enumerate((1, 7, 30)):
        feats[f"terminal_nb_tx_{d}d"] = counts[i]
        feats[f"terminal_nb_fraud_{d}d"] = np.floor(counts[i] * rng.uniform(0, 1, n))
    stream = apply_on_demand(defs.on_demand, events, feats, n)
    lists = {k: v.tolist() for k, v in events.items()}
    reference = on_demand_features(defs, lists, {k: v.tolist() for k, v in feats.items()})
    for name, values in reference.items():
        assert stream[name].tolist() == [float(v) for v in values], name
