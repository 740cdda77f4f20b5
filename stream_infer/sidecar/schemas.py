"""Request and response shapes of the sidecar (OpenAPI comes from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stream_infer.events import Transaction


class PredictParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(default=None, ge=0, le=1)
    return_features: bool = False


class PredictRequest(BaseModel):
    """``POST /v1/models/{name}/predict``: one transaction."""

    model_config = ConfigDict(extra="forbid")

    request_id: str | None = Field(default=None, max_length=128)
    inputs: Transaction
    parameters: PredictParameters = PredictParameters()


class Predictions(BaseModel):
    fraud_probability: float
    is_fraud: bool


class PredictMetadata(BaseModel):
    latency_ms: float
    timestamp: str
    flags: list[str] = Field(default_factory=list)


class PredictResponse(BaseModel):
    request_id: str | None
    model_name: str
    model_version: int
    model_semver: str
    model_role: Literal["champion", "challenger", "shadow"]
    predictions: Predictions
    metadata: PredictMetadata
    features: dict[str, float] | None = None


class TensorInput(BaseModel):
    """An Open Inference Protocol input tensor (JSON data, row-major)."""

    name: str
    shape: list[int] = Field(min_length=1, max_length=2)
    datatype: Literal["FP32", "FP64"]
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """``POST /v2/models/{name}[/versions/{v}]/infer``."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[TensorInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str = "onnxruntime_onnx"
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
