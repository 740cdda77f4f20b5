"""On-demand views applied to a whole batch: event columns and computed features in, one numpy
column per declared output out. Each view's function is called once per batch, Feast's python
mode (a dict of lists in, a dict of lists out), or numpy arrays in for a view tagged
``stream_infer.vectorized = "true"``; views run in declaration order, so a view may read the
outputs of the views before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_infer.errors import FatalError
from stream_infer.streamdef.spec import OnDemandView, ValueKind

_DTYPES: dict[ValueKind, type] = {
    "float64": np.float64,
    "int64": np.int64,
    "bool": np.bool_,
    "string": object,
}


class OnDemandError(FatalError):
    """An on-demand view's function broke its contract (missing, extra or misnamed outputs,
    wrong lengths, values that do not convert to the declared kind). A bug in the user's
    repository, not in the event: nothing is dead-lettered, the process stops."""


def apply_on_demand(
    views: tuple[OnDemandView, ...],
    events: Mapping[str, npt.NDArray[Any]],
    features: Mapping[str, npt.NDArray[Any]],
    n: int,
) -> dict[str, npt.NDArray[Any]]:
    """Every view's outputs for a batch of ``n`` rows, as arrays of their declared kind.

    Raises:
        OnDemandError: a function returned other names than declared, a column of another
            length than ``n``, or values that do not convert.
        KeyError: an input is neither an event field, a feature, nor an earlier view's output.
    """
    known: dict[str, npt.NDArray[Any]] = {**events, **features}
    out: dict[str, npt.NDArray[Any]] = {}
    for view in views:
        if view.vectorized:  # declared to take arrays (and lists, as Feast calls it)
            arrays: dict[str, Any] = {name: known[name] for name in view.inputs}
            got = view.function(arrays)
        else:
            got = view.function({name: known[name].tolist() for name in view.inputs})
        want = [o.name for o in view.outputs]
        if not isinstance(got, Mapping) or sorted(got) != sorted(want):
            names = sorted(got) if isinstance(got, Mapping) else type(got).__name__
            raise OnDemandError(f"on-demand view {view.name!r} returned {names}, declared {want}")
        for spec in view.outputs:
            column = got[spec.name]
            if len(column) != n:
                raise OnDemandError(
                    f"on-demand view {view.name!r}: output {spec.name!r} has "
                    f"{len(column)} values for {n} rows"
                )
            try:
                arr: npt.NDArray[Any] = np.asarray(column, dtype=_DTYPES[spec.kind])
            except (TypeError, ValueError) as exc:
                raise OnDemandError(
                    f"on-demand view {view.name!r}: output {spec.name!r} is not {spec.kind}: {exc}"
                ) from exc
            if arr.shape != (n,):
                raise OnDemandError(
                    f"on-demand view {view.name!r}: output {spec.name!r} is not one value a row"
                )
            out[spec.name] = arr
            known[spec.name] = arr
    return out
