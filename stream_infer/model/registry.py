"""A local, versioned model registry: one folder per version, a manifest, and serving roles.

Layout::

    <registry>/<name>/<version>/model.onnx
    <registry>/<name>/<version>/manifest.json    see stream_infer.model.manifest
    <registry>/<name>/<version>/status.json      load outcomes, by reporter
    <registry>/<name>/roles.json                 {"revision": 7, "champion": 3, ...}
    <registry>/<name>/history.json               every role change, oldest first
    <registry>/<name>/.lock                      held by every writer (filelock)
    <registry>/<name>/stages.json                older registries: {"production": 3}

Loading verifies the artifact against the manifest (see :mod:`stream_infer.model.session`).
Every file is written then renamed, so a reader never sees half a file, and every write holds
the model's file lock, so several writers (two ``stream-infer model promote`` at once) keep one
consistent history. ``roles.json`` stays small: a watcher reads it every second.

A registry from before roles (``stages.json``) reads as its ``production`` version being the
champion and its ``shadow`` the shadow; its first role change writes ``roles.json``.
:func:`open_registry` picks the folder or the MLflow backend from the settings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from filelock import FileLock, Timeout
from pydantic import TypeAdapter, ValidationError

from stream_infer.errors import ModelArtifactError, ModelNotFoundError, RetryableError
from stream_infer.model.backend import RegistryBase, check_name, is_valid_name
from stream_infer.model.interface import Registry
from stream_infer.model.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    Manifest,
    ModelVersion,
    sha256_of,
)
from stream_infer.model.roles import RoleEvent, RoleState, VersionStatus

if TYPE_CHECKING:
    from stream_infer.config import ModelSettings

__all__ = [
    "MANIFEST_FILE",
    "MODEL_FILE",
    "Manifest",
    "ModelRegistry",
    "ModelVersion",
    "Registry",
    "open_registry",
    "sha256_of",
]

ROLES_FILE = "roles.json"
HISTORY_FILE = "history.json"
STATUS_FILE = "status.json"
STAGES_FILE = "stages.json"
LOCK_FILE = ".lock"
#: How long a writer waits for another one before giving up.
LOCK_TIMEOUT_S = 30.0

_HISTORY = TypeAdapter(list[RoleEvent])
_STATUSES = TypeAdapter(dict[str, VersionStatus])


def _atomic_write(path: Path, data: bytes) -> None:
    # Write-then-rename so a crash never leaves a half-written manifest or roles file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> object:
    """The parsed file, or None if it does not exist.

    Raises:
        ModelArtifactError: it exists but is not JSON.
    """
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError as exc:
        raise ModelArtifactError(f"unreadable {path}: {exc}") from exc


class ModelRegistry(RegistryBase):
    """Versioned ONNX artifacts and their roles on a local folder; safe for several writers."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def _dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and is_valid_name(p.name) and self.versions(p.name)
        )

    def versions(self, name: str) -> list[int]:
        folder = self._dir(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())

    @contextmanager
    def _lock(self, name: str) -> Iterator[object]:
        folder = self._dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder / LOCK_FILE, timeout=LOCK_TIMEOUT_S)
        try:
            lock.acquire()
        except Timeout as exc:
            raise RetryableError(
                f"{folder / LOCK_FILE} held by another writer for {LOCK_TIMEOUT_S:.0f}s"
            ) from exc
        try:
            yield lock
        finally:
            lock.release()

    def _manifest(self, name: str, version: int) -> Manifest:
        path = self._dir(name) / str(version) / MANIFEST_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise ModelNotFoundError(f"model {name!r} version {version} is not registered") from exc
        try:
            return Manifest.model_validate_json(raw)
        except ValueError as exc:
            raise ModelArtifactError(f"unreadable manifest {path}: {exc}") from exc

    def _local(self, name: str, manifest: Manifest) -> ModelVersion:
        folder = self._dir(name) / str(manifest.version)
        return ModelVersion(manifest=manifest, path=folder, source=str(folder))

    def _store(
        self, name: str, onnx_bytes: bytes, make_manifest: Callable[[int], Manifest]
    ) -> ModelVersion:
        version = (self.versions(name) or [0])[-1] + 1
        manifest = make_manifest(version)
        staging = Path(tempfile.mkdtemp(dir=self._dir(name), prefix=f".{version}."))
        try:
            (staging / MODEL_FILE).write_bytes(onnx_bytes)
            (staging / MANIFEST_FILE).write_bytes(
                orjson.dumps(manifest.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
            )
            # A version appears whole or not at all: its folder is renamed into place.
            staging.rename(self._dir(name) / str(version))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self._local(name, manifest)

    def _read_roles(self, name: str) -> RoleState:
        folder = self._dir(name)
        raw = _read_json(folder / ROLES_FILE)
        try:
            if raw is not None:
                return RoleState.model_validate(raw)
            return self._legacy_roles(folder)
        except ValidationError as exc:
            raise ModelArtifactError(f"unreadable roles of {name!r} in {folder}: {exc}") from exc

    @staticmethod
    def _legacy_roles(folder: Path) -> RoleState:
        raw = _read_json(folder / STAGES_FILE)
        stages = {str(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        champion = stages.get("production")
        shadow = stages.get("shadow")
        return RoleState(champion=champion, shadow=None if shadow == champion else shadow)

    def history(self, name: str) -> list[RoleEvent]:
        folder = self._dir(name)
        raw = _read_json(folder / HISTORY_FILE)
        if raw is None:
            return []
        try:
            events = _HISTORY.validate_python(raw)
        except ValidationError as exc:
            raise ModelArtifactError(f"unreadable history in {folder}: {exc}") from exc
        # An event whose roles.json write never happened (a crash between the two renames)
        # did not take effect: it is not history.
        revision = self._read_roles(name).revision
        return [e for e in events if e.revision <= revision]

    def _write_roles(self, name: str, state: RoleState, event: RoleEvent) -> None:
        folder = self._dir(name)
        events = [e for e in self.history(name) if e.revision < event.revision]
        # History first: if the roles write is lost, history() drops the extra event.
        _atomic_write(folder / HISTORY_FILE, _HISTORY.dump_json([*events, event], indent=1))
        _atomic_write(folder / ROLES_FILE, state.model_dump_json().encode())

    def statuses(self, name: str, version: int) -> dict[str, VersionStatus]:
        path = self._dir(name) / str(version) / STATUS_FILE
        raw = _read_json(path)
        if raw is None:
            return {}
        try:
            return _STATUSES.validate_python(raw)
        except ValidationError as exc:
            raise ModelArtifactError(f"unreadable {path}: {exc}") from exc

    def _write_statuses(self, name: str, version: int, statuses: dict[str, VersionStatus]) -> None:
        path = self._dir(name) / str(version) / STATUS_FILE
        _atomic_write(path, _STATUSES.dump_json(statuses, indent=1))


def open_registry(settings: ModelSettings) -> Registry:
    """The registry ``settings.registry_backend`` names: the folder ``registry_dir``, or MLflow
    at ``mlflow_tracking_uri`` (default: SQLite in ``registry_dir``; needs the ``mlflow``
    extra).

    Raises:
        ConfigError: the MLflow backend is selected but mlflow is not installed.
    """
    if settings.registry_backend == "mlflow":
        from stream_infer.model.mlflow_registry import MLflowRegistry

        return MLflowRegistry.from_settings(settings)
    return ModelRegistry(settings.registry_dir)
