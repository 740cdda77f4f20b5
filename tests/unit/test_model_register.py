"""Bring your own model: artifacts exported by scikit-learn, XGBoost, LightGBM and PyTorch,
trained on the fraud example's training set, registered against its feature service, loaded
and scored as the stream loads and scores them; and every mismatch refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto

from stream_infer.errors import DefinitionError, ModelArtifactError
from stream_infer.model.intake import (
    FeatureService,
    ScoreMeaning,
    reference_distribution,
    reference_rows,
    register_onnx,
)
from stream_infer.model.manifest import sha256_of
from stream_infer.model.registry import ModelRegistry
from stream_infer.model.session import load_model
from stream_infer.streamdef.feast_reader import load_definitions
from stream_infer.streamdef.spec import StreamDefinitions
from tests.unit.model_exports import (
    FRAUD_REPO,
    Exporter,
    fraud_training_set,
    graph,
    isolation_forest,
    lightgbm_classifier,
    sklearn_logreg,
    sklearn_mlp_float64,
    torch_mlp,
    with_feature_names,
    xgboost_classifier,
)

FLOAT = TensorProto.FLOAT


@pytest.fixture(scope="module")
def defs() -> StreamDefinitions:
    return load_definitions(FRAUD_REPO, "fraud_model_v1")


@pytest.fixture(scope="module")
def training(defs: StreamDefinitions) -> pd.DataFrame:
    frame = fraud_training_set(defs)
    assert frame["tx_fraud"].sum() > 10 and len(frame) > 1000
    return frame


@pytest.fixture(scope="module")
def xy(defs: StreamDefinitions, training: pd.DataFrame) -> tuple[Any, Any]:
    x = training[list(defs.inputs)].to_numpy(np.float32)
    return x, training["tx_fraud"].to_numpy(np.int64)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def _torch(x: Any, y: Any) -> Any:
    pytest.importorskip("torch")
    return torch_mlp(x, y)


CLASSIFIERS: dict[str, tuple[Exporter, str, str]] = {
    # name: (exporter, input dtype, what the score output is called)
    "sklearn-logreg": (sklearn_logreg, "float32", "probabilities"),
    "sklearn-mlp-float64": (sklearn_mlp_float64, "float64", "probabilities"),
    "xgboost": (xgboost_classifier, "float32", "probabilities"),
    "lightgbm": (lightgbm_classifier, "float32", "probabilities"),
    "pytorch": (_torch, "float32", "score"),
}


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_a_classifier_registers_with_its_facts_and_serves_its_own_scores(
    kind: str,
    defs: StreamDefinitions,
    training: pd.DataFrame,
    xy: tuple[Any, Any],
    registry: ModelRegistry,
) -> None:
    exporter, dtype, output = CLASSIFIERS[kind]
    onnx_bytes, native = exporter(*xy)
    # PyTorch's one output is a sigmoid the file does not call a probability: say so.
    meaning = ScoreMeaning(score_kind="probability") if kind == "pytorch" else None
    entry = register_onnx(
        registry,
        kind,
        onnx_bytes,
        defs,
        meaning=meaning,
        reference=reference_rows(training, defs.inputs),
        semver="0.1.0",
    )
    m = entry.manifest
    assert (m.feature_service, m.feature_names) == ("fraud_model_v1", defs.inputs)
    assert (m.input_dtype, m.output_name, m.score_kind, m.positive) == (
        dtype,
        output,
        "probability",
        "high",
    )
    assert m.threshold is None and m.semver == "0.1.0" and m.sha256 == sha256_of(onnx_bytes)
    assert registry.serving(kind).champion == 1  # the first version serves

    loaded = load_model(registry, kind, defs.inputs, version=1)
    served = loaded.predict(xy[0].astype(np.float64))
    np.testing.assert_allclose(served, native, atol=2e-5)
    # The reference deciles are the served scores' deciles on the training set.
    deciles, histogram = reference_distribution(served)
    np.testing.assert_allclose(m.reference_deciles or (), deciles, atol=1e-12)
    assert m.reference_histogram == tuple(histogram) and sum(histogram) == len(training)


def test_a_second_version_is_a_candidate(
    defs: StreamDefinitions, xy: tuple[Any, Any], registry: ModelRegistry
) -> None:
    first, _ = sklearn_logreg(*xy)
    second, _ = xgboost_classifier(*xy)
    register_onnx(registry, "fraud", first, defs)
    entry = register_onnx(registry, "fraud", second, defs)
    assert registry.serving("fraud").champion == 1
    assert entry.manifest.semver == "1.0.1" and entry.manifest.reference_deciles is None
    with pytest.raises(ModelArtifactError, match=r"semver 1\.0\.0 is not above 1\.0\.1"):
        register_onnx(registry, "fraud", second, defs, semver="1.0.0")


def test_an_isolation_forest_is_a_decision_score_low_for_anomalies(
    defs: StreamDefinitions,
    training: pd.DataFrame,
    xy: tuple[Any, Any],
    registry: ModelRegistry,
) -> None:
    onnx_bytes, decision = isolation_forest(*xy)
    with pytest.raises(DefinitionError, match=r"decision score.*--positive and --threshold"):
        register_onnx(registry, "anomaly", onnx_bytes, defs)
    with pytest.raises(DefinitionError, match=r"not a probability"):
        register_onnx(
            registry, "anomaly", onnx_bytes, defs, meaning=ScoreMeaning(score_kind="probability")
        )
    entry = register_onnx(
        registry,
        "anomaly",
        onnx_bytes,
        defs,
        meaning=ScoreMeaning(positive="low", threshold=0.0),
        reference=reference_rows(training, defs.inputs),
    )
    m = entry.manifest
    assert (m.output_name, m.score_kind, m.positive, m.threshold) == (
        "scores",
        "decision",
        "low",
        0.0,
    )
    assert (
        m.reference_deciles is not None and m.reference_deciles[0] < 0.0 < m.reference_deciles[-1]
    )

    loaded = load_model(registry, "anomaly", defs.inputs)
    scores = loaded.predict(xy[0].astype(np.float64))
    np.testing.assert_allclose(scores, decision, atol=1e-5)
    flags = loaded.rule(0.5).flags(scores)  # the setting's 0.5 is not used: 0 is recorded
    clear = np.abs(decision) > 1e-4  # away from the cut, float32 and float64 agree
    assert (flags[clear] == (decision[clear] < 0)).all()
    assert 0 < flags.sum() < len(flags)


def _logreg_names(xy: tuple[Any, Any], names: list[str]) -> bytes:
    onnx_bytes, _ = sklearn_logreg(*xy)
    return with_feature_names(onnx_bytes, names)


def test_names_in_the_metadata_are_checked(
    defs: StreamDefinitions, xy: tuple[Any, Any], registry: ModelRegistry
) -> None:
    names = list(defs.inputs)
    entry = register_onnx(registry, "named", _logreg_names(xy, names), defs)
    assert entry.manifest.feature_names == defs.inputs

    renamed = [*names[:-1], "terminal_risk_90d"]
    with pytest.raises(
        DefinitionError, match=r"lacks \['terminal_risk_30d'\].*\['terminal_risk_90d'\]"
    ):
        register_onnx(registry, "named", _logreg_names(xy, renamed), defs)
    swapped = [names[1], names[0], *names[2:]]
    with pytest.raises(DefinitionError, match=rf"input 0 is {names[1]}.*puts {names[0]} there"):
        register_onnx(registry, "named", _logreg_names(xy, swapped), defs)
    assert registry.versions("named") == [1]


def test_a_width_that_differs_is_refused(
    defs: StreamDefinitions, xy: tuple[Any, Any], registry: ModelRegistry
) -> None:
    x, y = xy
    onnx_bytes, _ = sklearn_logreg(x[:, :14], y)
    with pytest.raises(
        DefinitionError, match=r"takes 14 inputs; feature service fraud_model_v1 names 15"
    ):
        register_onnx(registry, "narrow", onnx_bytes, defs)
    assert registry.versions("narrow") == []


N = 15


@pytest.mark.parametrize(
    ("model", "message"),
    [
        pytest.param(
            graph(
                [("input", TensorProto.INT64, [None, N])],
                [("Cast", ["input"], ["score"], {"to": FLOAT})],
                [("score", FLOAT, [None, N])],
            ),
            r"input input: tensor\(int64\)\[None, 15\] is not float32 or float64",
            id="int64 input",
        ),
        pytest.param(
            graph(
                [("input", FLOAT, [None, "width"])],
                [("ReduceSum", ["input"], ["score"], {"keepdims": 0})],
                [("score", FLOAT, [None])],
            ),
            r"has no fixed width; feature service fraud_model_v1 names 15 features",
            id="dynamic width",
        ),
        pytest.param(
            graph(
                [("input", FLOAT, [None, 3, N])],
                [("Identity", ["input"], ["score"], {})],
                [("score", FLOAT, [None, 3, N])],
            ),
            r"has rank 3",
            id="rank 3",
        ),
        pytest.param(
            graph(
                [("a", FLOAT, [None, 1]), ("b", FLOAT, [None, 1])],
                [("Add", ["a", "b"], ["score"], {})],
                [("score", FLOAT, [None, 1])],
            ),
            r"lacks \['tx_amount', .*has \['a', 'b'\]",
            id="per-feature inputs, other names",
        ),
        pytest.param(
            graph(
                [("input", FLOAT, [None, N])],
                [("ReduceSum", ["input"], ["a"], {"keepdims": 0}), ("Neg", ["a"], ["b"], {})],
                [("a", FLOAT, [None]), ("b", FLOAT, [None])],
            ),
            r"several outputs could be the score .*pick --output",
            id="two float outputs",
        ),
        pytest.param(
            graph(
                [("input", FLOAT, [None, N])],
                [("Identity", ["input"], ["scores"], {})],
                [("scores", FLOAT, [None, N])],
            ),
            r"not one score a row",
            id="many columns",
        ),
    ],
)
def test_odd_signatures_are_refused_by_name(
    model: bytes, message: str, defs: StreamDefinitions, registry: ModelRegistry
) -> None:
    with pytest.raises(DefinitionError, match=message):
        register_onnx(
            registry, "odd", model, defs, meaning=ScoreMeaning(positive="high", threshold=1.0)
        )
    assert registry.versions("odd") == []


def test_per_feature_inputs_named_as_the_service_still_need_one_matrix(
    defs: StreamDefinitions, registry: ModelRegistry
) -> None:
    model = graph(
        [(name, FLOAT, [None, 1]) for name in defs.inputs],
        [("Concat", list(defs.inputs), ["all"], {"axis": 1}),
         ("ReduceSum", ["all"], ["score"], {"keepdims": 0})],
        [("score", FLOAT, [None])],
    )  # fmt: skip
    with pytest.raises(DefinitionError, match=r"takes 15 inputs .* export with one input"):
        register_onnx(registry, "split", model, defs)


def test_a_zipmap_classifier_is_refused_with_the_fix(
    defs: StreamDefinitions, xy: tuple[Any, Any], registry: ModelRegistry
) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.tree import DecisionTreeClassifier

    clf = DecisionTreeClassifier(max_depth=2).fit(*xy)
    onx = convert_sklearn(
        clf, initial_types=[("input", FloatTensorType([None, N]))], target_opset=17
    )
    with pytest.raises(DefinitionError, match=r"no float tensor output .*zipmap=False"):
        register_onnx(registry, "zipmap", onx.SerializeToString(), defs)
    with pytest.raises(DefinitionError, match=r"no output 'proba'"):
        register_onnx(
            registry, "zipmap", onx.SerializeToString(), defs, meaning=ScoreMeaning(output="proba")
        )


def test_a_reference_set_without_the_features_is_refused(defs: StreamDefinitions) -> None:
    with pytest.raises(
        DefinitionError, match=r"lacks the service's features \['terminal_risk_30d'\]"
    ):
        reference_rows(pd.DataFrame({n: [0.0] for n in defs.inputs[:-1]}), defs.inputs)


def test_train_goes_through_the_same_checks() -> None:
    service = FeatureService("fraud_model_v1", ("a", "b"))
    model = graph(
        [("input", FLOAT, [None, 3])],
        [("ReduceSum", ["input"], ["score"], {"keepdims": 0})],
        [("score", FLOAT, [None])],
    )
    with pytest.raises(
        DefinitionError, match=r"takes 3 inputs; feature service fraud_model_v1 names 2"
    ):
        register_onnx(ModelRegistry(Path("/nonexistent")), "x", model, service)


def test_metadata_names_may_be_comma_separated() -> None:
    from stream_infer.model.signature import Signature

    sig = Signature((), (), {"feature_names": " a, b ,c"})
    assert sig.feature_names() == ("a", "b", "c")
    with pytest.raises(DefinitionError, match="not a list of names"):
        Signature((), (), {"feature_names": '["a", 1]'}).feature_names()
