"""On-demand views over a batch: one call a view with whole columns, outputs as arrays of their
declared kinds, views reading earlier views' outputs, and a broken function refused by name."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from stream_infer.errors import DeadLetterError, FatalError
from stream_infer.streamdef.ondemand import OnDemandError, apply_on_demand
from stream_infer.streamdef.spec import FieldSpec, OnDemandFunction, OnDemandView

EVENTS = {"amount": np.array([1.5, 2.0, 4.0]), "country": np.array(["FR", "DE", "FR"], object)}
FEATURES = {"count_1d": np.array([1.0, 2.0, 3.0])}


def view(fn: OnDemandFunction, *outputs: FieldSpec, inputs: tuple[str, ...] = ()) -> OnDemandView:
    return OnDemandView("v", inputs or ("amount", "country", "count_1d"), outputs, fn)


def test_each_view_is_called_once_with_lists_and_later_views_read_earlier_outputs() -> None:
    calls: list[dict[str, list[Any]]] = []

    def first(cols: dict[str, list[Any]]) -> dict[str, list[Any]]:
        calls.append(cols)
        return {
            "per_tx": [a / c for a, c in zip(cols["amount"], cols["count_1d"], strict=True)],
            "domestic": [c == "FR" for c in cols["country"]],
            "code": [len(c) for c in cols["country"]],
            "label": [c.lower() for c in cols["country"]],
        }

    def second(cols: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {"twice": [2 * p for p in cols["per_tx"]]}

    out = apply_on_demand(
        (
            view(
                first,
                FieldSpec("per_tx", "float64"),
                FieldSpec("domestic", "bool"),
                FieldSpec("code", "int64"),
                FieldSpec("label", "string"),
            ),
            OnDemandView("w", ("per_tx",), (FieldSpec("twice", "float64"),), second),
        ),
        EVENTS,
        FEATURES,
        3,
    )
    assert len(calls) == 1 and calls[0]["amount"] == [1.5, 2.0, 4.0]
    assert isinstance(calls[0]["country"], list)
    np.testing.assert_array_equal(out["per_tx"], [1.5, 1.0, 4.0 / 3.0])
    assert out["domestic"].dtype == np.bool_ and out["domestic"].tolist() == [True, False, True]
    assert out["code"].dtype == np.int64
    assert out["label"].dtype == object and out["label"].tolist() == ["fr", "de", "fr"]
    np.testing.assert_array_equal(out["twice"], [3.0, 2.0, 8.0 / 3.0])


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (
            lambda cols: {"y": [1.0, 2.0, 3.0], "z": [0.0] * 3},
            r"returned \['y', 'z'\], declared \['y'\]",
        ),
        (lambda cols: {}, r"returned \[\], declared \['y'\]"),
        (lambda cols: [1.0, 2.0, 3.0], r"returned list, declared \['y'\]"),
        (lambda cols: {"y": [1.0, 2.0]}, r"output 'y' has 2 values for 3 rows"),
        (lambda cols: {"y": ["a", "b", "c"]}, r"output 'y' is not float64"),
        (lambda cols: {"y": [[1.0], [2.0], [3.0]]}, r"output 'y' is not one value a row"),
    ],
)
def test_a_function_breaking_its_declaration_is_refused_naming_view_and_output(
    fn: OnDemandFunction, message: str
) -> None:
    with pytest.raises(OnDemandError, match=f"on-demand view 'v'.*{message}") as info:
        apply_on_demand((view(fn, FieldSpec("y", "float64")),), EVENTS, FEATURES, 3)
    assert isinstance(info.value, FatalError)
    assert not isinstance(info.value, DeadLetterError)  # the user's code, not the event
