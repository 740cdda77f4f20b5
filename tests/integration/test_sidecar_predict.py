"""The ``/v1`` predict contract: a batch of transactions answered in order, each as it would be
alone; per-request thresholds; per-feature explanations equal to the model run directly on
each perturbed row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from stream_infer.config import Settings
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.registry import MODEL_FILE

from .conftest import make_test_settings
from .kafka_io import make_transactions
from .test_sidecar import predict_body, serving

PREDICT = "/v1/models/fraud/predict"


@pytest.fixture
def settings(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> Settings:
    return make_test_settings(
        base_settings, kafka_bootstrap, tmp_path, model={"registry_dir": str(model_registry)}
    )


@pytest.fixture(scope="module")
def score(model_registry: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The registered model run directly: rows -> fraud probabilities."""
    session = ort.InferenceSession(
        str(model_registry / "fraud" / "1" / MODEL_FILE), providers=["CPUExecutionProvider"]
    )
    return lambda rows: session.run(["probabilities"], {"input": rows.astype(np.float32)})[0][:, 1]


def test_a_batch_is_answered_in_order_each_as_it_would_be_alone(settings: Settings) -> None:
    txs = make_transactions(8, customers=3)
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        alone = []
        for tx in txs:
            reply = client.post(PREDICT, json=predict_body(tx, return_features=True))
            assert reply.status_code == 200, reply.text
            alone.append(reply.json())
        body = {
            "request_id": "batch-1",
            "transactions": txs,
            "parameters": {"return_features": True, "threshold": 0.0},
        }
        reply = client.post(PREDICT, json=body)
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["request_id"] == "batch-1" and len(answer["results"]) == len(txs)
        for single, result in zip(alone, answer["results"], strict=True):
            assert result["request_id"] == "batch-1"
            assert result["features"] == single["features"]
            assert result["predictions"]["fraud_probability"] == pytest.approx(
                single["predictions"]["fraud_probability"], abs=1e-9
            )
            assert result["predictions"]["is_fraud"] is True  # threshold 0: everything
            assert (result["model_version"], result["model_role"]) == (1, "champion")
            assert result["metadata"]["latency_ms"] > 0 and result["metadata"]["timestamp"]
            assert "explanations" not in result
        strict = client.post(PREDICT, json=predict_body(txs[0], threshold=1.0)).json()
        assert strict["predictions"]["is_fraud"] is (
            strict["predictions"]["fraud_probability"] >= 1.0
        )
        assert "features" not in strict and "explanations" not in strict
        for bad in ({"transactions": []}, {"transactions": txs, "inputs": txs[0]}):
            refused = client.post(PREDICT, json=bad)
            assert refused.status_code == 422 and refused.json()["error"], refused.text


def test_explanations_replace_each_feature_by_its_reference(
    settings: Settings, score: Callable[[np.ndarray], np.ndarray]
) -> None:
    txs = make_transactions(3, customers=3)
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        single = client.post(
            PREDICT, json=predict_body(txs[0], return_explanations=True, return_features=True)
        ).json()
        batch = client.post(
            PREDICT,
            json={"transactions": txs, "parameters": {"return_explanations": True}},
        ).json()["results"]
    for answer in (single, *batch):
        explained = answer["explanations"]
        # The test registry's manifest records no training means: the reference is zero.
        assert explained["method"] == "replace_with_reference"
        assert explained["reference"] == "zero"
        assert list(explained["features"]) == list(FEATURE_NAMES)
        features = np.array([[explained["features"][n]["value"] for n in FEATURE_NAMES]])
        if "features" in answer:
            assert [answer["features"][n] for n in FEATURE_NAMES] == features[0].tolist()
        probability = answer["predictions"]["fraud_probability"]
        assert probability == pytest.approx(float(score(features)[0]), abs=1e-6)
        for i, name in enumerate(FEATURE_NAMES):
            one = explained["features"][name]
            assert one["reference"] == 0.0
            row = features.copy()
            row[0, i] = 0.0
            assert one["score_without"] == pytest.approx(float(score(row)[0]), abs=1e-6), name
            assert one["attribution"] == pytest.approx(probability - one["score_without"])


def test_answers_hold_to_the_documented_response_model(settings: Settings) -> None:
    # The route encodes dicts with orjson (no response model per request): the documented
    # shapes are held here, for one transaction, a batch, features and explanations.
    from pydantic import TypeAdapter

    from stream_infer.sidecar.schemas import PredictAnswer

    answers: TypeAdapter[object] = TypeAdapter(PredictAnswer)
    txs = make_transactions(3, customers=2)
    everything = {"return_features": True, "return_explanations": True}
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        for body in (
            predict_body(txs[0]),
            predict_body(txs[1], **everything),
            {"request_id": "b", "transactions": txs, "parameters": everything},
        ):
            reply = client.post(PREDICT, json=body)
            assert reply.status_code == 200, reply.text
            assert reply.headers["content-type"] == "application/json"
            answers.validate_python(reply.json())
            assert "features" in reply.text or not body["parameters"]


def test_is_fraud_follows_the_serving_versions_rule(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    # The same network registered as a low-is-positive decision score: its manifest's rule,
    # not score >= threshold, judges every answer; a request's threshold (any finite float)
    # replaces the threshold, never the direction.
    from pydantic import ValidationError

    from stream_infer.model.registry import ModelRegistry
    from stream_infer.sidecar.schemas import PredictParameters

    root = tmp_path / "low-registry"
    onnx = (model_registry / "fraud" / "1" / MODEL_FILE).read_bytes()
    cut = 0.5
    ModelRegistry(root).register(
        "fraud", onnx, FEATURE_NAMES, score_kind="decision", positive="low", threshold=cut
    )
    settings = make_test_settings(
        base_settings, kafka_bootstrap, tmp_path, model={"registry_dir": str(root)}
    )
    # Small amounts, one transaction a customer: scores on both sides of a cut.
    txs = [tx | {"tx_amount": 0.2 * i} for i, tx in enumerate(make_transactions(12, customers=12))]
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:

        def answers(**parameters: float) -> list[tuple[float, bool]]:
            body = {"transactions": txs, "parameters": parameters}
            reply = client.post(PREDICT, json=body)
            assert reply.status_code == 200, reply.text
            got = [r["predictions"] for r in reply.json()["results"]]
            return [(p["fraud_probability"], p["is_fraud"]) for p in got]

        manifest = answers()
        assert all(flag == (score <= cut) for score, flag in manifest)
        assert {flag for _, flag in manifest} == {True, False}
        scores = sorted(score for score, _ in manifest)
        middle = scores[len(scores) // 2]
        assert scores[0] < middle < scores[-1]  # both verdicts are seen below
        judged = answers(threshold=middle)
        assert all(flag == (score <= middle) for score, flag in judged)
        assert {flag for _, flag in judged} == {True, False}
        # Outside [0, 1]: a decision score's threshold, accepted, on the low side.
        assert not any(flag for _, flag in answers(threshold=-3.5))
        assert all(flag for _, flag in answers(threshold=7.0))
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValidationError):
            PredictParameters(threshold=bad)
