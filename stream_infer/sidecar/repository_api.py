"""Triton's model-repository endpoints, guarded by a bearer token.

``POST /v2/repository/index``, ``POST /v2/repository/models/{name}/load`` and ``.../unload``
(:mod:`stream_infer.sidecar.repository` says what each does). With no
``serve.repository_token`` they answer 403; without the token, or with a wrong one, 401.
Errors are the protocol's ``{"error": "..."}`` (what tritonclient reads): 400 for a refused
request (nothing changed), 503 while the sidecar's champion is loading.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from stream_infer.errors import StreamInferError
from stream_infer.model.control import announce
from stream_infer.sidecar.health import PROBE_INTERVAL_S
from stream_infer.sidecar.repository import (
    IndexRequest,
    LoadParameters,
    LoadRequest,
    Repository,
    RepositoryError,
    UnloadParameters,
    UnloadRequest,
)

if TYPE_CHECKING:
    from stream_infer.sidecar.core import Sidecar

BodyT = TypeVar("BodyT", bound=BaseModel)
API = "repository"


class BadBodyError(StreamInferError):
    """A repository request body that is not what the endpoint accepts (answered 400)."""


def parse_body(raw: bytes, model: type[BodyT]) -> BodyT:
    """The request body as ``model`` (an empty body gives the defaults).

    Raises:
        BadBodyError: not JSON, not an object, or not what ``model`` accepts (the message says).
    """
    if not raw.strip():
        return model()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadBodyError(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadBodyError("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise BadBodyError(f"invalid request: {problems}") from exc


def _documented(parameters: type[BaseModel] | None = None) -> dict[str, Any]:
    """``openapi_extra`` declaring the optional JSON body (parsed by hand: a bad body must
    answer the protocol's 400 ``{"error"}``, and only after the token is checked)."""
    if parameters is None:
        schema = IndexRequest.model_json_schema()
    else:
        schema = {
            "type": "object",
            "properties": {"parameters": parameters.model_json_schema()},
            "additionalProperties": False,
        }
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}


def token_problem(sidecar: Sidecar, authorization: str | None) -> tuple[int, str] | None:
    """Why an ``Authorization`` value does not grant the repository API (status, message),
    or None when it does (HTTP headers and gRPC metadata alike)."""
    token = sidecar.settings.serve.repository_token
    if token is None:
        return 403, "the model repository API is off (set serve.repository_token)"
    scheme, _, given = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        return 401, "missing or wrong bearer token"
    return None


def repository_of(sidecar: Sidecar) -> Repository:
    """The repository operations over ``sidecar``'s registry and serving set."""
    return Repository(
        lambda: sidecar.registry,
        lambda: sidecar.models,
        lambda name, revision: announce(sidecar.settings, name, revision),
    )


def add_repository_routes(app: FastAPI, sidecar: Sidecar) -> Repository:
    """Register the model-repository routes on ``app``; returns the operations they use."""
    repository = repository_of(sidecar)

    def answer(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        sidecar.metrics.requests.labels(API, str(status)).inc()
        return JSONResponse(content, status_code=status, headers=headers)

    def denied(request: Request) -> Response | None:
        problem = token_problem(sidecar, request.headers.get("authorization"))
        if problem is None:
            return None
        status, message = problem
        return answer(
            {"error": message}, status, {"WWW-Authenticate": "Bearer"} if status == 401 else None
        )

    def refused(exc: RepositoryError) -> Response:
        retry = {"Retry-After": str(max(1, round(PROBE_INTERVAL_S)))} if exc.status == 503 else None
        return answer({"error": str(exc)}, exc.status, retry)

    @app.post("/v2/repository/index", openapi_extra=_documented())
    async def index(request: Request) -> Response:
        """Every version of every registered model, with ``state`` and ``reason``."""
        problem = denied(request)
        if problem is not None:
            return problem
        try:
            body = parse_body(await request.body(), IndexRequest)
        except BadBodyError as exc:
            return answer({"error": str(exc)}, 400)
        try:
            entries = await asyncio.to_thread(repository.index, body.ready)
        except StreamInferError as exc:
            return answer({"error": f"cannot read the registry: {exc}"}, 503)
        return answer(entries)

    @app.post("/v2/repository/models/{name}/load", openapi_extra=_documented(LoadParameters))
    async def load(name: str, request: Request) -> Response:
        """Make a version serve in a role (loaded and checked here first)."""
        problem = denied(request)
        if problem is not None:
            return problem
        try:
            body = parse_body(await request.body(), LoadRequest)
        except BadBodyError as exc:
            return answer({"error": str(exc)}, 400)
        try:
            return answer(await asyncio.to_thread(repository.load, name, body.parameters))
        except RepositoryError as exc:
            return refused(exc)
        except StreamInferError as exc:
            return answer({"error": f"cannot load {name}: {exc}"}, 400)

    @app.post("/v2/repository/models/{name}/unload", openapi_extra=_documented(UnloadParameters))
    async def unload(name: str, request: Request) -> Response:
        """Clear the challenger or the shadow; the champion is never unloaded."""
        problem = denied(request)
        if problem is not None:
            return problem
        try:
            body = parse_body(await request.body(), UnloadRequest)
        except BadBodyError as exc:
            return answer({"error": str(exc)}, 400)
        try:
            return answer(await asyncio.to_thread(repository.unload, name, body.parameters))
        except RepositoryError as exc:
            return refused(exc)
        except StreamInferError as exc:
            return answer({"error": f"cannot unload {name}: {exc}"}, 400)

    return repository
