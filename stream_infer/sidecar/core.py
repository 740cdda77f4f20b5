"""What every sidecar request shares, HTTP and gRPC alike: the serving set, the batchers, the
feature store's health, the metrics and the inference statistics.

Built once per process; the HTTP routes (:mod:`stream_infer.sidecar.routes`,
:mod:`stream_infer.sidecar.protocol_http`) and the gRPC servicer
(:mod:`stream_infer.sidecar.grpc_server`) all hold the same :class:`Sidecar`, so one batch may
mix requests from both transports.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable
from typing import Any

from stream_infer.config import Settings
from stream_infer.model.interface import Registry
from stream_infer.model.registry import open_registry
from stream_infer.model.session import LoadedModel
from stream_infer.pipeline import ScoringPipeline
from stream_infer.sidecar.health import StoreHealth, probe_while_down
from stream_infer.sidecar.metrics import SidecarMetrics
from stream_infer.sidecar.models import SidecarModels
from stream_infer.sidecar.scoring import PredictionCache, TensorScorer, TransactionScorer
from stream_infer.sidecar.stats import InferenceStatistics
from stream_infer.sidecar.turns import TurnBatcher


class Sidecar:
    """Everything a request needs, built once at start-up."""

    def __init__(self, settings: Settings, pipeline: ScoringPipeline | None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.models: SidecarModels | None = None
        self.ready = False
        #: Why the champion is not loaded yet ("" while loading normally or once ready).
        self.load_error = ""
        #: Set when start-up failed for good (not a model the registry may yet fix): the
        #: process is to exit non-zero (:func:`stream_infer.sidecar.app.run`).
        self.fatal = ""
        self.on_fatal: Callable[[str], None] | None = None
        self.metrics = SidecarMetrics()
        self.stats = InferenceStatistics()
        self.tx_batcher: TurnBatcher[Any, Any] | None = None
        self.tensor_batcher: TurnBatcher[Any, Any] | None = None
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

    def not_ready_reason(self) -> str:
        """Why the sidecar is not ready ("" when it is)."""
        if self.serving:
            return ""
        if self.ready:
            return "feature store unavailable"
        if self.fatal:
            return f"start-up failed: {self.fatal}"
        if self.load_error:
            return f"champion not loaded: {self.load_error}"
        return "model is loading"

    def failed_for_good(self, reason: str) -> None:
        """Start-up cannot succeed by waiting: say so, and stop the process if it can be."""
        self.fatal = reason
        if self.on_fatal is not None:
            self.on_fatal(reason)

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
        # Scored on the loop, batched by turn (stream_infer.sidecar.turns): no thread hand-off,
        # nothing waits on a clock. A store on the network (Redis) is read in a worker thread
        # instead: a call may block up to its socket timeout, and the loop must keep
        # answering health checks and turning overload into 503s meanwhile.
        remote = s.redis.enabled
        self.tx_batcher = TurnBatcher(
            TransactionScorer(pipeline, models, self.store),
            s.batch.max_batch_size,
            s.serve.max_queue,
            in_thread=remote,
        )
        self.tensor_batcher = TurnBatcher(
            TensorScorer(pipeline, models, self.stats), s.batch.max_batch_size, s.serve.max_queue
        )
        self.tx_batcher.start()
        self.tensor_batcher.start()
        self._prober = asyncio.get_running_loop().create_task(
            probe_while_down(self.store, store_probe), name="store-probe"
        )
        if s.serve.cache_enabled and s.redis.enabled:
            from stream_infer.state.redis_client import build_client

            client = build_client(s.redis)  # checked by the store's open (same settings)
            self.cache = PredictionCache(client, s.redis.key_prefix, s.serve.cache_ttl_s)
        self.load_error = ""
        self.ready = True
        # Everything built so far (modules, model, settings) lives as long as the process:
        # out of the collector's sight, a full collection no longer walks it (a p99 stall).
        gc.freeze()

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
        # ASCII digits only: str.isdigit() is true of "²", which int() refuses.
        if not (version.isascii() and version.isdigit()):
            return False
        return self.models.current.role_of(int(version)) is not None
