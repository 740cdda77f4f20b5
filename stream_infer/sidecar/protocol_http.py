"""The Open Inference Protocol over HTTP (KServe V2, with Triton's extensions).

Health, server and model metadata, the model-configuration and statistics extensions, and
inference with the binary tensor data extension (:mod:`stream_infer.sidecar.binary`); the
operations themselves are :mod:`stream_infer.sidecar.inference`'s, shared with gRPC. Every
refusal on a ``/v2`` route is the protocol's ``{"error": "..."}`` (what tritonclient reads):
400 bad input, 404 unknown model or version (or route), 503 not ready or overloaded, with
``Retry-After``, 504 not scored in time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter

from stream_infer.sidecar.binary import HEADER_LENGTH, decode_request, encode_answer, inflate
from stream_infer.sidecar.health import PROBE_INTERVAL_S
from stream_infer.sidecar.hot import Answer
from stream_infer.sidecar.inference import OpenInference
from stream_infer.sidecar.protocol import InferCall, ProtocolError
from stream_infer.sidecar.schemas import InferRequest, ModelMetadata, ProtocolErrorBody

if TYPE_CHECKING:
    from stream_infer.sidecar.core import Sidecar

API = "v2"
RETRY_AFTER_S = str(max(1, round(PROBE_INTERVAL_S)))
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ProtocolErrorBody, "description": what}
    for code, what in (
        (400, "bad input"),
        (404, "unknown model or version"),
        (503, "not ready, or overloaded (Retry-After)"),
        (504, "not scored in time"),
    )
}


def error_response(
    status: int, message: str, retry_after: bool = False, **extra: Any
) -> JSONResponse:
    """The protocol's error body (``extra`` keys added, e.g. ``detail``)."""
    headers = {"Retry-After": RETRY_AFTER_S} if retry_after or status == 503 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` inlined (an ``openapi_extra`` body cannot
    point into the document's components)."""
    return inline_schema_of(TypeAdapter(model))


def inline_schema_of(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """:func:`inline_schema` of any type pydantic validates (e.g. a discriminated union)."""
    schema = adapter.json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                return resolve(defs[ref.rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_schema(InferRequest)},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": f"the JSON request, then binary tensor data ({HEADER_LENGTH})",
            },
        },
    }
}


def add_protocol_routes(
    app: FastAPI, sidecar: Sidecar
) -> tuple[OpenInference, Callable[[str, str | None, bytes, Mapping[str, str]], Awaitable[Answer]]]:
    """Register the ``/v2`` routes (the repository's are :mod:`.repository_api`'s); returns
    the operations and the infer route's handler (for :class:`~.hot.HotPaths`)."""
    oip = OpenInference(sidecar)
    max_bytes = sidecar.settings.serve.max_body_bytes

    def refused(exc: ProtocolError) -> JSONResponse:
        sidecar.metrics.requests.labels(API, str(exc.status)).inc()
        return error_response(exc.status, str(exc), exc.retry_after)

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", responses={503: ERRORS[503]})
    async def ready() -> Response:
        why = sidecar.not_ready_reason()
        if not why:
            return JSONResponse({"ready": True})
        return error_response(503, why, ready=False)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        """The protocol's fields, plus ``ready`` and, when not, why (``reason``)."""
        return oip.server_metadata()

    @app.get("/v2/models/stats", responses=ERRORS)
    async def all_statistics() -> Response:
        """Triton's statistics extension for every model served."""
        try:
            return JSONResponse(oip.statistics("", None))
        except ProtocolError as exc:  # the set changed under the call: say so, never a 500
            return refused(exc)

    def both(
        method: str,
        suffix: str,
        handler: Callable[[str, str | None, Request], Awaitable[Any]],
        **route: Any,
    ) -> None:
        """Register ``handler`` for ``/v2/models/{name}<suffix>`` and the same under
        ``/versions/{version}`` (the version is a path segment only, never a query)."""

        async def latest(name: str, request: Request) -> Any:
            return await handler(name, None, request)

        async def versioned(name: str, version: str, request: Request) -> Any:
            return await handler(name, version, request)

        for path, endpoint in (("", latest), ("/versions/{version}", versioned)):
            endpoint.__doc__ = handler.__doc__
            app.add_api_route(
                f"/v2/models/{{name}}{path}{suffix}",
                endpoint,
                methods=[method],
                name=f"{handler.__name__}{'_version' if path else ''}",
                responses=ERRORS,
                **route,
            )

    async def model_ready(name: str, version: str | None, _request: Request) -> Response:
        """Whether the model (version) can be inferred now."""
        try:
            oip.resolve(name, version)
        except ProtocolError as exc:
            return refused(exc)
        return JSONResponse({"name": name, "ready": True})

    async def model_metadata(name: str, version: str | None, _request: Request) -> Any:
        """The protocol's model metadata."""
        try:
            return oip.model_metadata(name, version)
        except ProtocolError as exc:
            return refused(exc)

    async def model_config(name: str, version: str | None, _request: Request) -> Response:
        """Triton's model-configuration extension."""
        try:
            return JSONResponse(oip.model_config(name, version))
        except ProtocolError as exc:
            return refused(exc)

    async def model_statistics(name: str, version: str | None, _request: Request) -> Response:
        """Triton's statistics extension (:mod:`stream_infer.sidecar.stats`)."""
        try:
            return JSONResponse(oip.statistics(name, version))
        except ProtocolError as exc:
            return refused(exc)

    ok = sidecar.metrics.requests.labels(API, "200")
    latency = sidecar.metrics.latency.labels(API)

    async def infer_bytes(
        name: str, version: str | None, raw: bytes, headers: Mapping[str, str]
    ) -> Answer:
        """The infer route's handler (also :class:`~stream_infer.sidecar.hot.HotPaths`'):
        ``headers`` by lower-case name."""
        start = time.monotonic()
        parsed: list[InferRequest] = []

        def decode() -> InferCall:
            body = inflate(raw, headers.get("content-encoding"), max_bytes)
            req, call = decode_request(body, headers.get(HEADER_LENGTH.lower()))
            parsed.append(req)
            return call

        try:
            answer = await oip.infer(name, version, decode)
        except ProtocolError as exc:
            sidecar.metrics.requests.labels(API, str(exc.status)).inc()
            retry = {"Retry-After": RETRY_AFTER_S} if exc.retry_after or exc.status == 503 else {}
            return Answer.json(exc.status, {"error": str(exc)}, retry)
        content, out_headers = encode_answer(answer, parsed[0])
        ok.inc()
        latency.observe(time.monotonic() - start)
        media_type = out_headers.pop("Content-Type")
        return Answer(200, content, out_headers, media_type)

    async def infer(name: str, version: str | None, request: Request) -> Response:
        """JSON, or JSON and binary tensor data; see :mod:`stream_infer.sidecar.binary`."""
        answer = await infer_bytes(name, version, await request.body(), request.headers)
        return answer.response()

    both("GET", "/ready", model_ready)
    both("GET", "/config", model_config)
    both("GET", "/stats", model_statistics)
    both("POST", "/infer", infer, openapi_extra=INFER_BODY)
    both("GET", "", model_metadata, response_model=ModelMetadata)

    return oip, infer_bytes
