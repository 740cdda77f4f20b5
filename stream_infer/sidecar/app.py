"""The sidecar ASGI app: domain endpoint, Open Inference Protocol (KServe V2), health, metrics.

Adapters only: requests are validated here and handed to the shared batcher and pipeline
(:mod:`stream_infer.sidecar.scoring`). The serving set follows the registry as the worker's does
(:mod:`stream_infer.sidecar.models`); Triton's model-repository API drives the same lifecycle
(:mod:`stream_infer.sidecar.repository_api`). Ready only once the champion is loaded and warmed
up, and while the feature store answers (:mod:`stream_infer.sidecar.health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_infer.batching.dynamic import DynamicBatcher
from stream_infer.config import Settings
from stream_infer.errors import RetryableError, StreamInferError
from stream_infer.model.interface import Registry
from stream_infer.model.registry import open_registry
from stream_infer.model.session import LoadedModel
from stream_infer.pipeline import ScoringPipeline
from stream_infer.sidecar.health import PROBE_CUSTOMER, StoreHealth, probe_while_down
from stream_infer.sidecar.limits import BodyLimitMiddleware, DefaultJsonContentType
from stream_infer.sidecar.metrics import SidecarMetrics
from stream_infer.sidecar.models import SidecarModels, build_models
from stream_infer.sidecar.scoring import PredictionCache, TensorScorer, TransactionScorer

log = logging.getLogger(__name__)


class OrjsonResponse(Response):
    """JSON via orjson: no response model is built per request."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class Sidecar:
    """Everything a request needs, built once at start-up."""

    def __init__(self, settings: Settings, pipeline: ScoringPipeline | None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.models: SidecarModels | None = None
        self.ready = False
        #: Why the champion is not loaded yet ("" while loading normally or once ready).
        self.load_error = ""
        self.metrics = SidecarMetrics()
        self.tx_batcher: DynamicBatcher[Any, Any] | None = None
        self.tensor_batcher: DynamicBatcher[Any, Any] | None = None
        self.cache: PredictionCache | None = None
        self.store = StoreHealth()
        self._prober: asyncio.Task[None] | None = None
        self._registry: Registry | None = None

    @property
    def model(self) -> LoadedModel:
        """The champion of the current serving set."""
        assert self.models is not None
        return self.models.current.champion.model

    @property
    def registry(self) -> Registry:
        """The registry the serving set follows (opened before the model loads, so the
        repository index answers while the sidecar is not ready)."""
        if self.models is not None:
            return self.models.registry
        if self._registry is None:
            self._registry = open_registry(self.settings.model)
        return self._registry

    @property
    def serving(self) -> bool:
        """Ready: the champion is warm and the feature store answers."""
        return self.ready and not self.store.down

    def start(
        self,
        pipeline: ScoringPipeline,
        models: SidecarModels,
        store_probe: Callable[[], object],
    ) -> None:
        """Start the batchers and the store probe; call on the event loop."""
        s = self.settings
        self.pipeline = pipeline
        self.models = models
        # Score in a worker thread so the loop keeps accepting requests while a batch runs:
        # that is what fills the bounded queue and turns overload into 503s instead of
        # requests waiting, unseen, in the kernel's socket buffers.
        self.tx_batcher = DynamicBatcher(
            TransactionScorer(pipeline, models, self.store),
            s.batch.max_batch_size,
            s.batch.max_wait_ms,
            s.serve.max_queue,
            in_thread=True,
        )
        self.tensor_batcher = DynamicBatcher(
            TensorScorer(pipeline, models),
            s.batch.max_batch_size,
            s.batch.max_wait_ms,
            s.serve.max_queue,
        )
        self.tx_batcher.start()
        self.tensor_batcher.start()
        self._prober = asyncio.get_running_loop().create_task(
            probe_while_down(self.store, store_probe), name="store-probe"
        )
        if s.serve.cache_enabled and s.redis.url is not None:
            import redis

            client = redis.Redis.from_url(
                s.redis.url.get_secret_value(),
                socket_timeout=s.redis.socket_timeout_s,
                socket_connect_timeout=s.redis.connect_timeout_s,
            )
            self.cache = PredictionCache(client, s.redis.key_prefix, s.serve.cache_ttl_s)
        self.load_error = ""
        self.ready = True

    async def stop(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        for batcher in (self.tx_batcher, self.tensor_batcher):
            if batcher is not None:
                await batcher.stop()
        if self.models is not None:  # joins threads (poll, model-control): off the loop
            await asyncio.to_thread(self.models.stop)

    def knows(self, name: str, version: str | None) -> bool:
        """Whether ``name`` (and ``version``, if given) is in the current serving set."""
        if self.models is None or name != self.model.name:
            return False
        if version is None:
            return True
        return version.isdigit() and self.models.current.role_of(int(version)) is not None


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

    customers = open_state(settings).customers
    return lambda: customers.load([PROBE_CUSTOMER])


def create_app(settings: Settings, pipeline: ScoringPipeline | None = None) -> FastAPI:
    """The sidecar app. Without ``pipeline`` the champion is loaded (and warmed up) at
    start-up, in the background: liveness answers at once, readiness once the champion is
    ready. A champion that cannot be loaded is retried every ``model.poll_interval_s`` (a
    promotion or rollback in the registry makes the sidecar ready). With ``pipeline``, its
    serving set is served as given (no registry following)."""
    sidecar = Sidecar(settings, None)

    async def load_models() -> tuple[ScoringPipeline, SidecarModels]:
        if pipeline is not None:
            return pipeline, _pinned_models(settings, pipeline, sidecar.metrics)
        while True:
            try:
                return await asyncio.to_thread(_load_pipeline, settings, sidecar.metrics)
            except StreamInferError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if reason != sidecar.load_error:  # log a failure once, not every retry
                    log.error("champion not loaded (not ready; retrying): %s", reason)
                sidecar.load_error = reason
            await asyncio.sleep(settings.model.poll_interval_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async def load() -> None:
            try:
                ready, models = await load_models()
                probe = await asyncio.to_thread(_store_probe, settings)
                try:  # a store already down at start-up: not ready until the probe finds it
                    await asyncio.to_thread(probe)
                except RetryableError as exc:
                    sidecar.store.failed(exc)
                sidecar.start(ready, models, probe)
            except Exception:
                log.exception("model failed to load; the sidecar stays not ready")

        loader = asyncio.create_task(load())
        yield
        loader.cancel()
        await sidecar.stop()

    app = FastAPI(
        title="stream-infer sidecar",
        version="1",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    app.state.sidecar = sidecar
    app.add_middleware(DefaultJsonContentType)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.serve.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        sidecar.metrics.requests.labels(request.url.path.split("/")[1], "422").inc()
        return OrjsonResponse({"error": "invalid request", "detail": problems}, status_code=422)

    from stream_infer.sidecar.repository_api import add_repository_routes
    from stream_infer.sidecar.routes import add_routes

    add_routes(app, sidecar)
    add_repository_routes(app, sidecar)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        for name, batcher in (("v1", sidecar.tx_batcher), ("v2", sidecar.tensor_batcher)):
            if batcher is not None:
                sidecar.metrics.queue_depth.labels(name).set(batcher.depth)
        return Response(generate_latest(sidecar.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def run(settings: Settings) -> None:
    """Serve until interrupted (uvicorn with uvloop and httptools when installed)."""
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=settings.serve.host,
        port=settings.serve.port,
        loop="auto",
        http="auto",
        access_log=False,
        log_level="info",
    )
