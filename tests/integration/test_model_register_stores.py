"""Brought models in real registry stores (a folder, an MLflow SQLite store): an IsolationForest
and an XGBoost classifier trained on the fraud example's training set, registered by
``register_onnx``, loaded the way workers load them (sha256, signature, warm-up, probe,
reference), routed as a canary, and judged each by its own manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stream_infer.config import ModelSettings, Settings
from stream_infer.model.backend import RegistryBase
from stream_infer.model.compare import version_rules
from stream_infer.model.intake import ScoreMeaning, reference_rows, register_onnx
from stream_infer.model.registry import ModelRegistry
from stream_infer.model.routed import score
from stream_infer.model.serving import ModelCache, ServingModels
from stream_infer.model.verdict import ScoreRule
from stream_infer.streamdef.feast_reader import load_definitions
from stream_infer.streamdef.spec import StreamDefinitions
from tests.unit.model_exports import (
    FRAUD_REPO,
    fraud_training_set,
    isolation_forest,
    xgboost_classifier,
)

# mlflow's SQLAlchemy store uses a loader strategy SQLAlchemy 2.1 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")


@pytest.fixture(scope="module")
def defs() -> StreamDefinitions:
    return load_definitions(FRAUD_REPO, "fraud_model_v1")


@pytest.fixture(scope="module")
def training(defs: StreamDefinitions) -> pd.DataFrame:
    return fraud_training_set(defs)


@pytest.fixture(params=["folder", "mlflow"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[RegistryBase, Path]:
    local = tmp_path / "registry"
    if request.param == "folder":
        return ModelRegistry(local), local
    from stream_infer.model.mlflow_registry import MLflowRegistry

    local.mkdir()
    return MLflowRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", local), local


def test_an_anomaly_champion_and_a_classifier_canary_served_from_the_store(
    store: tuple[RegistryBase, Path], defs: StreamDefinitions, training: pd.DataFrame
) -> None:
    registry, local = store
    rows = reference_rows(training, defs.inputs)
    x, y = rows.astype(np.float32), training["tx_fraud"].to_numpy(np.int64)
    iso, decision = isolation_forest(x, y)
    xgb, probability = xgboost_classifier(x, y)
    first = register_onnx(
        registry, "anomaly", iso, defs,
        meaning=ScoreMeaning(positive="low", threshold=0.0), reference=rows,
    )  # fmt: skip
    second = register_onnx(registry, "anomaly", xgb, defs, reference=rows)
    assert first.manifest.semver == "1.0.0"
    assert second.manifest.semver == "2.0.0"  # the score means something else: major
    assert registry.manifest("anomaly", 1).positive == "low"  # the store kept the meaning

    settings = ModelSettings(name="anomaly", registry_dir=local, device="cpu", warmup_batches=1)
    cache = ModelCache(registry, settings, defs.inputs)
    champion, challenger = cache.get(1), cache.get(2)  # decision scores pass the load probe
    assert champion.reference is not None and challenger.reference is not None
    assert champion.reference.psi_of(champion.model.predict(rows)) < 0.01  # its own reference

    customers = training["customer_id"].astype(str).tolist()
    routed = score(ServingModels(1, champion, challenger, percent=40), rows, customers)
    mine = routed.challenger
    assert mine is not None and 0 < mine.sum() < len(rows)
    np.testing.assert_allclose(routed.scores[~mine], decision[~mine], atol=1e-5)
    np.testing.assert_allclose(routed.scores[mine], probability[mine], atol=1e-5)
    flags = routed.is_positive(0.5)
    assert (flags[~mine] == (routed.scores[~mine] <= 0.0)).all()
    assert (flags[mine] == (routed.scores[mine] >= 0.5)).all()

    if isinstance(registry, ModelRegistry):  # compare reads the rules from the settings' store
        rules = version_rules(Settings(model=settings), "anomaly")
        assert rules == {1: ScoreRule(0.0, "low", "decision"), 2: ScoreRule(0.5)}
