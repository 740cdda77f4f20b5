"""The sidecar on a running server: same scores as the stream, OIP via tritonclient,
readiness after warm-up, 503 when the queue is full, 4xx for callers' mistakes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import uvicorn

from stream_infer.config import Settings
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.kafka.broker import free_port
from stream_infer.runtime import build_worker, load_serving_model
from stream_infer.sidecar import app as sidecar_app
from stream_infer.sidecar.app import create_app

from .conftest import make_test_settings
from .kafka_io import make_transactions, produce, read_topic, setup_topics


@contextmanager
def serving(settings: Settings, wait_ready: bool = True, grpc_port: int = 0) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread; gRPC on ``grpc_port``
    (0: off, so that tests running side by side never contend for the default port)."""
    serve = settings.serve.model_copy(update={"grpc_port": grpc_port})
    settings = settings.model_copy(update={"serve": serve})
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    if wait_ready:
        while httpx.get(f"{url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "sidecar never became ready"
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def settings(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> Settings:
    return make_test_settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model={"registry_dir": str(model_registry)},
        worker={"emit_features": True},
        serve={"max_body_bytes": 4096},
    )


def predict_body(tx: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    return {"request_id": f"r-{tx['transaction_id']}", "inputs": tx, "parameters": parameters}


def test_sidecar_scores_equal_the_streams(settings: Settings) -> None:
    setup_topics(settings)
    events = make_transactions(400, customers=20)
    produce(settings, settings.topics.transactions, events)
    worker = build_worker(settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    scores = read_topic(settings, settings.topics.scores, lambda r: len(r) >= len(events))
    worker.stop()
    thread.join(30)
    stream = {s["transaction_id"]: s for s in (orjson.loads(m.value()) for m in scores)}

    with serving(settings) as url, httpx.Client(base_url=url) as client:
        for tx in events[::7]:
            reply = client.post(
                "/v1/models/fraud/predict", json=predict_body(tx, return_features=True)
            )
            assert reply.status_code == 200, reply.text
            body = reply.json()
            mine = stream[tx["transaction_id"]]
            assert body["predictions"]["fraud_probability"] == pytest.approx(
                mine["score"], abs=1e-6
            )
            for name in FEATURE_NAMES:
                assert body["features"][name] == pytest.approx(mine["features"][name], abs=1e-9)
            assert body["model_version"] == mine["model_version"]
        # A new transaction (not in the stream) counts itself in its customer's windows.
        new = {**events[-1], "transaction_id": "brand-new", "tx_datetime": "2026-04-01T04:10:00"}
        body = client.post(
            "/v1/models/fraud/predict", json=predict_body(new, return_features=True)
        ).json()
        last = stream[events[-1]["transaction_id"]]["features"]
        assert body["features"]["customer_nb_tx_1d"] == last["customer_nb_tx_1d"] + 1
        metrics = client.get("/metrics").text
        assert 'stream_infer_http_requests_total{api="v1",status="200"}' in metrics


def test_open_inference_protocol_with_tritonclient(settings: Settings) -> None:
    import tritonclient.http as triton

    rows = np.random.default_rng(1).normal(size=(5, len(FEATURE_NAMES))).astype(np.float32)
    direct = load_serving_model(settings).predict(rows)
    with serving(settings) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("fraud") and client.is_model_ready("fraud", "1")
        meta = client.get_model_metadata("fraud")
        assert meta["inputs"][0]["shape"] == [-1, len(FEATURE_NAMES)]
        tensor = triton.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=False)
        wanted = triton.InferRequestedOutput("probabilities", binary_data=False)
        result = client.infer("fraud", [tensor], outputs=[wanted])
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (5, 2)
        assert np.allclose(probabilities[:, 1], direct, atol=1e-6)
        assert not client.is_model_ready("nope")


def test_ready_only_after_the_model_is_warm(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real = sidecar_app._load_pipeline

    def slow_load(*args: Any) -> Any:
        gate.wait(30)
        return real(*args)

    monkeypatch.setattr(sidecar_app, "_load_pipeline", slow_load)
    with serving(settings, wait_ready=False) as url:
        assert httpx.get(f"{url}/v2/health/live").status_code == 200
        assert httpx.get(f"{url}/v2/health/ready").status_code == 503
        early = httpx.post(
            f"{url}/v1/models/fraud/predict", json=predict_body(make_transactions(1)[0])
        )
        assert early.status_code == 503 and early.headers["Retry-After"]
        gate.set()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.get(f"{url}/v2/models/fraud/ready").status_code == 200


def test_full_queue_answers_503_with_retry_after(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stream_infer.sidecar import scoring

    real_call = scoring.TransactionScorer.__call__

    def slow(self: Any, txs: Any) -> Any:
        time.sleep(0.3)  # scoring slower than requests arrive
        return real_call(self, txs)

    monkeypatch.setattr(scoring.TransactionScorer, "__call__", slow)
    settings = settings.model_copy(
        update={
            "serve": settings.serve.model_copy(update={"max_queue": 2}),
            "batch": settings.batch.model_copy(update={"max_batch_size": 1}),
        }
    )
    tx = make_transactions(1)[0]
    with serving(settings) as url:
        results: list[httpx.Response] = []

        def call() -> None:
            results.append(
                httpx.post(f"{url}/v1/models/fraud/predict", json=predict_body(tx), timeout=30)
            )

        callers = [threading.Thread(target=call) for _ in range(10)]
        for c in callers:
            c.start()
        for c in callers:
            c.join(60)
    codes = [r.status_code for r in results]
    assert set(codes) <= {200, 503}, codes
    rejected = [r for r in results if r.status_code == 503]
    assert len(rejected) >= 3, codes  # one scoring, two queued, the rest turned away
    assert all(r.headers.get("Retry-After") for r in rejected)
    assert codes.count(200) >= 1


def test_callers_mistakes_are_4xx(settings: Settings) -> None:
    tx = make_transactions(1)[0]
    with serving(settings) as url, httpx.Client(base_url=url) as client:
        bad = client.post("/v1/models/fraud/predict", json=predict_body({**tx, "tx_amount": -1}))
        assert bad.status_code == 422 and "tx_amount" in bad.text
        assert client.post("/v1/models/other/predict", json=predict_body(tx)).status_code == 404
        assert client.post(
            "/v2/models/fraud/versions/9/infer", json={"inputs": []}
        ).status_code in (404, 422)
        junk = client.post(
            "/v1/models/fraud/predict",
            content=b"{nope",
            headers={"content-type": "application/json"},
        )
        assert junk.status_code == 422
        huge = client.post("/v1/models/fraud/predict", content=b"x" * 10_000)
        assert huge.status_code == 413
        shape = client.post(
            "/v2/models/fraud/infer",
            json={
                "inputs": [
                    {"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
                ]
            },
        )
        assert shape.status_code == 400 and "shape" in shape.text


def test_schemathesis_finds_no_server_errors(settings: Settings) -> None:
    """No 5xx anywhere; every refusal on a /v2 route is the protocol's {"error": "..."}."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    with serving(settings) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        failures: list[str] = []
        calls = 0
        for operation in schema.get_all_operations():
            op = operation.ok()

            @given(case=op.as_strategy())
            @hsettings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                nonlocal calls
                if "name" in (case.path_parameters or {}) and "/models/" in case.path:
                    case.path_parameters["name"] = "fraud"  # reach past "unknown model"
                response = case.call(base_url=url, timeout=10)
                calls += 1
                where = f"{case.method} {case.formatted_path} {case.body!r}"
                if response.status_code >= 500:
                    failures.append(f"{where}: {response.status_code} {response.text}")
                if case.path.startswith("/v2") and response.status_code >= 400:
                    try:
                        error = response.json()["error"]
                    except (ValueError, KeyError, TypeError):
                        error = None
                    if not isinstance(error, str):
                        failures.append(f"{where}: {response.status_code} {response.text}")

            check()
    assert calls > 100 and not failures, failures
