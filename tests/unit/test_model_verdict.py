"""A score's meaning follows its manifest: verdicts, routed verdicts, the load probe, compare."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from stream_infer.model.evidence import build_report
from stream_infer.model.manifest import Manifest, next_semver
from stream_infer.model.routed import score
from stream_infer.model.serving import ProbeError, Served, ServingModels, probe
from stream_infer.model.session import LoadedModel
from stream_infer.model.verdict import ScoreRule
from tests.unit.test_model_compare import label
from tests.unit.test_model_compare import score as score_record

SHA = "0" * 64


def manifest(**fields: Any) -> Manifest:
    base: dict[str, Any] = {
        "name": "m",
        "version": 1,
        "created_at": datetime.now(UTC),
        "sha256": SHA,
        "input_name": "input",
        "output_name": "scores",
        "feature_names": ("a", "b"),
    }
    return Manifest(**(base | fields))


class Column:
    """An ONNX-session stand-in whose score is the first column (times ``sign``)."""

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = sign

    def run(self, _outputs: list[str], feeds: dict[str, npt.NDArray[Any]]) -> list[Any]:
        return [self.sign * feeds["input"][:, 0]]


def loaded(version: int, sign: float = 1.0, **meaning: Any) -> LoadedModel:
    return LoadedModel("m", version, ("a", "b"), "CPU", Column(sign), "input", "scores", **meaning)


def test_older_manifests_read_as_float32_probabilities_high_positive() -> None:
    m = manifest()
    assert (m.input_dtype, m.score_kind, m.positive, m.threshold) == (
        "float32",
        "probability",
        "high",
        None,
    )
    assert ScoreRule.of(m, 0.3) == ScoreRule(0.3, "high", "probability")


def test_a_decision_score_needs_a_threshold_and_a_probability_one_in_0_1() -> None:
    with pytest.raises(ValidationError, match="decision score needs its threshold"):
        manifest(score_kind="decision")
    with pytest.raises(ValidationError, match=r"probability threshold is in \[0, 1\]"):
        manifest(threshold=1.5)
    rule = ScoreRule.of(manifest(score_kind="decision", positive="low", threshold=-0.1), 0.5)
    assert rule == ScoreRule(-0.1, "low", "decision")


def test_changing_what_the_score_means_is_a_major_version() -> None:
    previous = manifest(semver="1.2.3")
    same = {"feature_names": ("a", "b"), "input_name": "input", "training_data_hash": None}
    assert next_semver(previous, **same) == "1.2.4"
    assert next_semver(previous, **same, input_dtype="float64") == "2.0.0"
    assert next_semver(previous, **same, positive="low") == "2.0.0"
    assert next_semver(previous, **same, score_kind="decision") == "2.0.0"


@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50),
    st.floats(-1e6, 1e6),
)
def test_low_positive_is_the_mirror_of_high(values: list[float], threshold: float) -> None:
    scores = np.array(values)
    high, low = ScoreRule(threshold, "high"), ScoreRule(threshold, "low")
    assert (high.flags(scores) == (scores >= threshold)).all()
    assert (low.flags(scores) == (scores <= threshold)).all()
    # Ranking turns "low is positive" into "high is positive", flags and all.
    assert (low.flags(scores) == ScoreRule(-threshold, "high").flags(low.ranking(scores))).all()


def test_each_routed_row_is_judged_by_the_version_that_served_it() -> None:
    champion = Served(loaded(1), "1.0.0", None)  # a probability, model.threshold applies
    challenger = Served(
        loaded(2, score_kind="decision", positive="low", threshold=0.0), "2.0.0", None
    )
    serving = ServingModels(1, champion, challenger, percent=50)
    customers = [f"c{i}" for i in range(200)]
    column = np.linspace(-1.0, 1.0, len(customers))
    routed = score(serving, np.c_[column, np.zeros_like(column)], customers)
    assert routed.challenger is not None and 0 < routed.challenger.sum() < len(customers)
    flags = routed.is_positive(0.5)
    mine = routed.challenger
    assert (flags[mine] == (column[mine] <= 0.0)).all()
    assert (flags[~mine] == (column[~mine] >= 0.5)).all()
    assert (ServingModels.of(loaded(1)).champion.model.rule(0.2).flags([0.1, 0.2]) == [0, 1]).all()


def test_a_float64_model_is_fed_float64() -> None:
    seen: list[np.dtype[Any]] = []

    class Recorder(Column):
        def run(self, outputs: list[str], feeds: dict[str, npt.NDArray[Any]]) -> list[Any]:
            seen.append(feeds["input"].dtype)
            return super().run(outputs, feeds)

    rows = np.array([[1e-12 + 1.0, 0.0]])
    model = LoadedModel("m", 1, ("a", "b"), "CPU", Recorder(), "input", "scores", "float64")
    assert model.predict(rows)[0] == rows[0, 0]  # not rounded through float32
    assert seen == [np.dtype(np.float64)]


def test_the_load_probe_holds_probabilities_to_0_1_and_decision_scores_to_finite() -> None:
    with pytest.raises(ProbeError, match=r"outside \[0, 1\]"):
        probe(loaded(1), 2)  # the probe rows reach 200
    probe(loaded(1, score_kind="decision", positive="low", threshold=0.0), 2)
    probe(loaded(1, sign=-1.0, score_kind="decision", positive="high", threshold=0.0), 2)


def test_compare_reads_a_low_positive_score_as_such() -> None:
    n = 40
    frauds = [int(i % 4 == 0) for i in range(n)]
    # The champion's probability is high on frauds; the anomaly score is low on them.
    champion = [score_record(i, 1, 0.9 if f else 0.1, "champion") for i, f in enumerate(frauds)]
    anomaly = [
        {**score_record(i, 2, -0.2 if f else 0.3, "shadow"), "champion_version": 1}
        for i, f in enumerate(frauds)
    ]
    labels = [label(i, f) for i, f in enumerate(frauds)]
    rules = {1: ScoreRule(0.5), 2: ScoreRule(0.0, "low", "decision")}
    report = build_report("fraud", champion, anomaly, labels, threshold=0.5, rules=rules)
    _, shadow = report.versions
    assert (shadow.positive, shadow.threshold) == ("low", 0.0)
    assert shadow.agreement == 1.0  # both flag exactly the frauds
    assert shadow.metrics is not None and shadow.metrics.auc_roc == 1.0
    naive = build_report("fraud", champion, anomaly, labels, threshold=0.5)
    assert naive.versions[1].agreement == 0.75  # read as a probability: it flags no fraud
    assert naive.versions[1].metrics is not None and naive.versions[1].metrics.auc_roc == 0.0
