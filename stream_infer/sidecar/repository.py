"""Triton's model-repository operations over the registry's lifecycle (transport-free).

The registry stays the source of truth: ``load`` and ``unload`` are role changes in it, which
this sidecar applies at once and announces on ``model-control``, so every worker and sidecar
switches within a second (their registry poll is the fallback).

- ``index``: every version of every registered model, Triton's ``name``, ``version``,
  ``state`` and ``reason``, plus its ``role``, ``semver`` and last recorded load ``status``.
  ``state`` is this sidecar's view: ``READY`` (in its serving set), ``LOADING`` (given a role
  it has not swapped in yet), ``UNAVAILABLE`` (refused, with the reason; or holding no role).
- ``load`` (``parameters``: ``version``, ``role`` = champion | challenger | shadow, ``percent``
  for a challenger, ``reason`` for the history): the version is loaded here first (sha256,
  signature, warm-up, probe) and only then given the role in the registry, so a version that
  fails is never assigned and the serving set is unchanged (Triton: a failed load keeps the
  loaded model serving). Without a version: re-read the registry now (Triton's reload), and
  fail if a version it names was refused. A challenger's percent changes with its version
  omitted (``{"role": "challenger", "percent": 25}``).
- ``unload`` (``parameters``: ``version`` or ``role``): clears the challenger or the shadow;
  the champion is never unloaded (promote another version, or roll back, instead).

See docs/ARCHITECTURE.md, "Model lifecycle".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stream_infer.errors import (
    ModelNotFoundError,
    RetryableError,
    StreamInferError,
)
from stream_infer.model.interface import Registry
from stream_infer.model.roles import Canary, Role, RoleEvent, RoleState, latest_status
from stream_infer.model.serving import ServingModels
from stream_infer.sidecar.models import SidecarModels


class RepositoryError(StreamInferError):
    """A repository request that was refused; nothing changed. ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoadParameters(_Body):
    version: int | None = Field(default=None, ge=1, description="None: re-read the registry")
    role: Role = "champion"
    percent: int | None = Field(default=None, ge=0, le=100, description="a challenger's share")
    reason: str = Field(default="", max_length=500, description="recorded in the history")


class LoadRequest(_Body):
    """``POST /v2/repository/models/{name}/load`` (the body is optional)."""

    parameters: LoadParameters = LoadParameters()


class UnloadParameters(_Body):
    version: int | None = Field(default=None, ge=1)
    role: Role | None = None
    reason: str = Field(default="", max_length=500)
    #: Sent by tritonclient; a model here has no dependents.
    unload_dependents: bool = False


class UnloadRequest(_Body):
    """``POST /v2/repository/models/{name}/unload`` (name the version or the role)."""

    parameters: UnloadParameters = UnloadParameters()


class IndexRequest(BaseModel):
    """``POST /v2/repository/index``: ``ready`` lists only what is ready here."""

    model_config = ConfigDict(frozen=True)

    ready: bool = False


def _holder(state: RoleState, role: Role) -> int | None:
    """The version holding ``role`` in the registry, or None."""
    if role == "champion":
        return state.champion
    if role == "challenger":
        return state.challenger.version if state.challenger is not None else None
    return state.shadow


def describe(serving: ServingModels) -> dict[str, Any]:
    """The serving set as a repository answer shows it."""
    return {
        "name": serving.champion.model.name,
        "revision": serving.revision,
        "percent": serving.percent,
        "serving": [
            {"version": str(s.version), "semver": s.semver, "role": role}
            for role, s in serving.members()
        ],
    }


class Repository:
    """The operations; ``models()`` is None until the sidecar's champion has loaded, and
    ``announce(name, revision)`` tells the other watchers of a change (best effort)."""

    def __init__(
        self,
        registry: Callable[[], Registry],
        models: Callable[[], SidecarModels | None],
        announce: Callable[[str, int], object] | None = None,
    ) -> None:
        self._registry = registry
        self._models = models
        self._announce = announce

    def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        """Every version of every registered model (see the module docstring).

        Raises:
            StreamInferError: the registry could not be read.
        """
        registry = self._registry()
        models = self._models()
        entries = []
        for name in registry.names():
            state = registry.roles(name)
            for version in registry.versions(name):
                entry = self._entry(registry, models, name, version, state)
                if not ready_only or entry["state"] == "READY":
                    entries.append(entry)
        return entries

    def load(self, name: str, params: LoadParameters) -> dict[str, Any]:
        """Make ``params.version`` serve as ``params.role`` (loaded here first); see the
        module docstring.

        Raises:
            RepositoryError: refused (the serving set and the registry are unchanged), or a
                version the registry names was refused (a reload).
        """
        models = self._following(name)
        if params.role != "challenger" and params.percent is not None:
            raise RepositoryError("parameters.percent applies to a challenger only")
        with models.lock:
            registry = models.registry
            state = registry.roles(name)
            if params.version is None and params.role == "champion":
                return self._reload(models)
            version = params.version or _holder(state, params.role)
            if version is None:
                raise RepositoryError(f"there is no {params.role}: name the version to load")
            percent = params.percent
            if params.role == "challenger" and percent is None:
                if state.challenger is None or state.challenger.version != version:
                    raise RepositoryError("a challenger needs parameters.percent (0-100)")
                percent = state.challenger.percent
            self._verify(models, version)
            actor = f"{models.reporter} (repository API)"
            why = params.reason or f"repository API: load {params.role}"
            event: RoleEvent | None = None
            try:
                if params.role == "champion" and state.champion != version:
                    event = registry.promote(name, version, actor=actor, reason=why)
                elif params.role == "challenger" and state.challenger != Canary(
                    version=version, percent=percent or 0
                ):
                    event = registry.canary(name, version, percent or 0, actor=actor, reason=why)
                elif params.role == "shadow" and state.shadow != version:
                    event = registry.shadow(name, version, actor=actor, reason=why)
            except RetryableError as exc:
                raise RepositoryError(f"registry busy: {exc}", 503) from exc
            except StreamInferError as exc:
                raise RepositoryError(f"cannot load {name} version {version}: {exc}") from exc
            models.refresh_locked()
            self._announced(name, event)
            current = models.current
            if current.role_of(version) != params.role:
                reason = models.refusals.get(version, "the registry changed meanwhile")
                raise RepositoryError(
                    f"{name} version {version} is not serving as {params.role}: {reason}"
                )
            return describe(current)

    def unload(self, name: str, params: UnloadParameters) -> dict[str, Any]:
        """Clear the challenger or the shadow (named by version or role).

        Raises:
            RepositoryError: the champion was named (or nothing was), or the version and
                the role disagree; nothing changed.
        """
        models = self._following(name)
        with models.lock:
            registry = models.registry
            state = registry.roles(name)
            role: Role | None = params.role
            if params.version is not None:
                held = state.roles_of(params.version)
                if role is not None and held and role not in held:
                    raise RepositoryError(
                        f"{name} version {params.version} is the {held[0]}, not the {role}"
                    )
                if not held:  # already unloaded: nothing to do (as Triton)
                    return describe(models.current)
                role = held[0]
            if role is None:
                raise RepositoryError(
                    f"refusing to unload {name}: it would unload the champion v{state.champion};"
                    " name the version or the role (challenger, shadow) to unload"
                )
            if role == "champion":
                raise RepositoryError(
                    f"refusing to unload the champion v{state.champion} of {name}: load another "
                    "version as champion, or roll back, instead"
                )
            if _holder(state, role) is not None:
                try:
                    event = registry.clear(
                        name,
                        role,
                        actor=f"{models.reporter} (repository API)",
                        reason=params.reason or f"repository API: unload {role}",
                    )
                except RetryableError as exc:
                    raise RepositoryError(f"registry busy: {exc}", 503) from exc
                except StreamInferError as exc:
                    raise RepositoryError(f"cannot unload the {role}: {exc}") from exc
                self._announced(name, event)
            models.refresh_locked()
            return describe(models.current)

    def _announced(self, name: str, event: RoleEvent | None) -> None:
        """Tell the other watchers (workers, sidecars) of a change this request made."""
        if event is not None and self._announce is not None:
            self._announce(name, event.revision)

    def _following(self, name: str) -> SidecarModels:
        models = self._models()
        if models is None:
            raise RepositoryError("model is loading", 503)
        if name != models.name:
            raise RepositoryError(f"this sidecar serves model {models.name!r}, not {name!r}")
        if not models.follows_registry:
            pinned = models.current.champion.version
            raise RepositoryError(
                f"this sidecar is pinned to {name} version {pinned} (model.version); it does "
                "not follow the registry, so it cannot load or unload"
            )
        return models

    def _verify(self, models: SidecarModels, version: int) -> None:
        """Load ``version`` into the watcher's cache (verify, warm up, probe), or refuse."""
        assert models.watcher is not None
        try:
            models.watcher.cache.get(version)
        except ModelNotFoundError as exc:
            raise RepositoryError(f"failed to load {models.name} version {version}: {exc}") from exc
        except StreamInferError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            models.report_refusal(version, reason)
            raise RepositoryError(
                f"failed to load {models.name} version {version} (still serving "
                f"v{models.current.champion.version}): {reason}"
            ) from exc

    def _reload(self, models: SidecarModels) -> dict[str, Any]:
        models.refresh_locked()
        spec = models.registry.serving(models.name)
        current = models.current
        wanted: list[tuple[Role, int]] = [("champion", spec.champion)]
        if spec.challenger is not None:
            wanted.append(("challenger", spec.challenger.version))
        if spec.shadow is not None:
            wanted.append(("shadow", spec.shadow))
        failed = [
            f"version {v} ({role}): {models.refusals.get(v, 'not loaded')}"
            for role, v in wanted
            if current.role_of(v) != role
        ]
        if failed:
            raise RepositoryError(
                f"failed to load {models.name} {'; '.join(failed)} (still serving "
                f"v{current.champion.version})"
            )
        return describe(current)

    @staticmethod
    def _entry(
        registry: Registry,
        models: SidecarModels | None,
        name: str,
        version: int,
        state: RoleState,
    ) -> dict[str, Any]:
        held = state.roles_of(version)
        role = held[0] if held else None
        statuses = registry.statuses(name, version)
        latest = latest_status(statuses)
        mine = statuses.get(models.reporter) if models is not None else None
        failure = next((s for s in (mine, latest) if s is not None and s.state == "failed"), None)
        serving = models.current if models is not None and models.name == name else None
        if serving is not None and serving.role_of(version) is not None:
            ready, reason = "READY", ""
        elif failure is not None:
            ready, reason = "UNAVAILABLE", f"{failure.reporter}: {failure.reason}"
        elif role is None:
            ready, reason = "UNAVAILABLE", "unloaded (no serving role)"
        elif models is None:
            ready, reason = "LOADING", "the sidecar's champion is loading"
        elif models.name != name:
            ready, reason = "UNAVAILABLE", f"this sidecar serves model {models.name!r} only"
        elif not models.follows_registry:
            pinned = models.current.champion.version
            ready, reason = "UNAVAILABLE", f"this sidecar is pinned to version {pinned}"
        else:
            ready, reason = "LOADING", f"{role} in the registry; not swapped in yet"
        try:
            semver = registry.manifest(name, version).semver
        except StreamInferError:
            semver = None
        entry: dict[str, Any] = {
            "name": name,
            "version": str(version),
            "state": ready,
            "reason": reason,
            "role": role,
            "semver": semver,
            "status": latest.state if latest is not None else None,
        }
        if role == "challenger" and state.challenger is not None:
            entry["percent"] = state.challenger.percent
        return entry
