"""Registry, artifact verification, and the CUDA -> CPU fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream_infer.config import ModelSettings
from stream_infer.errors import ModelArtifactError, ModelNotFoundError
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.registry import MODEL_FILE, ModelRegistry, open_registry
from stream_infer.model.session import CPU, CUDA, choose_providers, load_model, open_session

NEW_MANIFEST_FIELDS = (
    "semver",
    "code_commit",
    "hyperparameters",
    "reference_deciles",
    "reference_histogram",
    "created_by",
)


def test_load_champion_scores_rows(registry: ModelRegistry) -> None:
    model = load_model(registry, "fraud", FEATURE_NAMES)
    assert model.version == 1 and model.provider == CPU
    scores = model.predict(np.zeros((4, len(FEATURE_NAMES)), dtype=np.float32))
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))


def test_versions_and_roles(registry: ModelRegistry, onnx_bytes: bytes) -> None:
    v2 = registry.register("fraud", onnx_bytes, FEATURE_NAMES)
    assert registry.versions("fraud") == [1, 2]
    assert registry.get("fraud").manifest.version == 1  # a later version is a candidate
    registry.shadow("fraud", v2.manifest.version)
    assert registry.serving("fraud").shadow == 2
    registry.promote("fraud", 2)
    assert registry.get("fraud").manifest.version == 2
    assert load_model(registry, "fraud", FEATURE_NAMES).version == 2
    with pytest.raises(ModelNotFoundError):
        registry.get("nope")
    with pytest.raises(ModelNotFoundError):
        registry.promote("fraud", 9)


def test_registry_from_before_roles_still_serves(tmp_path: Path, onnx_bytes: bytes) -> None:
    """stages.json (production/shadow) and manifests without the lifecycle fields."""
    reg = ModelRegistry(tmp_path)
    for _ in range(3):
        reg.register("fraud", onnx_bytes, FEATURE_NAMES)
    folder = tmp_path / "fraud"
    (folder / "roles.json").unlink()
    (folder / "history.json").unlink()
    (folder / "stages.json").write_bytes(orjson.dumps({"production": 2, "shadow": 3}))
    old = orjson.loads((folder / "1" / "manifest.json").read_bytes())
    for key in NEW_MANIFEST_FIELDS:
        old.pop(key)
    (folder / "1" / "manifest.json").write_bytes(orjson.dumps(old))
    served = reg.serving("fraud")
    assert (served.champion, served.shadow, served.revision) == (2, 3, 0)
    assert load_model(reg, "fraud", FEATURE_NAMES).version == 2
    assert reg.get("fraud", 1).manifest.semver is None
    assert reg.history("fraud") == []
    reg.promote("fraud", 1, reason="back to v1")
    served = reg.serving("fraud")
    assert (served.champion, served.shadow, served.revision) == (1, 3, 1)
    assert reg.rollback("fraud").to_version == 2
    # v4 is computed against v3's semver; v3 was registered with one.
    assert reg.register("fraud", onnx_bytes, FEATURE_NAMES).manifest.semver == "1.0.3"


def test_open_registry_follows_the_settings(tmp_path: Path) -> None:
    settings = ModelSettings(registry_dir=tmp_path)
    assert isinstance(open_registry(settings), ModelRegistry)
    (tmp_path / "not a model").mkdir()
    (tmp_path / "empty").mkdir()
    assert open_registry(settings).names() == []


def test_tampered_artifact_is_refused(registry: ModelRegistry) -> None:
    path = registry.get("fraud").path / MODEL_FILE
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelArtifactError, match="sha256"):
        load_model(registry, "fraud", FEATURE_NAMES)


def test_feature_list_mismatch_is_refused(registry: ModelRegistry) -> None:
    with pytest.raises(ModelArtifactError, match="trained on features"):
        load_model(registry, "fraud", list(reversed(FEATURE_NAMES)))


def test_input_signature_mismatch_is_refused(tmp_path: Any, onnx_bytes: bytes) -> None:
    reg = ModelRegistry(tmp_path)
    # Manifest claims 14 features while the artifact takes 15.
    reg.register("short", onnx_bytes, FEATURE_NAMES[:14])
    with pytest.raises(ModelArtifactError, match=r"float32\[\?, 14\]"):
        load_model(reg, "short", FEATURE_NAMES[:14])
    reg.register("renamed", onnx_bytes, FEATURE_NAMES, input_name="x")
    with pytest.raises(ModelArtifactError, match="manifest input 'x'"):
        load_model(reg, "renamed", FEATURE_NAMES)


def test_choose_providers() -> None:
    assert choose_providers([CUDA, CPU], "auto") == [CUDA, CPU]
    assert choose_providers([CPU], "auto") == [CPU]
    assert choose_providers([CUDA, CPU], "cpu") == [CPU]
    assert choose_providers([CPU], "cuda") == [CPU]


class _FakeSession:
    def __init__(self, providers: list[str]) -> None:
        self._providers = providers

    def get_providers(self) -> list[str]:
        return self._providers


class _FakeOrt:
    """onnxruntime with CUDA listed but unusable, as on a GPU-less host with -gpu installed."""

    def __init__(self, cuda_raises: bool) -> None:
        self.cuda_raises = cuda_raises
        self.calls: list[list[str]] = []

    def get_available_providers(self) -> list[str]:
        return [CUDA, CPU]

    def SessionOptions(self) -> Any:
        return type("Opts", (), {})()

    def InferenceSession(
        self, path_or_bytes: bytes, sess_options: Any = None, providers: Any = ()
    ) -> Any:
        self.calls.append(list(providers))
        if CUDA in providers and self.cuda_raises:
            raise RuntimeError("CUDA driver version is insufficient")
        # Real onnxruntime-gpu silently drops CUDA when its libraries are missing.
        return _FakeSession([CPU])


@pytest.mark.parametrize("cuda_raises", [True, False])
def test_cuda_falls_back_to_cpu(cuda_raises: bool, caplog: pytest.LogCaptureFixture) -> None:
    fake = _FakeOrt(cuda_raises)
    _session, provider = open_session(b"model", "cuda", ort=fake)
    assert provider == CPU
    assert fake.calls[0] == [CUDA, CPU]
    assert fake.calls[-1] == ([CPU] if cuda_raises else [CUDA, CPU])
    assert any("CPU" in r.getMessage() for r in caplog.records)


def test_real_onnxruntime_auto_runs_on_cpu_here(registry: ModelRegistry) -> None:
    # This host has onnxruntime-gpu but no GPU: "auto" must come up on CPU, not fail.
    model = load_model(registry, "fraud", FEATURE_NAMES, device="cuda")
    assert model.provider == CPU
