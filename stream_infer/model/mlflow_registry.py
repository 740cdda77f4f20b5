"""The registry on an MLflow model registry (the ``mlflow`` extra), behind the same interface.

Each version is an MLflow model version whose run logged ``model/model.onnx`` and
``model/manifest.json``; the manifest is also the version tag ``stream_infer.manifest`` (read
without a download) and its metrics and hyperparameters are the run's metrics and params.
Roles are the aliases ``champion``, ``challenger`` and ``shadow`` (``models:/fraud@champion``
resolves as MLflow users expect; stages are deprecated since MLflow 2.9 and not used). A model
whose aliases were set outside stream-infer reads as those aliases until its first change.
The revision, the challenger's percent and the rollback stack are one registered-model tag,
``stream_infer.roles``, written last: a watcher that sees a new revision finds the aliases
already moved. Each role change is also a tag ``stream_infer.history.<revision>``, and load
reports are the version tag ``stream_infer.status``.

Writers on this machine serialise on a file lock in ``local_dir``, which also holds the local
copies of artifacts (downloaded, then verified, on every :meth:`get`); MLflow itself has no
compare-and-set, so writers on other machines are not serialised. An alias moved by hand in
MLflow is not seen here (the roles tag is the source of truth); stream-infer's next change of
that model moves the aliases back in line with it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout
from pydantic import TypeAdapter, ValidationError

from stream_infer.errors import (
    ConfigError,
    ModelArtifactError,
    ModelNotFoundError,
    RetryableError,
)
from stream_infer.model.backend import RegistryBase, check_name
from stream_infer.model.manifest import MANIFEST_FILE, MODEL_FILE, Manifest, ModelVersion
from stream_infer.model.roles import ROLES, RoleEvent, RoleState, VersionStatus

if TYPE_CHECKING:
    from stream_infer.config import ModelSettings

MANIFEST_TAG = "stream_infer.manifest"
STATUS_TAG = "stream_infer.status"
ROLES_TAG = "stream_infer.roles"
HISTORY_PREFIX = "stream_infer.history."
EXPERIMENT = "stream-infer"
ARTIFACT_DIR = "model"
LOCK_TIMEOUT_S = 30.0
_STATUSES = TypeAdapter(dict[str, VersionStatus])


@contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    """MLflow's exceptions as ours: a missing model or version, else an unreachable store."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFoundError(f"{what}: {exc.message}") from exc
        raise RetryableError(f"MLflow refused {what}: {exc.message}") from exc


class MLflowRegistry(RegistryBase):
    """Versions, roles, history and load reports in an MLflow tracking/registry store."""

    def __init__(self, tracking_uri: str, local_dir: Path) -> None:
        """Raises ConfigError: mlflow is not installed (``pip install stream-infer[mlflow]``)."""
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise ConfigError(
                "model.registry_backend=mlflow needs mlflow: pip install 'stream-infer[mlflow]'"
            ) from exc
        self.tracking_uri = tracking_uri
        self.local_dir = Path(local_dir)
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def from_settings(cls, settings: ModelSettings) -> MLflowRegistry:
        """At ``mlflow_tracking_uri``, or a SQLite store ``registry_dir/mlflow.db``."""
        local = Path(settings.registry_dir)
        uri = settings.mlflow_tracking_uri
        if uri is None:
            local.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{(local / 'mlflow.db').resolve()}"
        return cls(uri, local)

    def __str__(self) -> str:
        return self.tracking_uri

    # Versions and manifests ---------------------------------------------------------------

    def names(self) -> list[str]:
        found: list[str] = []
        token: str | None = None
        with _mlflow_errors("listing models"):
            while True:
                page = self._client.search_registered_models(max_results=1000, page_token=token)
                found.extend(m.name for m in page)
                token = page.token
                if not token:
                    break
        return sorted(n for n in found if self.versions(n))

    def versions(self, name: str) -> list[int]:
        with _mlflow_errors(f"listing versions of {name!r}"):
            found = self._client.search_model_versions(f"name = '{check_name(name)}'")
        return sorted(int(v.version) for v in found)

    def _version(self, name: str, version: int) -> Any:
        with _mlflow_errors(f"model {name!r} version {version} is not registered"):
            return self._client.get_model_version(check_name(name), str(version))

    def _manifest(self, name: str, version: int) -> Manifest:
        raw = self._version(name, version).tags.get(MANIFEST_TAG)
        if raw is None:
            raise ModelArtifactError(
                f"MLflow model {name!r} version {version} has no {MANIFEST_TAG} tag "
                "(not registered by stream-infer)"
            )
        try:
            return Manifest.model_validate_json(raw)
        except ValueError as exc:
            raise ModelArtifactError(f"unreadable manifest of {name} v{version}: {exc}") from exc

    def _local(self, name: str, manifest: Manifest) -> ModelVersion:
        mv = self._version(name, manifest.version)
        folder = self.local_dir / "mlflow-cache" / name / str(manifest.version)
        folder.mkdir(parents=True, exist_ok=True)
        # A fresh download every time, renamed into place: readers of the copy never see half
        # a file, and an artifact tampered with in the store is caught by verify().
        scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{manifest.version}."))
        try:
            with _mlflow_errors(f"downloading {name} v{manifest.version}"):
                got = self._client.download_artifacts(
                    mv.run_id, f"{ARTIFACT_DIR}/{MODEL_FILE}", str(scratch)
                )
            os.replace(got, folder / MODEL_FILE)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return ModelVersion(manifest=manifest, path=folder, source=mv.source, run_id=mv.run_id)

    def _experiment_id(self) -> str:
        with _mlflow_errors("opening the experiment"):
            found = self._client.get_experiment_by_name(EXPERIMENT)
            if found is not None:
                return str(found.experiment_id)
            local = self.tracking_uri.startswith(("sqlite:", "file:", "/"))
            # A local store would otherwise put artifacts in ./mlruns of whatever the cwd is.
            location = (self.local_dir / "mlflow-artifacts").resolve().as_uri() if local else None
            return str(self._client.create_experiment(EXPERIMENT, artifact_location=location))

    def _store(
        self, name: str, onnx_bytes: bytes, make_manifest: Callable[[int], Manifest]
    ) -> ModelVersion:
        from mlflow.entities import Metric, Param

        with _mlflow_errors(f"registering {name!r}"):
            run = self._client.create_run(self._experiment_id(), run_name=f"register-{name}")
            run_id = run.info.run_id
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / MODEL_FILE).write_bytes(onnx_bytes)
                self._client.log_artifact(run_id, str(Path(tmp) / MODEL_FILE), ARTIFACT_DIR)
            if self._model(name) is None:
                self._client.create_registered_model(name)
            mv = self._client.create_model_version(
                name, f"runs:/{run_id}/{ARTIFACT_DIR}", run_id=run_id
            )
            manifest = make_manifest(int(mv.version))
            text = manifest.model_dump_json()
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / MANIFEST_FILE).write_text(text)
                self._client.log_artifact(run_id, str(Path(tmp) / MANIFEST_FILE), ARTIFACT_DIR)
            stamp = int(manifest.created_at.timestamp() * 1000)
            self._client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), stamp, 0) for k, v in manifest.metrics.items()],
                params=[Param(k, str(v)[:6000]) for k, v in manifest.hyperparameters.items()],
            )
            for key, value in (
                (MANIFEST_TAG, text),
                ("semver", manifest.semver),
                ("sha256", manifest.sha256),
                ("code_commit", manifest.code_commit),
                ("training_data_hash", manifest.training_data_hash),
            ):
                if value is not None:
                    self._client.set_model_version_tag(name, mv.version, key, value)
            self._client.set_terminated(run_id)
        return self._local(name, manifest)

    # Roles and history --------------------------------------------------------------------

    def _model(self, name: str) -> Any | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._client.get_registered_model(check_name(name))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise RetryableError(f"MLflow refused reading {name!r}: {exc.message}") from exc

    def _read_roles(self, name: str) -> RoleState:
        model = self._model(name)
        if model is None:
            return RoleState()
        raw = model.tags.get(ROLES_TAG)
        if raw is None:
            return self._legacy_roles(model)
        try:
            return RoleState.model_validate_json(raw)
        except ValidationError as exc:
            raise ModelArtifactError(f"unreadable {ROLES_TAG} of {name!r}: {exc}") from exc

    @staticmethod
    def _legacy_roles(model: Any) -> RoleState:
        # Aliases set without stream-infer (no roles tag yet): they are the roles, revision 0.
        aliases = {k: int(v) for k, v in (model.aliases or {}).items()}
        champion = aliases.get("champion")
        shadow = aliases.get("shadow")
        return RoleState(champion=champion, shadow=None if shadow == champion else shadow)

    def history(self, name: str) -> list[RoleEvent]:
        model = self._model(name)
        if model is None:
            return []
        revision = self._read_roles(name).revision
        events: list[RoleEvent] = []
        for key, raw in model.tags.items():
            if key.startswith(HISTORY_PREFIX):
                try:
                    event = RoleEvent.model_validate_json(raw)
                except ValidationError as exc:
                    raise ModelArtifactError(f"unreadable {key} of {name!r}: {exc}") from exc
                if event.revision <= revision:
                    events.append(event)
        return sorted(events, key=lambda e: e.revision)

    def _write_roles(self, name: str, state: RoleState, event: RoleEvent) -> None:
        c = self._client
        with _mlflow_errors(f"changing the roles of {name!r}"):
            c.set_registered_model_tag(
                name, f"{HISTORY_PREFIX}{event.revision:08d}", event.model_dump_json()
            )
            held = {
                "champion": state.champion,
                "challenger": state.challenger.version if state.challenger else None,
                "shadow": state.shadow,
            }
            model = self._model(name)
            aliases = (model.aliases or {}) if model is not None else {}
            for role in ROLES:
                version = held[role]
                if version is not None:
                    c.set_registered_model_alias(name, role, str(version))
                elif role in aliases:
                    c.delete_registered_model_alias(name, role)
            c.set_registered_model_tag(name, ROLES_TAG, state.model_dump_json())

    # Load reports -------------------------------------------------------------------------

    def statuses(self, name: str, version: int) -> dict[str, VersionStatus]:
        raw = self._version(name, version).tags.get(STATUS_TAG)
        if raw is None:
            return {}
        try:
            return _STATUSES.validate_json(raw)
        except ValidationError as exc:
            raise ModelArtifactError(f"unreadable {STATUS_TAG} of {name} v{version}") from exc

    def _write_statuses(self, name: str, version: int, statuses: dict[str, VersionStatus]) -> None:
        with _mlflow_errors(f"recording the status of {name} v{version}"):
            self._client.set_model_version_tag(
                name, str(version), STATUS_TAG, _STATUSES.dump_json(statuses).decode()
            )

    @contextmanager
    def _lock(self, name: str) -> Iterator[object]:
        folder = self.local_dir / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder / f"{check_name(name)}.lock", timeout=LOCK_TIMEOUT_S)
        try:
            lock.acquire()
        except Timeout as exc:
            raise RetryableError(f"{lock.lock_file} held by another writer") from exc
        try:
            yield lock
        finally:
            lock.release()
