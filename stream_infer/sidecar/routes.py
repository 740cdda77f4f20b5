"""The sidecar's domain route: ``POST /v1/models/{name}/predict``.

A body is one transaction (``inputs``) or a batch (``transactions``, answered as ``results``
in the same order, each scored exactly as it would be alone). Every answer names the version
that scored it (``model_version``, ``model_semver``, ``model_role``, as the stream's score
records do), the request's ``request_id``, its ``latency_ms`` and ``timestamp``, and is judged
against the request's ``threshold`` (default ``model.threshold``). ``return_features`` adds
the features; ``return_explanations`` per-feature attributions
(:mod:`stream_infer.sidecar.explain`). Open Inference Protocol routes are
:mod:`stream_infer.sidecar.protocol_http`'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response

from stream_infer.batching.dynamic import BatchTimeoutError, QueueFullError
from stream_infer.errors import RetryableError
from stream_infer.events import Transaction
from stream_infer.sidecar.explain import Explainer
from stream_infer.sidecar.models import Route, route_of
from stream_infer.sidecar.protocol import ProtocolError
from stream_infer.sidecar.protocol_http import ERRORS, error_response
from stream_infer.sidecar.schemas import (
    BatchPredictRequest,
    PredictAnswer,
    PredictBody,
    PredictParameters,
)
from stream_infer.sidecar.scoring import Scored

if TYPE_CHECKING:
    from stream_infer.sidecar.core import Sidecar

API = "v1"


class StoreDownError(ProtocolError):
    """The feature store does not answer (503 with what it said as ``detail``)."""

    def __init__(self, reason: str) -> None:
        super().__init__("feature store unavailable", 503, retry_after=True)
        self.reason = reason


def add_routes(app: FastAPI, sidecar: Sidecar) -> None:
    """Register the domain route."""
    explainer = Explainer(sidecar)

    def refused(exc: ProtocolError) -> Response:
        sidecar.metrics.requests.labels(API, str(exc.status)).inc()
        if isinstance(exc, StoreDownError):  # never a 500: the store will be back
            return error_response(503, str(exc), True, detail=exc.reason)
        return error_response(exc.status, str(exc), exc.retry_after)

    async def score(txs: Sequence[Transaction]) -> list[Scored]:
        """Each transaction's score: from the cache, else through the batcher (together).

        Raises:
            ProtocolError: 503 queue full, or the feature store down (StoreDownError); 504
                not scored in time.
        """
        if sidecar.store.down:  # before the cache: it may live on the same unanswering Redis
            raise StoreDownError(sidecar.store.reason)
        assert sidecar.models is not None and sidecar.tx_batcher is not None
        serving = sidecar.models.current
        name = serving.champion.model.name
        cache = sidecar.cache
        found: list[Scored | None] = [None] * len(txs)
        keys: list[tuple[str, int] | None] = [None] * len(txs)
        if cache is not None:  # keyed by the version that would serve this customer now
            for i, tx in enumerate(txs):
                member, role = route_of(serving, tx.customer_id)
                key = cache.key(name, member.version, tx)
                keys[i] = (key, member.version)
                found[i] = cache.get(key, Route(member.version, member.semver, role))
        todo = [i for i, hit in enumerate(found) if hit is None]
        timeout_s = sidecar.settings.serve.request_timeout_ms / 1000
        batcher = sidecar.tx_batcher
        outcomes = await asyncio.gather(
            *(batcher.submit(txs[i], timeout_s) for i in todo), return_exceptions=True
        )
        for i, outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, QueueFullError):
                raise ProtocolError(str(outcome), 503, retry_after=True) from outcome
            if isinstance(outcome, BatchTimeoutError):
                raise ProtocolError(str(outcome), 504) from outcome
            if isinstance(outcome, RetryableError):  # the feature store failed, now or before
                raise StoreDownError(sidecar.store.reason or str(outcome)) from outcome
            if isinstance(outcome, BaseException):
                raise outcome
            found[i] = outcome
            keyed = keys[i]
            if cache is not None and keyed is not None and outcome.route.version == keyed[1]:
                cache.put(keyed[0], outcome)
        if todo:
            sidecar.metrics.batch_size.labels(API).observe(batcher.last_batch_size)
        return [s for s in found if s is not None]

    def answer(
        request_id: str | None,
        name: str,
        scored: Scored,
        parameters: PredictParameters,
        start: float,
        explanation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        threshold = parameters.threshold
        if threshold is None:
            threshold = sidecar.settings.model.threshold
        route = scored.route
        sidecar.metrics.served.labels(API, str(route.version), route.role).inc()
        payload: dict[str, Any] = {
            "request_id": request_id,
            "model_name": name,
            "model_version": route.version,
            "model_semver": route.semver,
            "model_role": route.role,
            "predictions": {
                "fraud_probability": scored.score,
                "is_fraud": scored.score >= threshold,
            },
            "metadata": {
                "latency_ms": (time.monotonic() - start) * 1000,
                "timestamp": datetime.now(UTC).isoformat(),
                "flags": list(scored.flags),
            },
        }
        if parameters.return_features:
            payload["features"] = scored.features
        if explanation is not None:
            payload["explanations"] = explanation
        return payload

    @app.post(
        "/v1/models/{name}/predict",
        response_model=PredictAnswer,
        response_model_exclude_unset=True,
        responses={k: v for k, v in ERRORS.items() if k != 400},
    )
    async def predict(name: str, body: PredictBody) -> Any:
        start = time.monotonic()
        if not sidecar.ready:
            return refused(ProtocolError(sidecar.not_ready_reason(), 503, retry_after=True))
        if not sidecar.knows(name, None):
            return refused(ProtocolError(f"unknown model {name}", 404))
        batch = isinstance(body, BatchPredictRequest)
        txs = body.transactions if isinstance(body, BatchPredictRequest) else [body.inputs]
        if len(txs) > sidecar.settings.serve.max_queue:
            limit = sidecar.settings.serve.max_queue
            return refused(ProtocolError(f"at most {limit} transactions (serve.max_queue)", 400))
        try:
            scored = await score(txs)
            explanations: Sequence[dict[str, Any] | None] = [None] * len(scored)
            if body.parameters.return_explanations:
                explanations = await explainer.explain(scored)
        except ProtocolError as exc:
            return refused(exc)
        results = [
            answer(body.request_id, name, s, body.parameters, start, e)
            for s, e in zip(scored, explanations, strict=True)
        ]
        sidecar.metrics.requests.labels(API, "200").inc()
        sidecar.metrics.latency.labels(API).observe(time.monotonic() - start)
        return {"request_id": body.request_id, "results": results} if batch else results[0]
