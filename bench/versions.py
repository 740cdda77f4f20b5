"""Registries holding a second version of the model, for the hot-swap and shadow rows.

Each is a copy of the run's registry (version 1, the champion every row serves) plus version 2:
a logistic regression fitted on synthetic feature rows and exported to ONNX, as
tests/integration/conftest.py builds one. The champion is a logistic regression too, so both
versions cost the same per call and a shadow's cost is that of scoring each event twice.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from stream_infer.config import ModelSettings
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.interface import Registry
from stream_infer.model.registry import open_registry

SECOND = 2


@functools.cache
def _second_model() -> bytes:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from stream_infer.model.export import to_onnx

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, len(FEATURE_NAMES))).astype(np.float32)
    y = (x[:, 0] + x[:, 3] > 1.0).astype(int)
    return to_onnx(LogisticRegression(max_iter=1000).fit(x, y), len(FEATURE_NAMES))


def with_second_version(model: ModelSettings, target: Path) -> tuple[ModelSettings, Registry]:
    """Copy ``model.registry_dir`` to ``target`` and register version 2 there (a candidate:
    no role yet). Returns the copy's settings and its registry.

    Raises:
        RuntimeError: the new version is not number 2 (the source held more than one).
    """
    shutil.copytree(model.registry_dir, target)
    settings = model.model_copy(update={"registry_dir": target})
    registry = open_registry(settings)
    version = registry.register(
        settings.name, _second_model(), FEATURE_NAMES, description="bench: second version"
    ).manifest.version
    if version != SECOND:
        raise RuntimeError(f"{target} got version {version}, expected {SECOND}")
    return settings, registry
