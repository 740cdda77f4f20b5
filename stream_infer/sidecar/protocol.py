"""The Open Inference Protocol's shapes, independent of the transport (HTTP or gRPC).

Each transport decodes its request into an :class:`InferCall` (the input tensors as flat numpy
arrays, the outputs asked for, the request's parameters) and encodes the :class:`InferAnswer`
it gets back; :mod:`stream_infer.sidecar.inference` does the rest. A refusal is a
:class:`ProtocolError`: its ``status`` is the HTTP status, which the gRPC server maps to a
status code (:data:`GRPC_CODES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_infer.errors import StreamInferError

#: The protocol extensions this server implements (Triton's names, ``GET /v2``).
EXTENSIONS = (
    "binary_tensor_data",
    "parameters",
    "model_configuration",
    "statistics",
    "model_repository",
)
PLATFORM = "onnxruntime_onnx"
#: HTTP status -> the gRPC status code's name (``grpc.StatusCode``).
GRPC_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class ProtocolError(StreamInferError):
    """A protocol request that was refused. ``status``: 400 bad input, 404 unknown model or
    version, 413 too large, 503 not ready or overloaded (``retry_after``), 504 timed out."""

    def __init__(self, message: str, status: int = 400, retry_after: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class InputTensor:
    """A decoded input: its protocol datatype and shape, and its elements, flat."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class InferCall:
    """An inference request as the protocol states it. ``outputs`` None: every output."""

    inputs: list[InputTensor]
    outputs: list[str] | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutputTensor:
    name: str
    datatype: str
    data: npt.NDArray[np.float32]

    @property
    def shape(self) -> list[int]:
        return list(self.data.shape)

    def raw(self) -> bytes:
        """The elements as the binary extension sends them (little-endian, row-major)."""
        return np.ascontiguousarray(self.data, dtype="<f4").tobytes()


@dataclass(frozen=True, slots=True)
class InferAnswer:
    model_name: str
    model_version: str
    outputs: list[OutputTensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
