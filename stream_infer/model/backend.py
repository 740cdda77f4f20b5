"""The logic every registry backend shares (the interface is
:class:`stream_infer.model.interface.Registry`).

:class:`RegistryBase` implements registration (version number, semantic version, the first
version's promotion), artifact verification and the role changes once, on a handful of
storage primitives a backend provides (the folder in :mod:`stream_infer.model.registry`,
MLflow in :mod:`stream_infer.model.mlflow_registry`). Every write runs under the backend's
per-model lock, so concurrent writers see each other's changes and the history stays one
consistent sequence of revisions.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from stream_infer.errors import ModelArtifactError, ModelNotFoundError
from stream_infer.model import roles
from stream_infer.model.manifest import (
    InputDtype,
    Manifest,
    ModelVersion,
    Positive,
    ScoreKind,
    next_semver,
    parse_semver,
    sha256_of,
)
from stream_infer.model.roles import (
    LoadState,
    RoleEvent,
    RoleState,
    ServingSet,
    VersionStatus,
    default_actor,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def is_valid_name(name: str) -> bool:
    """Whether ``name`` can be a model name (see :func:`check_name`)."""
    return _NAME.match(name) is not None


def check_name(name: str) -> str:
    """``name`` if it is a safe model name (letters, digits, ``_.-``; it becomes a folder).

    Raises:
        ModelNotFoundError: it is not.
    """
    if not is_valid_name(name):
        raise ModelNotFoundError(f"{name!r} is not a valid model name (letters, digits, _ . -)")
    return name


class RegistryBase(ABC):
    """Registration, verification and role changes over a backend's storage primitives."""

    # Storage primitives -------------------------------------------------------------------

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def versions(self, name: str) -> list[int]: ...

    @abstractmethod
    def _lock(self, name: str) -> AbstractContextManager[object]:
        """Held around every write of ``name`` (and across processes).

        Raises:
            RetryableError: another writer held it too long.
        """

    @abstractmethod
    def _manifest(self, name: str, version: int) -> Manifest:
        """Raises ModelNotFoundError (not registered) or ModelArtifactError (unreadable)."""

    @abstractmethod
    def _local(self, name: str, manifest: Manifest) -> ModelVersion:
        """The version with its files on this machine (downloaded if the backend is remote)."""

    @abstractmethod
    def _store(
        self, name: str, onnx_bytes: bytes, make_manifest: Callable[[int], Manifest]
    ) -> ModelVersion:
        """Store the next version (called under the lock); ``make_manifest(number)``."""

    @abstractmethod
    def _read_roles(self, name: str) -> RoleState: ...

    @abstractmethod
    def _write_roles(self, name: str, state: RoleState, event: RoleEvent) -> None:
        """Store ``state`` and append ``event`` (called under the lock)."""

    @abstractmethod
    def history(self, name: str) -> list[RoleEvent]: ...

    @abstractmethod
    def statuses(self, name: str, version: int) -> dict[str, VersionStatus]: ...

    @abstractmethod
    def _write_statuses(
        self, name: str, version: int, statuses: dict[str, VersionStatus]
    ) -> None: ...

    # Shared logic -------------------------------------------------------------------------

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
        """Store a new version (the next number) as a candidate.

        It becomes champion when ``promote`` is set, or when the model has no champion yet (its
        first version), so a fresh registry serves what was just trained. The semantic version
        is computed against the latest registered version (see
        :func:`stream_infer.model.manifest.next_semver`), unless ``semver`` gives it.
        ``input_dtype``, ``score_kind``, ``positive`` and ``threshold`` say what the artifact
        takes and what its score means (:class:`stream_infer.model.manifest.Manifest`).

        Raises:
            ModelNotFoundError: ``name`` is not a valid model name.
            ModelArtifactError: ``semver`` is not above the latest version's.
            pydantic.ValidationError: a manifest field is malformed (e.g. not 9 deciles, a
                decision score without a threshold).
        """
        check_name(name)
        who = actor or default_actor()
        with self._lock(name):
            existing = self.versions(name)
            previous = self._manifest(name, existing[-1]) if existing else None
            chosen = semver or next_semver(
                previous,
                feature_names=feature_names,
                input_name=input_name,
                training_data_hash=training_data_hash,
                input_dtype=input_dtype,
                score_kind=score_kind,
                positive=positive,
            )
            if (
                semver is not None
                and previous is not None
                and previous.semver is not None
                and parse_semver(semver) <= parse_semver(previous.semver)
            ):
                raise ModelArtifactError(
                    f"semver {semver} is not above {previous.semver} ({name} v{previous.version})"
                )

            def make_manifest(version: int) -> Manifest:
                return Manifest(
                    name=name,
                    version=version,
                    created_at=datetime.now(UTC),
                    sha256=sha256_of(onnx_bytes),
                    input_name=input_name,
                    output_name=output_name,
                    feature_names=tuple(feature_names),
                    metrics=dict(metrics or {}),
                    training_data_hash=training_data_hash,
                    feature_service=feature_service,
                    description=description,
                    semver=chosen,
                    code_commit=code_commit,
                    hyperparameters=dict(hyperparameters or {}),
                    reference_deciles=None
                    if reference_deciles is None
                    else tuple(float(x) for x in reference_deciles),
                    reference_histogram=None
                    if reference_histogram is None
                    else tuple(int(x) for x in reference_histogram),
                    created_by=who,
                    input_dtype=input_dtype,
                    score_kind=score_kind,
                    positive=positive,
                    threshold=threshold,
                )

            stored = self._store(name, onnx_bytes, make_manifest)
            state = self._read_roles(name)
            if promote or state.champion is None:
                default = "first version" if not existing else "no champion yet"
                why = reason or ("promoted at registration" if promote else default)
                new, event = roles.promote(state, stored.manifest.version, actor=who, reason=why)
                self._write_roles(name, new, event)
        return stored

    def manifest(self, name: str, version: int) -> Manifest:
        """A version's manifest, without fetching its artifact.

        Raises:
            ModelNotFoundError: no such model or version.
            ModelArtifactError: the manifest is unreadable.
        """
        return self._manifest(check_name(name), version)

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """A version by number, or the champion when ``version`` is None.

        Raises:
            ModelNotFoundError: no such model or version, or no champion.
            ModelArtifactError: the manifest is unreadable.
        """
        check_name(name)
        if version is None:
            champion = self.roles(name).champion
            if champion is None:
                raise ModelNotFoundError(
                    f"model {name!r} has no champion version in {self} "
                    "(run `stream-infer train --quick`)"
                )
            version = champion
        return self._local(name, self._manifest(name, version))

    def verify(self, model: ModelVersion) -> bytes:
        """The artifact's bytes, after checking them against the manifest's sha256.

        Raises:
            ModelArtifactError: the file is missing or its hash differs.
        """
        try:
            data = model.artifact.read_bytes()
        except OSError as exc:
            raise ModelArtifactError(f"cannot read {model.artifact}: {exc}") from exc
        actual = sha256_of(data)
        if actual != model.manifest.sha256:
            raise ModelArtifactError(
                f"{model.artifact} has sha256 {actual} but its manifest says "
                f"{model.manifest.sha256}: refusing a tampered or corrupt artifact"
            )
        return data

    def roles(self, name: str) -> RoleState:
        """The model's current roles (an unregistered model has none).

        Raises:
            ModelNotFoundError: ``name`` is not a valid model name.
        """
        return self._read_roles(check_name(name))

    def serving(self, name: str) -> ServingSet:
        """The serving set (one small read).

        Raises:
            ModelNotFoundError: the model has no champion.
        """
        return self.roles(name).serving(name)

    def _change(
        self,
        name: str,
        apply: Callable[[RoleState], tuple[RoleState, RoleEvent]],
        target: Callable[[RoleState], int | None],
    ) -> RoleEvent:
        """Under the lock: verify the version ``target`` names (if any), apply, store."""
        check_name(name)
        with self._lock(name):
            state = self._read_roles(name)
            version = target(state)
            if version is not None:
                self.verify(self.get(name, version))
            new, event = apply(state)
            self._write_roles(name, new, event)
        return event

    def promote(
        self, name: str, version: int, *, actor: str | None = None, reason: str = ""
    ) -> RoleEvent:
        """``version`` becomes champion (its artifact verified first).

        Raises:
            ModelNotFoundError: no such version. ModelArtifactError: tampered artifact.
            ModelRoleError: it is already the champion.
        """
        return self._change(
            name, lambda s: roles.promote(s, version, actor=actor, reason=reason),
            lambda _s: version,
        )  # fmt: skip

    def rollback(self, name: str, *, actor: str | None = None, reason: str = "") -> RoleEvent:
        """The previous champion serves again (its artifact verified first).

        Raises:
            ModelRoleError: there is no previous champion. ModelArtifactError: it is tampered.
        """
        return self._change(
            name, lambda s: roles.rollback(s, actor=actor, reason=reason),
            roles.previous_champion,
        )  # fmt: skip

    def canary(
        self, name: str, version: int, percent: int, *, actor: str | None = None, reason: str = ""
    ) -> RoleEvent:
        """``version`` becomes the challenger at ``percent`` (its artifact verified first).

        Raises:
            ModelRoleError: percent outside 0-100, or the version is the champion.
            ModelNotFoundError: no such version. ModelArtifactError: tampered artifact.
        """
        return self._change(
            name, lambda s: roles.canary(s, version, percent, actor=actor, reason=reason),
            lambda _s: version if 0 <= percent <= 100 else None,
        )  # fmt: skip

    def shadow(
        self, name: str, version: int, *, actor: str | None = None, reason: str = ""
    ) -> RoleEvent:
        """``version`` becomes the shadow (its artifact verified first).

        Raises:
            ModelRoleError: it is the champion or already the shadow.
            ModelNotFoundError: no such version. ModelArtifactError: tampered artifact.
        """
        return self._change(
            name, lambda s: roles.shadow(s, version, actor=actor, reason=reason),
            lambda _s: version,
        )  # fmt: skip

    def clear(
        self, name: str, role: str, *, actor: str | None = None, reason: str = ""
    ) -> RoleEvent:
        """Nobody holds ``role`` (challenger or shadow) any more.

        Raises:
            ModelRoleError: ``role`` is the champion, unknown, or not held.
        """
        return self._change(
            name, lambda s: roles.clear(s, role, actor=actor, reason=reason), lambda _s: None
        )

    def record_status(
        self,
        name: str,
        version: int,
        state: LoadState,
        reason: str = "",
        *,
        reporter: str | None = None,
    ) -> VersionStatus:
        """Record that ``reporter`` (default ``user@host``) loaded ``version`` or failed to,
        replacing that reporter's previous report (Triton's repository index ``state`` and
        ``reason``). Not a role change: the revision stays.

        Raises:
            ModelNotFoundError: no such version.
        """
        check_name(name)
        status = VersionStatus(
            state=state, reason=reason, at=datetime.now(UTC), reporter=reporter or default_actor()
        )
        with self._lock(name):
            self._manifest(name, version)
            current = dict(self.statuses(name, version))
            current[status.reporter] = status
            self._write_statuses(name, version, current)
        return status
