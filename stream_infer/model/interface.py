"""What a model registry offers, whichever backend holds it (folder or MLflow).

Consumers (the serving path, the CLI, tests' fakes) depend on :class:`Registry`; the backends
share their implementation in :class:`stream_infer.model.backend.RegistryBase`, whose
docstrings say what each method raises. Roles, the serving set and the history are described
in :mod:`stream_infer.model.roles`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from stream_infer.model.manifest import InputDtype, Manifest, ModelVersion, Positive, ScoreKind
from stream_infer.model.roles import LoadState, RoleEvent, RoleState, ServingSet, VersionStatus


class Registry(Protocol):
    """A model registry: versions with manifests, serving roles, history and load reports."""

    def names(self) -> list[str]:
        """Registered model names, sorted."""
        ...

    def versions(self, name: str) -> list[int]:
        """Registered versions of ``name``, ascending (empty if none)."""
        ...

    def register(
        self,
        name: str,
        onnx_bytes: bytes,
        feature_names: Sequence[str],
        *,
        input_name: str = "input",
        output_name: str = "probabilities",
        metrics: Mapping[str, float] | None = None,
        training_data_hash: str | None = None,
        feature_service: str | None = None,
        description: str = "",
        hyperparameters: Mapping[str, Any] | None = None,
        code_commit: str | None = None,
        reference_deciles: Sequence[float] | None = None,
        reference_histogram: Sequence[int] | None = None,
        input_dtype: InputDtype = "float32",
        score_kind: ScoreKind = "probability",
        positive: Positive = "high",
        threshold: float | None = None,
        semver: str | None = None,
        promote: bool = False,
        actor: str | None = None,
        reason: str = "",
    ) -> ModelVersion:
        """Store a new version as a candidate; see :meth:`RegistryBase.register`."""
        ...

    def manifest(self, name: str, version: int) -> Manifest:
        """A version's manifest, without fetching its artifact."""
        ...

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """A version by number, or the champion."""
        ...

    def verify(self, model: ModelVersion) -> bytes:
        """The artifact's bytes, checked against the manifest's sha256."""
        ...

    def roles(self, name: str) -> RoleState:
        """The model's current roles and revision."""
        ...

    def serving(self, name: str) -> ServingSet:
        """Champion, challenger and percent, shadow, revision: the watcher's cheap read."""
        ...

    def history(self, name: str) -> list[RoleEvent]:
        """Every role change, oldest first."""
        ...

    def promote(
        self, name: str, version: int, *, actor: str | None = None, reason: str = ""
    ) -> RoleEvent:
        """``version`` becomes champion."""
        ...

    def rollback(self, name: str, *, actor: str | None = None, reason: str = "") -> RoleEvent:
        """The previous champion serves again."""
        ...

    def canary(
        self, name: str, version: int, percent: int, *, actor: str | None = None, reason: str = ""
    ) -> RoleEvent:
        """``version`` becomes the challenger at ``percent``."""
        ...

    def shadow(
        self, name: str, version: int, *, actor: str | None = None, reason: str = ""
    ) -> RoleEvent:
        """``version`` becomes the shadow."""
        ...

    def clear(
        self, name: str, role: str, *, actor: str | None = None, reason: str = ""
    ) -> RoleEvent:
        """Nobody holds ``role`` (challenger or shadow) any more."""
        ...

    def record_status(
        self,
        name: str,
        version: int,
        state: LoadState,
        reason: str = "",
        *,
        reporter: str | None = None,
    ) -> VersionStatus:
        """Record a load outcome of ``version`` by ``reporter``."""
        ...

    def statuses(self, name: str, version: int) -> dict[str, VersionStatus]:
        """The load outcomes recorded for ``version``, by reporter."""
        ...
