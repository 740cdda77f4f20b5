"""What a version's score means: which rows are positive, and how to rank them.

A manifest says what its output is (``score_kind``), which end is the positive class
(``positive``) and where the cut is (``threshold``). :class:`ScoreRule` turns that into the
two things every reader of scores needs: :meth:`ScoreRule.flags` (the served verdict, the
canary's agreement) and :meth:`ScoreRule.ranking` (a score where higher is more positive, for
AUC, average precision and precision@k). PSI needs neither: it compares a version's scores
with the same version's reference deciles, whatever their direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stream_infer.model.manifest import Manifest, Positive, ScoreKind


@dataclass(frozen=True, slots=True)
class ScoreRule:
    """A row is positive when its score is at or beyond ``threshold`` on the ``positive`` side:
    ``score >= threshold`` for high, ``score <= threshold`` for low."""

    threshold: float
    positive: Positive = "high"
    kind: ScoreKind = "probability"

    @classmethod
    def of(cls, manifest: Manifest, default_threshold: float) -> ScoreRule:
        """The manifest's rule; ``default_threshold`` (the ``model.threshold`` setting) serves
        a manifest that records none (probabilities only: a decision score always has one)."""
        threshold = default_threshold if manifest.threshold is None else manifest.threshold
        return cls(threshold, manifest.positive, manifest.score_kind)

    def flags(self, scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """True where the score says positive."""
        values = np.asarray(scores, dtype=np.float64)
        flagged: npt.NDArray[np.bool_] = (
            values >= self.threshold if self.positive == "high" else values <= self.threshold
        )
        return flagged

    def ranking(self, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The scores turned so that higher means more positive (negated for ``low``)."""
        values = np.asarray(scores, dtype=np.float64)
        return values if self.positive == "high" else -values
