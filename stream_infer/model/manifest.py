"""What a registered version promises: its manifest, and the semantic version it is given.

The manifest records the artifact's sha256, its input signature, the ordered feature names
the input matrix's columns mean, and what reproducing and judging the version needs: test
metrics, the training data's hash, the code commit, the hyperparameters, and the reference
score distribution on the test week (the drift check compares live scores against it, see
docs/ARCHITECTURE.md). Manifests written before a field existed still load: every field
added since the first layout has a default.

What the score means (``score_kind``, ``positive``, ``threshold``) lets a model whose output
is not a probability be served: an IsolationForest's ``decision_function`` is a *decision*
score, *low* for anomalies. :class:`stream_infer.model.verdict.ScoreRule` reads them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
#: Cut points of the reference deciles (9 of them make 10 bins).
DECILE_CUTS = 9
#: The semantic version of a model's first version, and the base for a registry whose earlier
#: manifests predate semantic versions.
FIRST_SEMVER = "1.0.0"
SEMVER_PATTERN = r"^\d+\.\d+\.\d+$"

#: The element type of the model's input matrix (the session feeds exactly this).
InputDtype = Literal["float32", "float64"]
#: ``probability``: a class probability in [0, 1]; ``decision``: any real score (a margin, a
#: regression output, an anomaly score).
ScoreKind = Literal["probability", "decision"]
#: Which end of the score is the positive class (fraud, anomaly).
Positive = Literal["high", "low"]


class Manifest(BaseModel):
    """What a registered version promises about its artifact.

    ``reference_deciles`` are the 9 cut points of the version's scores on its test week;
    ``reference_histogram`` counts those scores in the 10 bins they make, half-open
    ``[cutᵢ₋₁, cutᵢ)`` (a score equal to a cut point falls in the bin above).

    ``input_dtype`` is the input matrix's element type. ``score_kind`` and ``positive`` say what
    the output means; a row is positive when its score is at or beyond ``threshold`` on the
    positive side (``>=`` for high, ``<=`` for low). ``threshold`` None (probabilities only)
    means the serving setting ``model.threshold``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int = Field(ge=1)
    created_at: datetime
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_name: str
    output_name: str
    feature_names: tuple[str, ...]
    metrics: dict[str, float] = Field(default_factory=dict)
    training_data_hash: str | None = None
    feature_service: str | None = None
    description: str = ""
    # Added with the model lifecycle; absent from older manifests.
    semver: str | None = Field(default=None, pattern=SEMVER_PATTERN)
    code_commit: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    reference_deciles: tuple[float, ...] | None = None
    reference_histogram: tuple[int, ...] | None = None
    created_by: str | None = None
    # Added with "bring your own model"; older manifests are float32 probabilities, high positive.
    input_dtype: InputDtype = "float32"
    score_kind: ScoreKind = "probability"
    positive: Positive = "high"
    threshold: float | None = None

    @model_validator(mode="after")
    def _threshold_fits_the_score(self) -> Manifest:
        if self.score_kind == "decision" and self.threshold is None:
            raise ValueError("a decision score needs its threshold in the manifest")
        probability = self.score_kind == "probability" and self.threshold is not None
        if probability and not 0.0 <= (self.threshold or 0.0) <= 1.0:
            raise ValueError(f"a probability threshold is in [0, 1], not {self.threshold}")
        return self

    @field_validator("reference_deciles")
    @classmethod
    def _nine_sorted_cuts(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is None:
            return None
        if len(value) != DECILE_CUTS or any(b < a for a, b in pairwise(value)):
            raise ValueError(f"reference_deciles must be {DECILE_CUTS} ascending cut points")
        return value

    @field_validator("reference_histogram")
    @classmethod
    def _ten_counts(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (len(value) != DECILE_CUTS + 1 or min(value) < 0):
            raise ValueError(f"reference_histogram must be {DECILE_CUTS + 1} counts >= 0")
        return value


class ModelVersion(BaseModel):
    """A registered version and where its files are on this machine.

    ``source`` is where the backend keeps the artifact (the folder, or an MLflow URI), and
    ``run_id`` the MLflow run that logged it (None for the folder backend).
    """

    model_config = ConfigDict(frozen=True)

    manifest: Manifest
    path: Path
    source: str | None = None
    run_id: str | None = None

    @property
    def artifact(self) -> Path:
        return self.path / MODEL_FILE


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_semver(text: str) -> tuple[int, int, int]:
    """``"1.2.3"`` as ``(1, 2, 3)``.

    Raises:
        ValueError: not three dot-separated integers.
    """
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a semantic version: {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def next_semver(
    previous: Manifest | None,
    *,
    feature_names: Sequence[str],
    input_name: str,
    training_data_hash: str | None,
    input_dtype: InputDtype = "float32",
    score_kind: ScoreKind = "probability",
    positive: Positive = "high",
) -> str:
    """The semantic version of a new version registered after ``previous`` (the latest one).

    Major when the ordered feature list, the input's name or dtype, or what the score means
    (kind, positive side) changes (a caller must change what it sends or how it reads the
    score), minor when the training data differs (retrained on new data), patch otherwise
    (same inputs, same data: a new estimator or hyperparameters). A previous manifest without a
    semantic version counts as :data:`FIRST_SEMVER`.
    """
    if previous is None:
        return FIRST_SEMVER
    major, minor, patch = parse_semver(previous.semver or FIRST_SEMVER)
    if (
        tuple(feature_names) != previous.feature_names
        or input_name != previous.input_name
        or (input_dtype, score_kind, positive)
        != (previous.input_dtype, previous.score_kind, previous.positive)
    ):
        return f"{major + 1}.0.0"
    if training_data_hash != previous.training_data_hash:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"
