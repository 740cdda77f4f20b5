"""The sidecar process: the ASGI app (domain endpoint, Open Inference Protocol, repository,
health, metrics) and, on ``serve.grpc_port``, the same protocol over gRPC, on one event loop.

Adapters only: requests are validated by the routes (:mod:`stream_infer.sidecar.routes`,
:mod:`stream_infer.sidecar.protocol_http`, :mod:`stream_infer.sidecar.repository_api`) and the
gRPC servicer (:mod:`stream_infer.sidecar.grpc_server`), and handed to the shared batchers and
pipeline (:mod:`stream_infer.sidecar.core`). The serving set follows the registry as the
worker's does (:mod:`stream_infer.sidecar.models`). Ready only once the champion is loaded and
warmed up, and while the feature store answers (:mod:`stream_infer.sidecar.health`).

A champion that fails to load at start-up (missing, tampered, refused by the probe: a
:class:`~stream_infer.errors.StreamInferError`) leaves the sidecar live but not ready, retrying
every ``model.poll_interval_s`` (a promotion or rollback in the registry fixes it without a
restart); the reason is logged once and answered by ``/v2/health/ready``, ``GET /v2``
(``ready``, ``reason``) and every model route's 503. Any other start-up failure cannot be
waited out (Redis refusing our credentials, say): it is logged (with its traceback unless it
is a :class:`~stream_infer.errors.FatalError` of ours) and ``stream-infer serve`` exits
non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from stream_infer.config import Settings
from stream_infer.errors import FatalError, RetryableError, StreamInferError
from stream_infer.model.registry import open_registry
from stream_infer.pipeline import ScoringPipeline
from stream_infer.sidecar.core import Sidecar
from stream_infer.sidecar.health import PROBE_CUSTOMER
from stream_infer.sidecar.hot import HotPaths
from stream_infer.sidecar.limits import BodyLimitMiddleware
from stream_infer.sidecar.metrics import SidecarMetrics
from stream_infer.sidecar.models import SidecarModels, build_models
from stream_infer.sidecar.protocol_http import error_response
from stream_infer.state.redis_client import RedisAccessError

log = logging.getLogger(__name__)


def _load_pipeline(
    settings: Settings, metrics: SidecarMetrics
) -> tuple[ScoringPipeline, SidecarModels]:
    """The read-only pipeline and the serving set it scores with (champion verified, warm).

    Raises:
        StreamInferError: the champion cannot be loaded (see :func:`build_models`).
    """
    from stream_infer.runtime import build_features

    models = build_models(settings, metrics)
    try:
        features = build_features(settings, read_only=True)
    except BaseException:
        models.stop()  # a retry builds another; this one's poll thread must not linger
        raise
    pipeline = ScoringPipeline(
        models.current, features, threshold=settings.model.threshold, emit_features=True
    )
    return pipeline, models


def _pinned_models(
    settings: Settings, pipeline: ScoringPipeline, metrics: SidecarMetrics
) -> SidecarModels:
    """A given pipeline's serving set, never changed (tests, embedded use)."""
    return SidecarModels(
        settings.model.name, open_registry(settings.model), metrics, pinned=pipeline.serving
    )


def _store_probe(settings: Settings) -> Callable[[], object]:
    """One cheap read of the configured customer store (raises RetryableError if down)."""
    from stream_infer.state.factory import open_state

    entities = open_state(settings, "read").entities
    return lambda: entities.load([PROBE_CUSTOMER])


class SidecarApp(FastAPI):
    """The FastAPI app, with the hot scoring routes answered before FastAPI's middleware and
    routing see them (:mod:`stream_infer.sidecar.hot`)."""

    hot: HotPaths | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot is not None and await self.hot.handle(scope, receive, send):
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings, pipeline: ScoringPipeline | None = None, *, grpc_reuse_port: bool = False
) -> SidecarApp:
    """The sidecar app. Without ``pipeline`` the champion is loaded (and warmed up) at
    start-up, in the background: liveness answers at once, readiness once the champion is
    ready (see the module docstring for a champion that cannot be loaded). With ``pipeline``,
    its serving set is served as given (no registry following). With ``serve.grpc_port``, the
    gRPC endpoint starts with the app (a port that cannot be bound fails the start-up)."""
    sidecar = Sidecar(settings, None)

    async def load_models() -> tuple[ScoringPipeline, SidecarModels]:
        if pipeline is not None:
            return pipeline, _pinned_models(settings, pipeline, sidecar.metrics)
        while True:
            try:
                return await asyncio.to_thread(_load_pipeline, settings, sidecar.metrics)
            except RedisAccessError:
                raise  # refused credentials or certificate: no registry change fixes that
            except StreamInferError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if reason != sidecar.load_error:  # log a failure once, not every retry
                    log.error("champion not loaded (not ready; retrying): %s", reason)
                sidecar.load_error = reason
            await asyncio.sleep(settings.model.poll_interval_s)

    async def load() -> None:
        try:
            ready, models = await load_models()
            probe = await asyncio.to_thread(_store_probe, settings)
            try:  # a store already down at start-up: not ready until the probe finds it
                await asyncio.to_thread(probe)
            except RetryableError as exc:
                sidecar.store.failed(exc)
            sidecar.start(ready, models, probe)
        except Exception as exc:  # not something the registry can fix: stop the process
            if isinstance(exc, FatalError):  # ours, and its message names the cause
                log.error("the sidecar cannot start; it stays not ready (serve exits): %s", exc)
            else:
                log.exception("the sidecar cannot start; it stays not ready (serve exits)")
            sidecar.failed_for_good(f"{type(exc).__name__}: {exc}")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from stream_infer.sidecar.grpc_server import start_grpc

        grpc_server = None
        if settings.serve.grpc_port:
            grpc_server = await start_grpc(sidecar, oip, repository, reuse_port=grpc_reuse_port)
        loader = asyncio.create_task(load())
        try:
            yield
        finally:
            loader.cancel()
            if grpc_server is not None:
                await grpc_server.stop(grace=1.0)
            await sidecar.stop()

    app = SidecarApp(title="stream-infer sidecar", version="1", lifespan=lifespan)
    app.state.sidecar = sidecar
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.serve.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        api = request.url.path.split("/")[1]
        if api == "v2":  # the protocol's error body
            sidecar.metrics.requests.labels(api, "400").inc()
            return error_response(400, f"invalid request: {'; '.join(problems)}")
        sidecar.metrics.requests.labels(api, "422").inc()
        return JSONResponse({"error": "invalid request", "detail": problems}, status_code=422)

    @app.exception_handler(HTTPException)
    async def not_routed(request: Request, exc: HTTPException) -> Response:
        # No route, or a method it does not take: {"error"} too (tritonclient reads it).
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(
            {"error": f"{message}: {request.method} {request.url.path}"},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    from stream_infer.sidecar.protocol_http import add_protocol_routes
    from stream_infer.sidecar.repository_api import add_repository_routes
    from stream_infer.sidecar.routes import add_routes

    predict = add_routes(app, sidecar)
    oip, infer = add_protocol_routes(app, sidecar)
    repository = add_repository_routes(app, sidecar)
    # Before anything else: the scoring routes skip FastAPI's per-request machinery (.hot).
    app.hot = HotPaths({"predict": predict, "infer": infer}, settings.serve.max_body_bytes)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        for name, batcher in (("v1", sidecar.tx_batcher), ("v2", sidecar.tensor_batcher)):
            if batcher is not None:
                sidecar.metrics.queue_depth.labels(name).set(batcher.depth)
        return Response(generate_latest(sidecar.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def run(
    settings: Settings,
    sockets: list[socket.socket] | None = None,
    *,
    grpc_reuse_port: bool = False,
) -> None:
    """Serve until interrupted (uvicorn with uvloop and httptools when installed), on
    ``serve.host:serve.port`` or on the given listening ``sockets`` (``--workers``: shared
    with the other workers, as is the gRPC port with ``grpc_reuse_port``).

    Raises:
        FatalError: start-up failed in a way no registry change can fix (the CLI exits 2).
        SystemExit: uvicorn's, non-zero, when the app's start-up fails (a gRPC port that
            cannot be bound) or the HTTP port cannot be bound.
    """
    import uvicorn

    app = create_app(settings, grpc_reuse_port=grpc_reuse_port)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.serve.host,
            port=settings.serve.port,
            loop="auto",
            http="auto",
            access_log=False,
            log_level="info",
        )
    )
    sidecar: Sidecar = app.state.sidecar

    def stop(_reason: str) -> None:
        server.should_exit = True

    sidecar.on_fatal = stop
    server.run(sockets=sockets)
    if sidecar.fatal:
        raise FatalError(f"the sidecar could not start: {sidecar.fatal}")
