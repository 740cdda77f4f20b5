"""Per-feature attributions of ``/v1`` predictions (``parameters.return_explanations``).

For a prediction with features ``x`` and score ``s``, feature ``i``'s attribution is
``s - f(x with xᵢ replaced by refᵢ)``: how much this feature's value, against the reference,
moved this score. The reference is the training-set mean when the version's manifest records
one (a ``feature_means`` field of the manifest), else 0; the answer says which. The perturbed
rows of every transaction scored by one version go through the tensor batcher as one request
(one model call, shared with whatever else is queued), against the version that scored the
prediction; they are not counted in the inference statistics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from stream_infer.errors import BatchTimeoutError, QueueFullError, StreamInferError
from stream_infer.features.definitions import FEATURE_NAMES, N_FEATURES
from stream_infer.sidecar.protocol import ProtocolError
from stream_infer.sidecar.scoring import Scored, TensorRequest

if TYPE_CHECKING:
    from stream_infer.sidecar.core import Sidecar

Reference = tuple[npt.NDArray[np.float32], str]


def reference_of(manifest: Any) -> Reference:
    """The reference row of a version and its kind ("training_mean" or "zero")."""
    means = getattr(manifest, "feature_means", None)
    if means is not None and len(means) == N_FEATURES:
        return np.asarray(means, dtype=np.float32), "training_mean"
    return np.zeros(N_FEATURES, dtype=np.float32), "zero"


def perturbed(rows: npt.NDArray[np.float32], reference: npt.NDArray[np.float32]) -> Any:
    """``(k * F, F)``: for each of the k rows, F copies with feature i set to ``reference[i]``
    in the i-th copy."""
    k = len(rows)
    out = np.repeat(rows[:, None, :], N_FEATURES, axis=1)
    diagonal = np.arange(N_FEATURES)
    out[:, diagonal, diagonal] = reference
    return out.reshape(k * N_FEATURES, N_FEATURES)


class Explainer:
    """Attributions through the sidecar's tensor batcher; references cached per version."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self._references: dict[int, Reference] = {}

    async def _reference(self, version: int) -> Reference:
        known = self._references.get(version)
        if known is not None:
            return known
        s = self.sidecar
        try:
            manifest = await asyncio.to_thread(s.registry.manifest, s.model.name, version)
        except StreamInferError as exc:
            raise ProtocolError(f"cannot read version {version}'s manifest: {exc}", 503) from exc
        self._references[version] = reference_of(manifest)
        return self._references[version]

    async def explain(self, scored: Sequence[Scored]) -> list[dict[str, Any]]:
        """One explanation per prediction, in order.

        Raises:
            ProtocolError: 503 (Retry-After) when the queue is full or the version that
                scored a prediction left the serving set meanwhile; 504 on a timeout.
        """
        batcher = self.sidecar.tensor_batcher
        assert batcher is not None
        timeout_s = self.sidecar.settings.serve.request_timeout_ms / 1000
        groups: dict[int, list[int]] = {}
        for i, one in enumerate(scored):
            groups.setdefault(one.route.version, []).append(i)
        answers: list[dict[str, Any]] = [{} for _ in scored]
        for version, members in groups.items():
            reference, kind = await self._reference(version)
            rows = np.array(
                [[scored[i].features[n] for n in FEATURE_NAMES] for i in members],
                dtype=np.float32,
            )
            request = TensorRequest(perturbed(rows, reference), version, counted=False)
            try:
                result = await batcher.submit(request, timeout_s)
            except QueueFullError as exc:
                raise ProtocolError(str(exc), 503, retry_after=True) from exc
            except BatchTimeoutError as exc:
                raise ProtocolError(str(exc), 504) from exc
            if result.output is None:
                raise ProtocolError(f"version {version} left the serving set", 503, True)
            out = result.output
            without = (out[:, -1] if out.ndim == 2 else out).reshape(len(members), N_FEATURES)
            for row, i in enumerate(members):
                score = scored[i].score
                answers[i] = {
                    "method": "replace_with_reference",
                    "reference": kind,
                    "features": {
                        name: {
                            "value": float(rows[row, j]),
                            "reference": float(reference[j]),
                            "score_without": float(without[row, j]),
                            "attribution": score - float(without[row, j]),
                        }
                        for j, name in enumerate(FEATURE_NAMES)
                    },
                }
        return answers
