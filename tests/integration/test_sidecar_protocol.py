"""The Open Inference Protocol over HTTP as a new user meets it: the real tritonclient.http
with its defaults (binary tensor data) and without, its model-configuration, statistics and
metadata calls, every datatype the model's input takes, and the protocol's error bodies."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from stream_infer.config import Settings
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.registry import MODEL_FILE
from stream_infer.sidecar import app as sidecar_app

from .conftest import make_test_settings
from .test_sidecar import serving

N = len(FEATURE_NAMES)
HEADER = "Inference-Header-Content-Length"


@pytest.fixture
def settings(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> Settings:
    return make_test_settings(
        base_settings, kafka_bootstrap, tmp_path, model={"registry_dir": str(model_registry)}
    )


@pytest.fixture(scope="module")
def direct(model_registry: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The registered model run directly by onnxruntime: rows -> the probabilities tensor."""
    session = ort.InferenceSession(
        str(model_registry / "fraud" / "1" / MODEL_FILE), providers=["CPUExecutionProvider"]
    )
    return lambda rows: session.run(["probabilities"], {"input": rows.astype(np.float32)})[0]


def rows_of(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, N)).astype(np.float32)


def test_tritonclient_defaults_send_and_receive_binary_tensors(
    settings: Settings, direct: Callable[[np.ndarray], np.ndarray]
) -> None:
    import tritonclient.http as triton

    rows = rows_of(7)
    with serving(settings) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        tensor = triton.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)  # binary_data=True: the default
        result = client.infer("fraud", [tensor])  # no outputs named: all of them, binary
        assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 7 * 2 * 4
        np.testing.assert_allclose(result.as_numpy("probabilities"), direct(rows), atol=1e-6)

        # Each combination of binary / JSON, in and out.
        for binary_in in (True, False):
            for binary_out in (True, False):
                tensor = triton.InferInput("input", list(rows.shape), "FP32")
                tensor.set_data_from_numpy(rows, binary_data=binary_in)
                wanted = triton.InferRequestedOutput("probabilities", binary_data=binary_out)
                got = client.infer("fraud", [tensor], outputs=[wanted], request_id="r-1")
                assert got.get_response()["id"] == "r-1"
                sent = got.get_response()["outputs"][0]
                assert ("data" in sent) is not binary_out
                np.testing.assert_allclose(got.as_numpy("probabilities"), direct(rows), atol=1e-6)

        # The wire itself: the header length in, the header length and the raw bytes out.
        header = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [7, N],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": rows.nbytes},
                    }
                ],
                "parameters": {"binary_data_output": True},
            }
        )
        raw = httpx.post(
            f"{url}/v2/models/fraud/infer",
            content=header + rows.tobytes(),
            headers={HEADER: str(len(header))},
        )
        assert raw.status_code == 200, raw.text
        split = int(raw.headers[HEADER])
        meta = orjson.loads(raw.content[:split])
        assert meta["outputs"][0]["parameters"]["binary_data_size"] == len(raw.content) - split
        out = np.frombuffer(raw.content[split:], dtype="<f4").reshape(7, 2)
        np.testing.assert_allclose(out, direct(rows), atol=1e-6)


def test_every_numeric_datatype_is_converted_and_bytes_are_refused(
    settings: Settings, direct: Callable[[np.ndarray], np.ndarray]
) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    floats = rows_of(4) * 10
    ints = np.round(np.abs(floats)).astype(np.int64)
    cases: list[tuple[str, np.ndarray]] = [
        ("FP64", floats.astype(np.float64)),
        ("FP16", floats.astype(np.float16)),
        ("INT8", ints.astype(np.int8)),
        ("INT16", ints.astype(np.int16)),
        ("INT32", ints.astype(np.int32)),
        ("INT64", ints),
        ("UINT8", ints.astype(np.uint8)),
        ("UINT16", ints.astype(np.uint16)),
        ("UINT32", ints.astype(np.uint32)),
        ("UINT64", ints.astype(np.uint64)),
    ]
    with serving(settings) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        for datatype, values in cases:
            for binary in (True, False):
                tensor = triton.InferInput("input", list(values.shape), datatype)
                tensor.set_data_from_numpy(values, binary_data=binary)
                got = client.infer("fraud", [tensor]).as_numpy("probabilities")
                expected = direct(values.astype(np.float32))
                np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=datatype)
        words = np.array([[b"x"] * N], dtype=np.object_)
        tensor = triton.InferInput("input", [1, N], "BYTES")
        tensor.set_data_from_numpy(words)
        with pytest.raises(InferenceServerException) as refused:
            client.infer("fraud", [tensor])
        assert refused.value.status() == "400"
        assert "BYTES" in refused.value.message() and "FP32" in refused.value.message()


def test_model_configuration_statistics_and_metadata_extensions(
    settings: Settings, direct: Callable[[np.ndarray], np.ndarray]
) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    with serving(settings) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("fraud") and client.is_model_ready("fraud", "1")
        assert not client.is_model_ready("fraud", "9")
        server = client.get_server_metadata()
        assert {"binary_tensor_data", "model_configuration", "statistics"} <= set(
            server["extensions"]
        )
        assert server["ready"] is True and server["reason"] == ""

        meta = client.get_model_metadata("fraud")
        assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, N]}]
        assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]

        config = client.get_model_config("fraud")
        assert config["name"] == "fraud" and config["platform"] == "onnxruntime_onnx"
        assert config["max_batch_size"] == settings.batch.max_batch_size
        assert config["input"][0] | {"data_type": "TYPE_FP32", "dims": [N]} == config["input"][0]
        assert config["output"][0]["data_type"] == "TYPE_FP32"
        assert config["output"][0]["dims"] == [2]
        assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 0  # never held
        assert config["parameters"]["feature_names"]["string_value"].split(",") == list(
            FEATURE_NAMES
        )
        assert client.get_model_config("fraud", "1") == config

        before = client.get_inference_statistics("fraud")["model_stats"][0]
        assert before["inference_count"] == 0 and before["execution_count"] == 0
        sizes = (1, 3, 5)
        for n in sizes:
            tensor = triton.InferInput("input", [n, N], "FP32")
            tensor.set_data_from_numpy(rows_of(n))
            client.infer("fraud", [tensor])
        bad = triton.InferInput("input", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        with pytest.raises(InferenceServerException):
            client.infer("fraud", [bad])

        stats = client.get_inference_statistics("fraud")
        (entry,) = stats["model_stats"]
        assert (entry["name"], entry["version"]) == ("fraud", "1")
        assert entry["inference_count"] == sum(sizes)
        assert 1 <= entry["execution_count"] <= len(sizes)
        assert entry["last_inference"] > 0
        phases = entry["inference_stats"]
        assert phases["success"]["count"] == len(sizes) and phases["success"]["ns"] > 0
        assert phases["fail"]["count"] == 1
        for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
            assert phases[phase]["count"] == len(sizes), phase
        assert phases["compute_infer"]["ns"] > 0
        assert (
            sum(b["compute_infer"]["count"] for b in entry["batch_stats"])
            == entry["execution_count"]
        )
        assert client.get_inference_statistics("fraud", "1") == stats
        assert client.get_inference_statistics()["model_stats"][0]["name"] == "fraud"


def test_v2_refusals_are_protocol_error_bodies(settings: Settings) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    with serving(settings) as url, httpx.Client(base_url=url) as client:
        infer = "/v2/models/fraud/infer"
        one_row = {"name": "input", "shape": [1, N], "datatype": "FP32", "data": [0.0] * N}
        cases: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
            ("GET", "/v2/models/nope", b"", {}, 404, "unknown model"),
            ("GET", "/v2/models/nope/config", b"", {}, 404, "unknown model"),
            ("GET", "/v2/models/fraud/versions/9/stats", b"", {}, 404, "version 9"),
            ("GET", "/v2/models/fraud/versions/x/config", b"", {}, 404, "version x"),
            ("GET", "/v2/models/fraud/versions/\u00b2/ready", b"", {}, 404, "version \u00b2"),
            ("POST", "/v2/models/fraud/versions/9/infer", b"{}", {}, 404, "version 9"),
            ("GET", "/v2/no/such/route", b"", {}, 404, "Not Found"),
            ("GET", infer, b"", {}, 405, "Method Not Allowed"),
            ("POST", infer, b"{nope", {}, 400, "invalid inference request"),
            ("POST", infer, b'{"inputs": []}', {}, 400, "inputs"),
            ("POST", infer, orjson.dumps({"inputs": [one_row] * 2}), {}, 400, "exactly one"),
            ("POST", infer, b"{}", {HEADER: "99"}, 400, HEADER),
            (
                "POST",
                infer,
                orjson.dumps({"inputs": [{**one_row, "data": ["1"] * N}]}),
                {},
                400,
                "numbers",
            ),
            (
                "POST",
                infer,
                orjson.dumps({"inputs": [{**one_row, "data": [1e39] * N}]}),
                {},
                400,
                "finite",
            ),
            (
                "POST",
                infer,
                orjson.dumps({"inputs": [one_row], "outputs": [{"name": "label"}]}),
                {},
                400,
                "unknown output",
            ),
            (
                "POST",
                infer,
                orjson.dumps({"inputs": [one_row], "parameters": {"sequence_id": 3}}),
                {},
                400,
                "stateless",
            ),
        ]
        binary_row = {k: v for k, v in one_row.items() if k != "data"}
        header = orjson.dumps(
            {"inputs": [binary_row | {"parameters": {"binary_data_size": 4 * N}}]}
        )
        short = header + b"\0" * (4 * N - 4)
        cases.append(("POST", infer, short, {HEADER: str(len(header))}, 400, "short"))
        for method, path, body, headers, status, words in cases:
            reply = client.request(method, path, content=body, headers=headers)
            assert reply.status_code == status, (path, body, reply.text)
            error = reply.json()["error"]
            assert isinstance(error, str) and words in error, (path, body, error)

        # tritonclient reads those bodies: the message, not "an exception ... decoding".
        triton_client = triton.InferenceServerClient(url.removeprefix("http://"))
        with pytest.raises(InferenceServerException) as unknown:
            triton_client.get_model_config("nope")
        assert unknown.value.status() == "404" and "unknown model nope" in unknown.value.message()


def test_a_champion_that_does_not_load_is_not_ready_and_says_why(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """No champion in the registry: live, not ready, retrying; every answer says why."""
    import tritonclient.http as triton

    empty = make_test_settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model={"registry_dir": str(tmp_path / "empty-registry"), "poll_interval_s": 0.2},
    )
    with serving(empty, wait_ready=False) as url, httpx.Client(base_url=url) as client:
        deadline = time.monotonic() + 60
        while "champion not loaded" not in (server := client.get("/v2").json())["reason"]:
            assert time.monotonic() < deadline, f"never said why it is not ready: {server}"
            time.sleep(0.05)
        assert server["ready"] is False and "ModelNotFoundError" in server["reason"]
        for path in ("/v2/models/fraud", "/v2/models/fraud/config", "/v2/models/fraud/stats"):
            reply = client.get(path)
            assert reply.status_code == 503 and reply.headers["Retry-After"], path
            assert "champion not loaded" in reply.json()["error"], path
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and "champion not loaded" in ready.json()["error"]
        assert client.get("/v2/health/live").status_code == 200
        assert not triton.InferenceServerClient(url.removeprefix("http://")).is_server_ready()


def test_a_start_up_failure_the_registry_cannot_fix_makes_serve_exit_non_zero(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stream_infer.errors import FatalError
    from stream_infer.kafka.broker import free_port

    def broken(_settings: Settings) -> Any:
        raise RuntimeError("the state store's driver is broken")

    monkeypatch.setattr(sidecar_app, "_store_probe", broken)
    serve = settings.serve.model_copy(update={"port": free_port(), "grpc_port": 0})
    with pytest.raises(FatalError, match="driver is broken"):
        sidecar_app.run(settings.model_copy(update={"serve": serve}))
