"""Unit fixtures: a real tiny ONNX model in a temp registry (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.export import to_onnx
from stream_infer.model.registry import ModelRegistry


@pytest.fixture(scope="session")
def onnx_bytes() -> bytes:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, len(FEATURE_NAMES))).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    return to_onnx(LogisticRegression().fit(x, y), len(FEATURE_NAMES))


@pytest.fixture
def registry(tmp_path: Path, onnx_bytes: bytes) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "registry")
    reg.register("fraud", onnx_bytes, FEATURE_NAMES, metrics={"auc_roc": 0.9})
    return reg
