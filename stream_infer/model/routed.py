"""One batch through the serving set: champion and challenger split by sticky key, each scoring
its rows in one call; the shadow scores every row, and never changes or stalls what is served.

Transport-free; the pipeline calls it (docs/ARCHITECTURE.md, "Model lifecycle").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stream_infer.errors import ModelError
from stream_infer.model.routing import challenger_mask
from stream_infer.model.serving import Served, ServingModels

ErrorHook = Callable[[Served, BaseException], None]


@dataclass(frozen=True, slots=True)
class RoutedScores:
    """Scores row-aligned with the batch, and which version served each row."""

    serving: ServingModels
    scores: npt.NDArray[np.float64]
    #: True where the challenger served the row; None when the champion served every row.
    challenger: npt.NDArray[np.bool_] | None
    #: The shadow's score of every row; None without a shadow, or when the shadow failed.
    shadow: npt.NDArray[np.float64] | None

    def is_positive(self, default_threshold: float) -> npt.NDArray[np.bool_]:
        """Each row's verdict by the rule of the version that served it (its manifest's
        direction and threshold; ``default_threshold``, the ``model.threshold`` setting, for a
        manifest that records none)."""
        s = self.serving
        champion = s.champion.model.rule(default_threshold)
        if self.challenger is None or s.challenger is None:
            return champion.flags(self.scores)
        flags = champion.flags(self.scores)
        flags[self.challenger] = s.challenger.model.rule(default_threshold).flags(
            self.scores[self.challenger]
        )
        return flags

    def served_by(self) -> list[tuple[Served, npt.NDArray[np.float64]]]:
        """Each serving version with the scores of the rows it served."""
        s = self.serving
        if self.challenger is None or s.challenger is None:
            return [(s.champion, self.scores)]
        return [
            (s.champion, self.scores[~self.challenger]),
            (s.challenger, self.scores[self.challenger]),
        ]


def predict(
    served: Served, rows: npt.NDArray[np.float64], on_error: ErrorHook | None
) -> npt.NDArray[np.float64]:
    """One version's scores, with one retry: a model failure is not the input's fault.

    Raises:
        ModelError: the version raised twice on this batch; the message names it.
    """
    model = served.model
    for attempt in (1, 2):
        try:
            return np.asarray(model.predict(rows), dtype=np.float64)
        except Exception as exc:
            if on_error is not None:
                on_error(served, exc)
            if attempt == 2:
                raise ModelError(
                    f"model {model.name} version {model.version} failed twice on a batch of "
                    f"{len(rows)} rows: {exc}"
                ) from exc
    raise AssertionError("unreachable")


def score(
    serving: ServingModels,
    matrix: npt.NDArray[np.float64],
    customer_ids: Sequence[str],
    on_error: ErrorHook | None = None,
) -> RoutedScores:
    """Score a batch with ``serving`` (taken once: the batch never mixes sets).

    Raises:
        ModelError: the champion or challenger failed twice (the shadow never raises).
    """
    # Each version casts to its own input dtype (float32 or float64, as its manifest says).
    rows = np.asarray(matrix, dtype=np.float64)
    mask: npt.NDArray[np.bool_] | None = None
    if serving.challenger is not None and serving.percent > 0 and len(rows):
        mask = challenger_mask(customer_ids, serving.percent)
        if not mask.any():
            mask = None
    if mask is None:
        scores = predict(serving.champion, rows, on_error)
    else:
        assert serving.challenger is not None
        scores = np.empty(len(rows), dtype=np.float64)
        if not mask.all():
            scores[~mask] = predict(serving.champion, rows[~mask], on_error)
        scores[mask] = predict(serving.challenger, rows[mask], on_error)
    shadow = None
    if serving.shadow is not None and len(rows):
        try:
            shadow = np.asarray(serving.shadow.model.predict(rows), dtype=np.float64)
        except Exception as exc:  # a failing shadow is counted, never served or fatal
            if on_error is not None:
                on_error(serving.shadow, exc)
    return RoutedScores(serving, scores, mask, shadow)
