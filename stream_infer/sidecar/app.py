"""The sidecar ASGI app: domain endpoint, Open Inference Protocol (KServe V2), health, metrics.

Adapters only: requests are validated here and handed to the shared batcher and pipeline
(:mod:`stream_infer.sidecar.scoring`). Ready only once the model is loaded and warmed up, and
while the feature store answers (:mod:`stream_infer.sidecar.health`).
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
from stream_infer.errors import RetryableError
from stream_infer.model.session import LoadedModel
from stream_infer.pipeline import ScoringPipeline
from stream_infer.sidecar.health import PROBE_CUSTOMER, StoreHealth, probe_while_down
from stream_infer.sidecar.limits import BodyLimitMiddleware, DefaultJsonContentType
from stream_infer.sidecar.metrics import SidecarMetrics
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
        self.ready = False
        self.metrics = SidecarMetrics()
        self.tx_batcher: DynamicBatcher[Any, Any] | None = None
        self.tensor_batcher: DynamicBatcher[Any, Any] | None = None
        self.cache: PredictionCache | None = None
        self.store = StoreHealth()
        self._prober: asyncio.Task[None] | None = None

    @property
    def model(self) -> LoadedModel:
        assert self.pipeline is not None
        return self.pipeline.model

    @property
    def serving(self) -> bool:
        """Ready: the model is warm and the feature store answers."""
        return self.ready and not self.store.down

    def start(self, pipeline: ScoringPipeline, store_probe: Callable[[], object]) -> None:
        """Start the batchers and the store probe; call on the event loop."""
        s = self.settings
        self.pipeline = pipeline
        # Score in a worker thread so the loop keeps accepting requests while a batch runs:
        # that is what fills the bounded queue and turns overload into 503s instead of
        # requests waiting, unseen, in the kernel's socket buffers.
        self.tx_batcher = DynamicBatcher(
            TransactionScorer(pipeline, self.store),
            s.batch.max_batch_size,
            s.batch.max_wait_ms,
            s.serve.max_queue,
            in_thread=True,
        )
        self.tensor_batcher = DynamicBatcher(
            TensorScorer(pipeline), s.batch.max_batch_size, s.batch.max_wait_ms, s.serve.max_queue
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
        m = pipeline.model
        self.metrics.model_info.info(
            {"name": m.name, "version": str(m.version), "provider": m.provider}
        )
        self.ready = True

    async def stop(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        for batcher in (self.tx_batcher, self.tensor_batcher):
            if batcher is not None:
                await batcher.stop()

    def knows(self, name: str, version: str | None) -> bool:
        return (
            self.pipeline is not None
            and name == self.model.name
            and (version is None or version == str(self.model.version))
        )


def _load_pipeline(settings: Settings) -> ScoringPipeline:
    from stream_infer.runtime import build_features, load_serving_model

    model = load_serving_model(settings)  # verified and warmed up
    return ScoringPipeline(
        model,
        build_features(settings, read_only=True),
        threshold=settings.model.threshold,
        emit_features=True,
    )


def _store_probe(settings: Settings) -> Callable[[], object]:
    """One cheap read of the configured customer store (raises RetryableError if down)."""
    from stream_infer.state.factory import open_state

    customers = open_state(settings).customers
    return lambda: customers.load([PROBE_CUSTOMER])


def create_app(settings: Settings, pipeline: ScoringPipeline | None = None) -> FastAPI:
    """The sidecar app. Without ``pipeline`` the model is loaded (and warmed up) at start-up,
    in the background: liveness answers at once, readiness once the model is ready."""
    sidecar = Sidecar(settings, None)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async def load() -> None:
            try:
                ready = pipeline
                if ready is None:
                    ready = await asyncio.to_thread(_load_pipeline, settings)
                probe = await asyncio.to_thread(_store_probe, settings)
                try:  # a store already down at start-up: not ready until the probe finds it
                    await asyncio.to_thread(probe)
                except RetryableError as exc:
                    sidecar.store.failed(exc)
                sidecar.start(ready, probe)
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

    from stream_infer.sidecar.routes import add_routes

    add_routes(app, sidecar)

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
