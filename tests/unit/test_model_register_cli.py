"""``stream-infer model register`` on a real folder registry: a training set from the fraud
example's repository (the CLI), an IsolationForest and a classifier trained on it, registered
with their meaning; a mismatch refused in one line naming the difference, nothing registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from stream_infer.cli import cli
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.features.synthetic import synthetic_transactions
from stream_infer.model.registry import ModelRegistry
from tests.unit.model_exports import FRAUD_REPO, isolation_forest, sklearn_logreg

SERVICE = ("--feature-service", "fraud_model_v1", "--repo", str(FRAUD_REPO))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training set written by ``features training-set``, and models trained on it."""
    root = tmp_path_factory.mktemp("byom")
    history = synthetic_transactions(n_customers=20, n_terminals=12, n_days=40, seed=4)
    history.to_parquet(root / "history.parquet", index=False)
    done = CliRunner().invoke(
        cli,
        ["features", "training-set", "--repo", str(FRAUD_REPO), "--events",
         str(root / "history.parquet"), "--labels", str(root / "history.parquet"),
         "--out", str(root / "set.parquet")],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    frame = pd.read_parquet(root / "set.parquet")
    # The example's service names today's 15 features (test_fraud_example_repo.py).
    x = frame[list(FEATURE_NAMES)].to_numpy(np.float32)
    y = frame["tx_fraud"].to_numpy(np.int64)
    (root / "iso.onnx").write_bytes(isolation_forest(x, y)[0])
    (root / "logreg.onnx").write_bytes(sklearn_logreg(x, y)[0])
    (root / "narrow.onnx").write_bytes(sklearn_logreg(x[:, :14], y)[0])
    return root


def run(folder: Path, registry: Path, *args: str) -> Result:
    env = {"STREAM_INFER_MODEL__REGISTRY_DIR": str(registry)}
    return CliRunner().invoke(cli, ["model", "register", *args], env=env)


def refused(folder: Path, registry: Path, *args: str) -> str:
    result = run(folder, registry, *args)
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_register_an_isolation_forest_then_a_candidate(folder: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    iso = str(folder / "iso.onnx")
    reference = ("--reference", str(folder / "set.parquet"))
    line = refused(folder, registry, iso, "--name", "anomaly", *SERVICE)
    assert "decision score, not a probability: say --positive and --threshold" in line

    done = run(
        folder, registry, iso, "--name", "anomaly", *SERVICE, *reference,
        "--positive", "low", "--threshold", "0", "--semver", "0.1.0", "--json",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    shown: dict[str, Any] = orjson.loads(done.stdout)
    m = shown["manifest"]
    assert shown["roles"] == ["champion"]  # the model's first version
    assert (m["score_kind"], m["positive"], m["threshold"], m["semver"]) == (
        "decision",
        "low",
        0.0,
        "0.1.0",
    )
    assert (m["input_dtype"], m["output_name"], m["feature_service"]) == (
        "float32",
        "scores",
        "fraud_model_v1",
    )
    assert len(m["feature_names"]) == 15 and len(m["reference_deciles"]) == 9

    text = run(folder, registry, str(folder / "logreg.onnx"), "--name", "anomaly", *SERVICE)
    assert text.exit_code == 0, text.output
    assert "registered anomaly v2 (1.0.0) as candidate (champion v1)" in text.stdout
    assert "score probabilities (probability, high is positive, threshold model.threshold)" in (
        text.stdout
    )
    assert ModelRegistry(registry).serving("anomaly").champion == 1


def test_a_mismatch_is_refused_in_one_line_and_nothing_registered(
    folder: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    line = refused(folder, registry, str(folder / "narrow.onnx"), "--name", "m", *SERVICE)
    assert line == "Error: the model takes 14 inputs; feature service fraud_model_v1 names 15"
    other = ("--feature-service", "no_such_service", "--repo", str(FRAUD_REPO))
    assert "no_such_service" in refused(
        folder, registry, str(folder / "logreg.onnx"), "--name", "m", *other
    )
    assert ModelRegistry(registry).versions("m") == []
