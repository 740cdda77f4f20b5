"""Request and response shapes of the sidecar (OpenAPI comes from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from stream_infer.events import Transaction

#: Transactions one ``/v1`` batch request may carry (each is one entry of the batcher's queue).
MAX_TRANSACTIONS = 512


class PredictParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description=(
            "is_fraud cut-off for this request, on the serving version's side (score >= "
            "threshold for a high-is-positive model, <= for low); any finite float, since a "
            "decision score is not a probability (default: the version's manifest threshold, "
            "else model.threshold)"
        ),
    )
    return_features: bool = Field(default=False, description="also answer the 15 feature values")
    return_explanations: bool = Field(
        default=False,
        description=(
            "Also answer per-feature attributions for this prediction: for each feature, the "
            "score with that feature alone replaced by its reference value (score_without) and "
            "attribution = fraud_probability - score_without, i.e. how much this feature's "
            "value, against the reference, moved this score (positive: towards fraud). The "
            "reference is the training-set mean when the version's manifest records one "
            '(reference: "training_mean"), else 0 (reference: "zero"). One at a time, so the '
            "attributions need not add up to the score, and interactions between features are "
            "not shown. Cost: one extra model call of 15 rows per transaction, made for all "
            "the request's transactions at once through the tensor batcher (about one more "
            "model call of latency); the features are not computed again."
        ),
    )


class PredictRequest(BaseModel):
    """``POST /v1/models/{name}/predict``: one transaction."""

    model_config = ConfigDict(extra="forbid")

    request_id: str | None = Field(default=None, max_length=128)
    inputs: Transaction
    parameters: PredictParameters = PredictParameters()


class BatchPredictRequest(BaseModel):
    """``POST /v1/models/{name}/predict``: several transactions, answered in order."""

    model_config = ConfigDict(extra="forbid")

    request_id: str | None = Field(default=None, max_length=128)
    transactions: list[Transaction] = Field(min_length=1, max_length=MAX_TRANSACTIONS)
    parameters: PredictParameters = PredictParameters()


def _shape_of(body: Any) -> str:
    """Which request a ``/v1`` body is: a batch names ``transactions``."""
    return "batch" if isinstance(body, dict) and "transactions" in body else "single"


#: ``POST /v1/models/{name}/predict``'s body: one transaction, or a batch.
PredictBody = Annotated[
    Annotated[PredictRequest, Tag("single")] | Annotated[BatchPredictRequest, Tag("batch")],
    Discriminator(_shape_of),
]


class Predictions(BaseModel):
    fraud_probability: float
    is_fraud: bool


class PredictMetadata(BaseModel):
    latency_ms: float
    timestamp: str
    flags: list[str] = Field(default_factory=list)


class Attribution(BaseModel):
    value: float = Field(description="the feature's value in this prediction")
    reference: float = Field(description="the value it was replaced by")
    score_without: float = Field(description="the score with the reference in its place")
    attribution: float = Field(description="fraud_probability - score_without")


class Explanations(BaseModel):
    method: Literal["replace_with_reference"] = "replace_with_reference"
    reference: Literal["training_mean", "zero"]
    features: dict[str, Attribution]


class PredictResponse(BaseModel):
    request_id: str | None
    model_name: str
    model_version: int
    model_semver: str
    model_role: Literal["champion", "challenger", "shadow"]
    predictions: Predictions
    metadata: PredictMetadata
    features: dict[str, float] | None = None
    explanations: Explanations | None = None


class BatchPredictResponse(BaseModel):
    """One answer per transaction, in the request's order."""

    request_id: str | None
    results: list[PredictResponse]


def _answer_of(body: Any) -> str:
    if isinstance(body, BatchPredictResponse) or (isinstance(body, dict) and "results" in body):
        return "batch"
    return "single"


#: The predict route's answer: validated against one model, picked up front (a plain union
#: would try both, which costs three times as much per answer).
PredictAnswer = Annotated[
    Annotated[PredictResponse, Tag("single")] | Annotated[BatchPredictResponse, Tag("batch")],
    Discriminator(_answer_of),
]


class TensorInput(BaseModel):
    """An Open Inference Protocol input tensor: JSON ``data`` (flat or nested, row-major), or
    ``parameters.binary_data_size`` bytes of the binary tensor data extension."""

    name: str
    shape: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=8)
    datatype: str = Field(description="FP32; FP64, FP16, BF16, INT*, UINT* are converted")
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(
        default=None, description="binary_data: answer this output in binary"
    )


class InferRequest(BaseModel):
    """``POST /v2/models/{name}[/versions/{v}]/infer`` (the JSON part, when binary)."""

    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="binary_data_output: outputs in binary; timeout: microseconds",
    )
    inputs: list[TensorInput] = Field(min_length=1)
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


class ProtocolErrorBody(BaseModel):
    """What every ``/v2`` route answers when it refuses a request."""

    error: str
