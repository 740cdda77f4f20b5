"""The Open Inference Protocol's pieces without a server: datatype conversion, the binary
tensor extension's framing, statistics, explanations' rows, scoring rounds, and the refusals
(queue full, timeout) as protocol statuses."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest

from stream_infer.config import load_settings
from stream_infer.errors import BatchTimeoutError, QueueFullError
from stream_infer.events import Transaction
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.serving import Served, ServingModels
from stream_infer.model.session import LoadedModel
from stream_infer.sidecar.binary import HEADER_LENGTH, decode_request, encode_answer, inflate
from stream_infer.sidecar.core import Sidecar
from stream_infer.sidecar.datatypes import TensorDataError, as_features, from_bytes, from_json
from stream_infer.sidecar.explain import perturbed, reference_of
from stream_infer.sidecar.inference import OpenInference
from stream_infer.sidecar.protocol import (
    GRPC_CODES,
    InferAnswer,
    InferCall,
    InputTensor,
    OutputTensor,
    ProtocolError,
)
from stream_infer.sidecar.scoring import TensorRequest, TensorScorer, rounds_of
from stream_infer.sidecar.stats import Execution, InferenceStatistics

N = len(FEATURE_NAMES)


def test_json_data_must_be_numbers_of_its_datatype() -> None:
    assert from_json("x", "FP32", [[1, 2.5], [3, 4]]).tolist() == [1.0, 2.5, 3.0, 4.0]
    assert from_json("x", "INT8", [1, -2]).dtype == np.int8
    for datatype, data, words in (
        ("FP32", ["1.5"], "numbers"),
        ("FP32", [[1], [1, 2]], "regular"),
        ("INT32", [1.5], "integers"),
        ("UINT8", [256], "range"),
        ("INT64", [2**70], "numbers"),
        ("BYTES", [1], "BYTES"),
        ("BOOL", [1], "not accepted"),
        ("FP8", [1], "not a protocol datatype"),
    ):
        with pytest.raises(TensorDataError, match=words):
            from_json("x", datatype, data)


def test_binary_data_is_little_endian_and_bf16_widens() -> None:
    values = np.array([1.5, -2.25, 3.0], dtype=np.float32)
    assert from_bytes("x", "FP32", values.astype("<f4").tobytes(), [3]).tolist() == [1.5, -2.25, 3]
    assert from_bytes("x", "FP16", values.astype("<f2").tobytes(), [3]).tolist() == [1.5, -2.25, 3]
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()  # exact in BF16
    assert from_bytes("x", "BF16", bf16, [3]).tolist() == [1.5, -2.25, 3.0]
    with pytest.raises(TensorDataError, match="needs 12"):
        from_bytes("x", "FP32", b"\0" * 8, [3])
    with pytest.raises(TensorDataError, match="finite"):
        as_features("x", np.array([1e300]))


def framed(inputs: list[dict[str, Any]], blobs: bytes, **extra: Any) -> tuple[bytes, str]:
    header = orjson.dumps({"inputs": inputs, **extra})
    return header + blobs, str(len(header))


def test_the_binary_extension_splits_header_and_tensor_data() -> None:
    rows = np.arange(2 * N, dtype=np.float32).reshape(2, N)
    tensor = {
        "name": "input",
        "shape": [2, N],
        "datatype": "FP32",
        "parameters": {"binary_data_size": rows.nbytes},
    }
    body, length = framed([tensor], rows.tobytes(), id="a")
    _request, call = decode_request(body, length)
    assert call.id == "a" and call.inputs[0].values.tolist() == rows.reshape(-1).tolist()
    for broken, words in (
        (framed([tensor], rows.tobytes()[:-4]), "short"),
        (framed([tensor], rows.tobytes() + b"xx"), "belong to no input"),
        ((body, str(len(body) + 1)), HEADER_LENGTH),
        ((body, "\u00b2"), HEADER_LENGTH),
        (framed([{**tensor, "data": [1]}], rows.tobytes()), "both"),
        (framed([{k: v for k, v in tensor.items() if k != "parameters"}], b""), "no data"),
    ):
        with pytest.raises(ProtocolError, match=words) as refused:
            decode_request(*broken)
        assert refused.value.status == 400
    classify = orjson.dumps(
        {
            "inputs": [{**tensor, "parameters": {}, "data": [0] * 2 * N}],
            "outputs": [{"name": "p", "parameters": {"class_count": 2}}],
        }
    )
    with pytest.raises(ProtocolError, match="classification"):
        decode_request(classify, None)


def test_outputs_are_binary_as_triton_decides() -> None:
    out = OutputTensor("p", "FP32", np.array([[0.25, 0.75]], dtype=np.float32))
    answer = InferAnswer("fraud", "1", [out], "id-1", {"model_role": "champion"})

    def request(**body: Any) -> Any:
        base = {"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [0]}]}
        return decode_request(orjson.dumps(base | body), None)[0]

    content, headers = encode_answer(answer, request())
    assert HEADER_LENGTH not in headers and orjson.loads(content)["outputs"][0]["data"] == [
        0.25,
        0.75,
    ]
    for body, binary in (
        ({"parameters": {"binary_data_output": True}}, True),
        ({"outputs": [{"name": "p", "parameters": {"binary_data": True}}]}, True),
        (
            {
                "parameters": {"binary_data_output": True},
                "outputs": [{"name": "p", "parameters": {"binary_data": False}}],
            },
            False,
        ),
    ):
        content, headers = encode_answer(answer, request(**body))
        assert (HEADER_LENGTH in headers) is binary
        if binary:
            split = int(headers[HEADER_LENGTH])
            meta = orjson.loads(content[:split])
            assert meta["outputs"][0]["parameters"]["binary_data_size"] == 8
            assert np.frombuffer(content[split:], "<f4").tolist() == [0.25, 0.75]
    with pytest.raises(ProtocolError, match="true or false"):
        request(parameters={"binary_data_output": "yes"})


def test_compressed_bodies_inflate_within_the_limit() -> None:
    body = b'{"inputs": []}' * 10
    assert inflate(gzip.compress(body), "gzip", 1000) == body
    assert inflate(zlib.compress(body), "deflate", 1000) == body
    with pytest.raises(ProtocolError) as bomb:
        inflate(gzip.compress(b"\0" * 100_000), "gzip", 1000)
    assert bomb.value.status == 413
    with pytest.raises(ProtocolError, match="not supported"):
        inflate(body, "br", 1000)


def test_statistics_have_tritons_shape() -> None:
    stats = InferenceStatistics()
    stats.executed("fraud", 1, Execution(5, (10, 20), input_ns=3, infer_ns=7, output_ns=1))
    stats.answered("fraud", 1, True, 100)
    stats.answered("fraud", 1, False, 5)
    (entry, unused) = stats.report("fraud", [1, 2])
    assert (entry["inference_count"], entry["execution_count"]) == (5, 1)
    phases = entry["inference_stats"]
    assert phases["success"] == {"count": 1, "ns": 100} and phases["fail"] == {"count": 1, "ns": 5}
    assert phases["queue"] == {"count": 2, "ns": 30}
    assert phases["compute_infer"] == {"count": 2, "ns": 14}  # each request is charged the call
    assert entry["batch_stats"] == [
        {
            "batch_size": 5,
            "compute_input": {"count": 1, "ns": 3},
            "compute_infer": {"count": 1, "ns": 7},
            "compute_output": {"count": 1, "ns": 1},
        }
    ]
    assert unused["execution_count"] == 0 and unused["version"] == "2"


def test_explanations_perturb_one_feature_per_row() -> None:
    rows = np.arange(2 * N, dtype=np.float32).reshape(2, N) + 1
    reference = np.full(N, -1.0, dtype=np.float32)
    out = perturbed(rows, reference).reshape(2, N, N)
    for k in range(2):
        for i in range(N):
            expected = rows[k].copy()
            expected[i] = -1.0
            assert out[k, i].tolist() == expected.tolist()
    assert reference_of(SimpleNamespace())[1] == "zero"
    means, kind = reference_of(SimpleNamespace(feature_means=[2.0] * N))
    assert kind == "training_mean" and means.tolist() == [2.0] * N


def test_a_customer_is_scored_once_per_round() -> None:
    def tx(i: int, customer: str) -> Transaction:
        return Transaction.model_validate(
            {
                "transaction_id": f"t{i}",
                "tx_datetime": "2026-04-01T00:00:00Z",
                "customer_id": customer,
                "terminal_id": "1",
                "tx_amount": 1.0,
            }
        )

    txs = [tx(0, "a"), tx(1, "b"), tx(2, "a"), tx(3, "a"), tx(4, "c")]
    assert rounds_of(txs) == [[0, 1, 4], [2], [3]]


class Probabilities:
    """A session answering [1 - x0, x0] for each row; describes its output as ONNX does."""

    def run(self, _outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        rows = next(iter(feeds.values()))
        return [np.column_stack([1 - rows[:, 0], rows[:, 0]]).astype(np.float32)]

    def get_outputs(self) -> list[Any]:
        return [SimpleNamespace(name="probabilities", shape=[None, 2])]


class FailingBatcher:
    last_batch_size = 0

    def __init__(self, exc: Exception | None) -> None:
        self.exc = exc
        self.timeouts: list[float] = []
        self.scorer: TensorScorer | None = None

    async def submit(self, item: TensorRequest, timeout_s: float) -> Any:
        self.timeouts.append(timeout_s)
        if self.exc is not None:
            raise self.exc
        assert self.scorer is not None
        return self.scorer([item])[0]


def protocol(exc: Exception | None) -> tuple[OpenInference, FailingBatcher]:
    sidecar = Sidecar(load_settings(), None)
    model = LoadedModel("fraud", 1, FEATURE_NAMES, "CPU", Probabilities(), "input", "probabilities")
    serving = ServingModels(1, Served(model, "1.0.0", None))
    sidecar.models = SimpleNamespace(current=serving)
    sidecar.ready = True
    batcher = FailingBatcher(exc)
    batcher.scorer = TensorScorer(SimpleNamespace(serving=serving), None, sidecar.stats)
    sidecar.tensor_batcher = batcher
    return OpenInference(sidecar), batcher


def call_of(rows: np.ndarray, **parameters: Any) -> InferCall:
    tensor = InputTensor("input", "FP32", rows.shape, rows.reshape(-1))
    return InferCall([tensor], None, "r", parameters)


def test_overload_and_timeouts_are_protocol_statuses() -> None:
    rows = np.full((2, N), 0.25, dtype=np.float32)
    for exc, status, code in (
        (QueueFullError("full"), 503, "UNAVAILABLE"),
        (BatchTimeoutError("late"), 504, "DEADLINE_EXCEEDED"),
    ):
        oip, _ = protocol(exc)
        with pytest.raises(ProtocolError) as refused:
            asyncio.run(oip.infer("fraud", None, lambda: call_of(rows)))
        assert refused.value.status == status and GRPC_CODES[status] == code
        assert refused.value.retry_after is (status == 503)
        (entry,) = oip.statistics("fraud", None)["model_stats"]
        assert entry["inference_stats"]["fail"]["count"] == 1

    oip, batcher = protocol(None)
    answer = asyncio.run(oip.infer("fraud", None, lambda: call_of(rows, timeout=2000)))
    assert batcher.timeouts == [0.002]  # the request's 2 ms, under serve.request_timeout_ms
    assert answer.outputs[0].data.tolist() == [[0.75, 0.25]] * 2
    assert answer.parameters == {"model_semver": "1.0.0", "model_role": "champion"}
    for bad, words in (
        (call_of(rows[:, :3]), "shape"),
        (call_of(rows, timeout=-1), "timeout"),
        (call_of(rows, sequence_id=4), "stateless"),
        (InferCall([], None), "exactly one input"),
    ):
        with pytest.raises(ProtocolError, match=words):
            asyncio.run(oip.infer("fraud", None, lambda bad=bad: bad))
    with pytest.raises(ProtocolError) as unknown:
        asyncio.run(oip.infer("fraud", "2", lambda: call_of(rows)))
    assert unknown.value.status == 404
