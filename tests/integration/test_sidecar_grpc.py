"""The Open Inference Protocol over gRPC, with the real tritonclient.grpc: inference equal to
the model run directly, metadata, configuration, statistics shared with HTTP (one process, one
batcher), health, the repository behind the bearer token, and errors as status codes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest

from stream_infer.config import Settings
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.kafka.broker import free_port
from stream_infer.model.registry import MODEL_FILE
from stream_infer.sidecar import app as sidecar_app

from .conftest import make_test_settings
from .test_sidecar import serving

N = len(FEATURE_NAMES)
TOKEN = "grpc-s3cret"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> Settings:
    return make_test_settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model={"registry_dir": str(model_registry)},
        serve={"repository_token": TOKEN},
    )


@pytest.fixture(scope="module")
def direct(model_registry: Path) -> Callable[[np.ndarray], np.ndarray]:
    session = ort.InferenceSession(
        str(model_registry / "fraud" / "1" / MODEL_FILE), providers=["CPUExecutionProvider"]
    )
    return lambda rows: session.run(["probabilities"], {"input": rows.astype(np.float32)})[0]


def code_of(exc: Any) -> str:
    return str(exc.status()).removeprefix("StatusCode.")


def test_grpc_inference_metadata_config_statistics_and_health(
    settings: Settings, direct: Callable[[np.ndarray], np.ndarray]
) -> None:
    import tritonclient.grpc as triton
    import tritonclient.http as triton_http
    from tritonclient.utils import InferenceServerException

    rows = np.random.default_rng(3).normal(size=(6, N)).astype(np.float32)
    port = free_port()
    with serving(settings, grpc_port=port) as url:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("fraud") and client.is_model_ready("fraud", "1")
        assert not client.is_model_ready("fraud", "7") and not client.is_model_ready("nope")
        server = client.get_server_metadata(as_json=True)
        assert server["name"] == "stream-infer" and "statistics" in server["extensions"]

        meta = client.get_model_metadata("fraud", as_json=True)
        assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1"]
        assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": ["-1", "15"]}
        http_meta = triton_http.InferenceServerClient(url.removeprefix("http://"))
        assert http_meta.get_model_metadata("fraud")["outputs"][0]["shape"] == [-1, 2]

        config = client.get_model_config("fraud", as_json=True)["config"]
        assert config["name"] == "fraud" and config["platform"] == "onnxruntime_onnx"
        assert int(config["max_batch_size"]) == settings.batch.max_batch_size
        assert config["input"][0]["data_type"] == "TYPE_FP32"
        assert config["input"][0]["dims"] == [str(N)]
        assert config["output"][0]["dims"] == ["2"]
        assert "dynamic_batching" in config

        for datatype, values in (("FP32", rows), ("FP64", rows.astype(np.float64))):
            tensor = triton.InferInput("input", list(values.shape), datatype)
            tensor.set_data_from_numpy(values)
            wanted = [triton.InferRequestedOutput("probabilities")]
            result = client.infer("fraud", [tensor], outputs=wanted, request_id="g-1")
            np.testing.assert_allclose(result.as_numpy("probabilities"), direct(rows), atol=1e-6)
            response = result.get_response(as_json=True)
            assert response["id"] == "g-1" and response["model_version"] == "1"
            assert response["parameters"]["model_role"]["string_param"] == "champion"

        # One process, one batcher, one set of statistics: HTTP requests count there too.
        http_tensor = triton_http.InferInput("input", [2, N], "FP32")
        http_tensor.set_data_from_numpy(rows[:2])
        http_meta.infer("fraud", [http_tensor])
        stats = client.get_inference_statistics("fraud", as_json=True)["model_stats"][0]
        assert (stats["name"], stats["version"]) == ("fraud", "1")
        assert int(stats["inference_count"]) == 2 * len(rows) + 2
        assert int(stats["inference_stats"]["success"]["count"]) == 3
        assert int(stats["inference_stats"]["compute_infer"]["count"]) == 3
        assert client.get_inference_statistics(as_json=True)["model_stats"][0]["name"] == "fraud"

        # Errors are status codes with the reason.
        short = triton.InferInput("input", [1, 3], "FP32")
        short.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        words = triton.InferInput("input", [1, N], "BYTES")
        words.set_data_from_numpy(np.array([[b"a"] * N], dtype=np.object_))
        for call, code, text in (
            (lambda: client.infer("fraud", [short]), "INVALID_ARGUMENT", "shape"),
            (lambda: client.infer("fraud", [words]), "INVALID_ARGUMENT", "BYTES"),
            (lambda: client.infer("nope", [short]), "NOT_FOUND", "unknown model nope"),
            (lambda: client.infer("fraud", [short], model_version="5"), "NOT_FOUND", "version 5"),
            (lambda: client.get_model_config("nope"), "NOT_FOUND", "unknown model"),
            (lambda: client.get_model_metadata("fraud", "4"), "NOT_FOUND", "version 4"),
        ):
            with pytest.raises(InferenceServerException) as refused:
                call()
            assert code_of(refused.value) == code and text in refused.value.message()


def test_grpc_repository_index_is_guarded_by_the_bearer_token(settings: Settings) -> None:
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    port = free_port()
    with serving(settings, grpc_port=port):
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        for headers, code in ((None, "UNAUTHENTICATED"), ({"authorization": "Bearer no"}, None)):
            with pytest.raises(InferenceServerException) as denied:
                client.get_model_repository_index(headers=headers)
            assert code_of(denied.value) == (code or "UNAUTHENTICATED")
            assert "token" in denied.value.message()
        index = client.get_model_repository_index(headers=AUTH, as_json=True)
        assert index["models"] == [{"name": "fraud", "version": "1", "state": "READY"}]
        client.load_model("fraud", headers=AUTH)  # a reload: the registry re-read, nothing fails
        with pytest.raises(InferenceServerException) as kept:
            client.unload_model("fraud", headers=AUTH)
        assert code_of(kept.value) == "INVALID_ARGUMENT" and "champion" in kept.value.message()
        assert client.is_model_ready("fraud")


def test_grpc_answers_unavailable_while_the_champion_loads(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    gate = threading.Event()
    real = sidecar_app._load_pipeline

    def slow_load(*args: Any) -> Any:
        gate.wait(30)
        return real(*args)

    monkeypatch.setattr(sidecar_app, "_load_pipeline", slow_load)
    port = free_port()
    with serving(settings, wait_ready=False, grpc_port=port) as url:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_live() and not client.is_server_ready()
        assert not client.is_model_ready("fraud")
        with pytest.raises(InferenceServerException) as loading:
            client.get_model_metadata("fraud")
        assert code_of(loading.value) == "UNAVAILABLE"
        assert "loading" in loading.value.message()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raw:
            stub.ModelConfig(service_pb2.ModelConfigRequest(name="fraud"))
        assert raw.value.code() == grpc.StatusCode.UNAVAILABLE
        assert dict(raw.value.trailing_metadata())["retry-after"]
        channel.close()
        gate.set()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.05)
        assert client.is_server_ready() and client.is_model_ready("fraud")


def test_serve_exits_non_zero_when_the_grpc_port_is_taken(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = settings.serve.model_copy(update={"port": free_port(), "grpc_port": port})
        with pytest.raises(SystemExit) as exited:  # uvicorn's exit on a failed start-up
            sidecar_app.run(settings.model_copy(update={"serve": serve}))
        assert exited.value.code not in (0, None)
