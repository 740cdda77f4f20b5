"""The sidecar's HTTP routes: translate requests to the batcher and results back.

Every answer names the version that scored it: ``/v1`` predict's ``model_version``,
``model_semver`` and ``model_role`` (as the stream's score records do); ``/v2`` infer's
``model_version`` and ``parameters`` (``model_semver``, ``model_role``). ``/v2`` infer and
metadata with a version in the path address that member of the serving set.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Response

from stream_infer.batching.dynamic import BatchTimeoutError, QueueFullError
from stream_infer.errors import RetryableError
from stream_infer.features.definitions import N_FEATURES
from stream_infer.sidecar.health import PROBE_INTERVAL_S
from stream_infer.sidecar.models import Route, route_of
from stream_infer.sidecar.schemas import (
    InferRequest,
    ModelMetadata,
    PredictRequest,
    PredictResponse,
    TensorMetadata,
)
from stream_infer.sidecar.scoring import TensorRequest

if TYPE_CHECKING:
    from stream_infer.sidecar.app import Sidecar


def add_routes(app: FastAPI, sidecar: Sidecar) -> None:
    """Register the health, domain and Open Inference Protocol routes."""
    from stream_infer.sidecar.app import OrjsonResponse

    retry_after_s = str(max(1, round(PROBE_INTERVAL_S)))

    def error(
        status: int, message: str, api: str, retry_after: bool = False, detail: str | None = None
    ) -> Response:
        sidecar.metrics.requests.labels(api, str(status)).inc()
        headers = {"Retry-After": retry_after_s} if retry_after else None
        body = {"error": message} if detail is None else {"error": message, "detail": detail}
        return OrjsonResponse(body, status_code=status, headers=headers)

    def store_unavailable(api: str, exc: BaseException | None = None) -> Response:
        # Never a 500: the caller's request is fine, the store will be back (Retry-After).
        reason = sidecar.store.reason or (str(exc) if exc is not None else "")
        return error(503, "feature store unavailable", api, retry_after=True, detail=reason)

    def unknown(name: str, version: str | None, api: str) -> Response | None:
        if not sidecar.ready:
            return error(503, "model is loading", api, retry_after=True)
        if not sidecar.knows(name, version):
            which = name if version is None else f"{name} version {version}"
            return error(404, f"unknown model {which}", api)
        return None

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        if sidecar.serving:
            return OrjsonResponse({"ready": True})
        if sidecar.ready:
            why = "feature store unavailable"
        elif sidecar.load_error:
            why = f"champion not loaded: {sidecar.load_error}"
        else:
            why = "model is loading"
        headers = {"Retry-After": retry_after_s}
        return OrjsonResponse({"ready": False, "error": why}, status_code=503, headers=headers)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "stream-infer", "version": "1", "extensions": []}

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        problem = unknown(name, version, "v2")
        return problem or OrjsonResponse({"name": name, "ready": True})

    @app.get("/v2/models/{name}", response_model=ModelMetadata)
    @app.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata)
    async def model_metadata(name: str, version: str | None = None) -> Any:
        problem = unknown(name, version, "v2")
        if problem is not None:
            return problem
        assert sidecar.models is not None
        serving = sidecar.models.current
        m = serving.champion.model
        if version is not None:
            role = serving.role_of(int(version))
            m = dict(serving.members())[role].model if role is not None else m
        return {
            "name": m.name,
            "versions": [str(s.version) for _role, s in serving.members()],
            "platform": "onnxruntime_onnx",
            "inputs": [TensorMetadata(name=m.input_name, datatype="FP32", shape=[-1, N_FEATURES])],
            "outputs": [TensorMetadata(name=m.output_name, datatype="FP32", shape=[-1, 2])],
        }

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, body: InferRequest, version: str | None = None) -> Response:
        start = time.monotonic()
        problem = unknown(name, version, "v2")
        if problem is not None:
            return problem
        assert sidecar.models is not None
        serving = sidecar.models.current
        m = serving.champion.model
        if version is not None:
            role = serving.role_of(int(version))
            m = dict(serving.members())[role].model if role is not None else m
        tensor = body.inputs[0]
        if tensor.name != m.input_name:
            return error(400, f"unknown input {tensor.name!r}; expected {m.input_name!r}", "v2")
        shape = tensor.shape if len(tensor.shape) == 2 else [1, *tensor.shape]
        if shape[1] != N_FEATURES or shape[0] < 1:
            return error(400, f"input shape must be [n, {N_FEATURES}], got {tensor.shape}", "v2")
        if body.outputs and any(o.name != m.output_name for o in body.outputs):
            return error(400, f"the only output is {m.output_name!r}", "v2")
        try:
            rows = np.asarray(tensor.data, dtype=np.float32).reshape(shape)
        except (ValueError, TypeError) as exc:
            return error(400, f"data does not fit shape {tensor.shape}: {exc}", "v2")
        if not np.isfinite(rows).all():
            return error(400, "data must be finite numbers", "v2")
        assert sidecar.tensor_batcher is not None
        try:
            result = await sidecar.tensor_batcher.submit(
                TensorRequest(rows, None if version is None else int(version)),
                sidecar.settings.serve.request_timeout_ms / 1000,
            )
        except QueueFullError as exc:
            return error(503, str(exc), "v2", retry_after=True)
        except BatchTimeoutError as exc:
            return error(504, str(exc), "v2")
        if result.output is None or result.served is None:
            return error(404, f"model {name} version {version} is no longer served", "v2")
        out, served = result.output, result.served
        sidecar.metrics.requests.labels("v2", "200").inc()
        sidecar.metrics.latency.labels("v2").observe(time.monotonic() - start)
        sidecar.metrics.batch_size.labels("v2").observe(sidecar.tensor_batcher.last_batch_size)
        sidecar.metrics.served.labels("v2", str(served.version), result.role).inc()
        return OrjsonResponse(
            {
                "model_name": m.name,
                "model_version": str(served.version),
                "id": body.id,
                "parameters": {"model_semver": served.semver, "model_role": result.role},
                "outputs": [
                    {
                        "name": m.output_name,
                        "datatype": "FP32",
                        "shape": list(out.shape),
                        "data": out.reshape(-1).tolist(),
                    }
                ],
            }
        )

    @app.post("/v1/models/{name}/predict", response_model=PredictResponse)
    async def predict(name: str, body: PredictRequest) -> Response:
        start = time.monotonic()
        problem = unknown(name, None, "v1")
        if problem is not None:
            return problem
        if sidecar.store.down:  # before the cache: it may live on the same unanswering Redis
            return store_unavailable("v1")
        assert sidecar.models is not None
        serving = sidecar.models.current
        m = serving.champion.model
        cache = sidecar.cache
        scored = None
        key = None
        cached_version = 0
        if cache is not None:  # keyed by the version that would serve this customer now
            member, role = route_of(serving, body.inputs.customer_id)
            cached_version = member.version
            key = cache.key(m.name, member.version, body.inputs)
            scored = cache.get(key, Route(member.version, member.semver, role))
        if scored is None:
            assert sidecar.tx_batcher is not None
            try:
                scored = await sidecar.tx_batcher.submit(
                    body.inputs, sidecar.settings.serve.request_timeout_ms / 1000
                )
            except QueueFullError as exc:
                return error(503, str(exc), "v1", retry_after=True)
            except BatchTimeoutError as exc:
                return error(504, str(exc), "v1")
            except RetryableError as exc:  # the feature store failed, now or before
                return store_unavailable("v1", exc)
            sidecar.metrics.batch_size.labels("v1").observe(sidecar.tx_batcher.last_batch_size)
            if cache is not None and key is not None and scored.route.version == cached_version:
                cache.put(key, scored)
        threshold = body.parameters.threshold
        if threshold is None:
            threshold = sidecar.settings.model.threshold
        elapsed = time.monotonic() - start
        sidecar.metrics.requests.labels("v1", "200").inc()
        sidecar.metrics.latency.labels("v1").observe(elapsed)
        route = scored.route
        sidecar.metrics.served.labels("v1", str(route.version), route.role).inc()
        payload: dict[str, Any] = {
            "request_id": body.request_id,
            "model_name": m.name,
            "model_version": route.version,
            "model_semver": route.semver,
            "model_role": route.role,
            "predictions": {
                "fraud_probability": scored.score,
                "is_fraud": scored.score >= threshold,
            },
            "metadata": {
                "latency_ms": elapsed * 1000,
                "timestamp": datetime.now(UTC).isoformat(),
                "flags": list(scored.flags),
            },
        }
        if body.parameters.return_features:
            payload["features"] = scored.features
        return OrjsonResponse(payload)
