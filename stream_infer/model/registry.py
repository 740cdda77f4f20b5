"""A local, versioned model registry: one folder per version, a manifest, and stages.

Layout::

    <registry>/<name>/<version>/model.onnx
    <registry>/<name>/<version>/manifest.json
    <registry>/<name>/stages.json            {"production": 3, "shadow": 4}

The manifest records the artifact's sha256, its input signature, the ordered feature names
the input matrix's columns mean, training metrics and the training data's hash. Loading
verifies the artifact against it (see :mod:`stream_infer.model.session`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from stream_infer.errors import ModelArtifactError, ModelNotFoundError

Stage = Literal["production", "staging", "shadow"]
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
STAGES_FILE = "stages.json"


class Manifest(BaseModel):
    """What a registered version promises about its artifact."""

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


class ModelVersion(BaseModel):
    """A registered version and where its files are."""

    model_config = ConfigDict(frozen=True)

    manifest: Manifest
    path: Path

    @property
    def artifact(self) -> Path:
        return self.path / MODEL_FILE


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    # Write-then-rename so a crash never leaves a half-written manifest or stage file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    """Versioned ONNX artifacts on a local folder. Safe for one writer at a time."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def versions(self, name: str) -> list[int]:
        """Registered versions of ``name``, ascending (empty if none)."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())

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
        stage: Stage | None = "production",
    ) -> ModelVersion:
        """Store a new version (next number) and optionally move ``stage`` to it."""
        version = (self.versions(name) or [0])[-1] + 1
        folder = self.root / name / str(version)
        manifest = Manifest(
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
        )
        _atomic_write(folder / MODEL_FILE, onnx_bytes)
        _atomic_write(
            folder / MANIFEST_FILE,
            orjson.dumps(manifest.model_dump(mode="json"), option=orjson.OPT_INDENT_2),
        )
        if stage is not None:
            self.set_stage(name, stage, version)
        return ModelVersion(manifest=manifest, path=folder)

    def stages(self, name: str) -> dict[str, int]:
        path = self.root / name / STAGES_FILE
        if not path.exists():
            return {}
        raw = orjson.loads(path.read_bytes())
        return {str(k): int(v) for k, v in raw.items()}

    def set_stage(self, name: str, stage: Stage, version: int) -> None:
        """Point ``stage`` at ``version`` (promotion or rollback)."""
        if version not in self.versions(name):
            raise ModelNotFoundError(f"model {name!r} has no version {version}")
        stages = self.stages(name)
        stages[stage] = version
        _atomic_write(self.root / name / STAGES_FILE, orjson.dumps(stages))

    def get(
        self, name: str, version: int | None = None, stage: Stage = "production"
    ) -> ModelVersion:
        """A version by number, or the one ``stage`` points at.

        Raises:
            ModelNotFoundError: no such model, version or stage.
            ModelArtifactError: the manifest is unreadable.
        """
        if version is None:
            stages = self.stages(name)
            if stage not in stages:
                raise ModelNotFoundError(
                    f"model {name!r} has no {stage} version in {self.root} "
                    "(run `stream-infer train --quick`)"
                )
            version = stages[stage]
        folder = self.root / name / str(version)
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.exists():
            raise ModelNotFoundError(f"model {name!r} version {version} is not registered")
        try:
            manifest = Manifest.model_validate_json(manifest_path.read_bytes())
        except ValueError as exc:
            raise ModelArtifactError(f"unreadable manifest {manifest_path}: {exc}") from exc
        return ModelVersion(manifest=manifest, path=folder)

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
