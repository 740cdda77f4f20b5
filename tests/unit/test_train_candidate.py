"""The train workflow's registration: a candidate with what reproducing and judging it needs."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.intake import reference_distribution
from stream_infer.model.registry import ModelRegistry
from stream_infer.training.trainer import SplitConfig
from stream_infer.training.workflow import code_commit, train_candidate

#: The fraud example's feature service: its name and inputs, the model's feature names.
SERVICE: dict[str, Any] = {"inputs": FEATURE_NAMES, "feature_service": "fraud_model_v1"}


def feature_frame(days: int = 24, per_day: int = 60, seed: int = 0) -> pd.DataFrame:
    """Random features; fraud follows the first one; one card per transaction, so the split
    removes nobody from the test week."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    frame["tx_datetime"] = [
        datetime(2018, 4, 1) + timedelta(days=i // per_day, minutes=i % per_day) for i in range(n)
    ]
    frame["customer_id"] = [f"c{i}" for i in range(n)]
    frame["tx_fraud"] = (frame[FEATURE_NAMES[0]] + rng.normal(scale=0.5, size=n) > 1.2).astype(int)
    return frame


def test_reference_distribution_cuts_and_counts() -> None:
    scores = np.linspace(0, 1, 1001)
    cuts, counts = reference_distribution(scores)
    assert cuts == pytest.approx([i / 10 for i in range(1, 10)])
    assert sum(counts) == 1001 and len(counts) == 10
    assert counts[0] == 100  # [0, 0.1): a score equal to a cut point counts in the bin above
    tied_cuts, tied = reference_distribution(np.r_[np.zeros(90), np.ones(10)])
    # Eight cuts at 0 (the 0.9 quantile interpolates to 0.1): every 0 lands above them.
    assert tied_cuts[:8] == [0.0] * 8 and tied == [0] * 8 + [90, 10]
    with pytest.raises(ValueError, match="at least one"):
        reference_distribution([])


def test_code_commit_is_a_hash_in_a_checkout_and_none_elsewhere(tmp_path: Path) -> None:
    commit = code_commit()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    assert code_commit(tmp_path) is None


def test_training_registers_candidates_with_provenance(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    frame = feature_frame()
    split = SplitConfig(train_start_day=2)
    first = train_candidate(frame, reg, "fraud", split, "logreg", seed=0, **SERVICE)
    m = first.version.manifest
    assert reg.serving("fraud").champion == 1  # the first version serves
    assert m.semver == "1.0.0" and m.hyperparameters["kind"] == "logreg"
    assert m.hyperparameters["estimator.C"] == 1.0 and m.hyperparameters["train_start_day"] == 2
    assert m.reference_deciles is not None and len(m.reference_deciles) == 9
    assert m.reference_histogram is not None and sum(m.reference_histogram) == first.test_rows
    assert m.training_data_hash is not None and m.metrics["auc_roc"] > 0.5
    # Registered through model register's path: checked against the example's service.
    assert (m.feature_service, m.input_dtype, m.score_kind, m.positive) == (
        "fraud_model_v1",
        "float32",
        "probability",
        "high",
    )

    again = train_candidate(frame, reg, "fraud", split, "tree", seed=0, **SERVICE)
    assert again.version.manifest.semver == "1.0.1"  # same data, same inputs
    assert reg.serving("fraud").champion == 1  # a candidate until promoted
    moved = train_candidate(
        frame,
        reg,
        "fraud",
        SplitConfig(3),
        promote=True,
        actor="ci",
        reason="retrained",
        **SERVICE,
    )
    assert moved.version.manifest.semver == "1.1.0"  # another training week: new data
    assert reg.serving("fraud").champion == 3
    last = reg.history("fraud")[-1]
    assert (last.actor, last.reason, last.from_version) == ("ci", "retrained", 1)
