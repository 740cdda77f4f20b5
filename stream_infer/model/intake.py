"""Bring your own model: check an ONNX artifact against a feature service and register it.

:func:`register_onnx` is the one way a model enters the registry, whoever exported it
(``stream-infer model register``, and ``stream-infer train`` for the example):

1. the artifact loads in ONNX Runtime (CPU);
2. its input fits the service (:func:`stream_infer.model.signature.check_inputs`: one 2-D
   float32/float64 input, the service's width, its names where the model records them);
3. the score output and what it means are settled (:class:`ScoreMeaning`): a probability is
   positive high unless told otherwise; a decision score needs its positive side and its
   threshold said (an IsolationForest's ``decision_function`` is low for anomalies, which fall
   below 0);
4. the model scores rows exactly as the stream will (:class:`LoadedModel`, same cast, same
   column): the reference set's rows when one is given, else a probe batch; every score must be
   finite, a probability in [0, 1];
5. the reference deciles (for drift) are those scores' deciles, and the version is registered
   as a candidate (the champion only when it is the model's first version, or ``promote``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from stream_infer.errors import DefinitionError
from stream_infer.model.interface import Registry
from stream_infer.model.manifest import ModelVersion, Positive, ScoreKind
from stream_infer.model.session import LoadedModel, open_session
from stream_infer.model.signature import Signature, check_inputs, choose_output
from stream_infer.streamdef.model_inputs import ServiceInputs

#: Rows of the probe batch scored when no reference set is given.
PROBE_ROWS = 64


@dataclass(frozen=True)
class FeatureService:
    """A service's name and ordered features, when no repository is read (``train``)."""

    service: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class ScoreMeaning:
    """What the caller says about the score; None = decided from the model (see the module
    docstring)."""

    output: str | None = None
    score_kind: ScoreKind | None = None
    positive: Positive | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class Provenance:
    """What the manifest records besides the artifact's own facts."""

    metrics: Mapping[str, float] = field(default_factory=dict)
    training_data_hash: str | None = None
    description: str = ""
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    code_commit: str | None = None


def reference_distribution(scores: npt.ArrayLike) -> tuple[list[float], list[int]]:
    """The 9 decile cut points of ``scores`` and how many fall in each of the 10 bins they
    make, half-open ``[cutᵢ₋₁, cutᵢ)`` (a score equal to a cut point falls in the bin above,
    as the drift check counts live scores).

    Raises:
        ValueError: ``scores`` is empty.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("a reference distribution needs at least one score")
    cuts = np.quantile(values, np.arange(1, 10) / 10)
    counts = np.bincount(np.searchsorted(cuts, values, side="right"), minlength=10)
    return [float(c) for c in cuts], [int(n) for n in counts]


def reference_rows(frame: pd.DataFrame, inputs: Sequence[str]) -> npt.NDArray[np.float64]:
    """The ``inputs`` columns of a training set, in order, as a float64 matrix.

    Raises:
        DefinitionError: the set lacks some of them, or has no rows.
    """
    missing = [n for n in inputs if n not in frame.columns]
    if missing:
        raise DefinitionError(f"the reference set lacks the service's features {missing}")
    if frame.empty:
        raise DefinitionError("the reference set has no rows")
    return frame[list(inputs)].to_numpy(np.float64)


def _probe_rows(width: int) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(0)
    return np.vstack([np.zeros((1, width)), rng.uniform(0, 200, size=(PROBE_ROWS - 1, width))])


def _settle(kind: ScoreKind, meaning: ScoreMeaning, output: str) -> tuple[Positive, float | None]:
    if kind == "probability":
        return meaning.positive or "high", meaning.threshold
    if meaning.positive is None or meaning.threshold is None:
        lacking = [
            what
            for what, value in (
                ("--positive", meaning.positive),
                ("--threshold", meaning.threshold),
            )
            if value is None
        ]
        raise DefinitionError(
            f"output {output} is a decision score, not a probability: say {' and '.join(lacking)}"
            " (an IsolationForest's scores are low for anomalies, which fall below 0: "
            "--positive low --threshold 0)"
        )
    return meaning.positive, meaning.threshold


def _check_scores(scores: npt.NDArray[np.floating[Any]], rows: int, kind: ScoreKind) -> None:
    if scores.shape != (rows,):
        raise DefinitionError(
            f"the output gave shape {scores.shape} for {rows} rows, not one score each"
        )
    bad = int(np.count_nonzero(~np.isfinite(scores)))
    if bad:
        raise DefinitionError(f"{bad} of {rows} rows scored NaN or infinite")
    if kind == "probability" and (scores.min() < 0.0 or scores.max() > 1.0):
        raise DefinitionError(
            f"scores run from {scores.min():.4g} to {scores.max():.4g}: not a probability "
            "(say --score-kind decision)"
        )


def register_onnx(
    registry: Registry,
    name: str,
    onnx_bytes: bytes,
    service: ServiceInputs,
    *,
    meaning: ScoreMeaning | None = None,
    reference: npt.NDArray[np.floating[Any]] | None = None,
    semver: str | None = None,
    provenance: Provenance | None = None,
    promote: bool = False,
    actor: str | None = None,
    reason: str = "",
) -> ModelVersion:
    """Check ``onnx_bytes`` against ``service`` and register it (see the module docstring).

    ``reference`` is the reference set's rows (the service's features in order,
    :func:`reference_rows`); without it the manifest has no reference deciles and the drift
    check has nothing to compare the version's live scores with.

    Raises:
        ModelArtifactError: ONNX Runtime cannot load the bytes; ``semver`` is not above the
            latest version's.
        DefinitionError: the inputs do not fit the service, no score output is obvious, the
            meaning of a decision score is not said, or the scores are not finite (not in
            [0, 1] for a probability); the message names the difference.
        ModelNotFoundError: ``name`` is not a valid model name.
    """
    meaning = meaning or ScoreMeaning()
    provenance = provenance or Provenance()
    session, provider = open_session(onnx_bytes, device="cpu")
    sig = Signature.of(session)
    input_name, dtype = check_inputs(sig, service)
    output, kind = choose_output(sig, meaning.output, meaning.score_kind)
    positive, threshold = _settle(kind, meaning, output)
    if kind == "probability" and threshold is not None and not 0.0 <= threshold <= 1.0:
        raise DefinitionError(f"a probability's threshold is in [0, 1], not {threshold}")
    model = LoadedModel(
        name, 0, tuple(service.inputs), provider, session, input_name, output, dtype, kind
    )
    rows = _probe_rows(len(service.inputs)) if reference is None else reference
    scores = model.predict(np.asarray(rows, dtype=np.float64))
    _check_scores(np.asarray(scores), len(rows), kind)
    deciles = histogram = None
    if reference is not None:
        deciles, histogram = reference_distribution(scores)
    return registry.register(
        name,
        onnx_bytes,
        service.inputs,
        input_name=input_name,
        output_name=output,
        metrics=provenance.metrics,
        training_data_hash=provenance.training_data_hash,
        feature_service=service.service,
        description=provenance.description,
        hyperparameters=provenance.hyperparameters,
        code_commit=provenance.code_commit,
        reference_deciles=deciles,
        reference_histogram=histogram,
        input_dtype=dtype,
        score_kind=kind,
        positive=positive,
        threshold=threshold,
        semver=semver,
        promote=promote,
        actor=actor,
        reason=reason,
    )
