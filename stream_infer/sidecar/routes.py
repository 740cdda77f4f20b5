"""The sidecar's domain route: ``POST /v1/models/{name}/predict``.

A body is one transaction (``inputs``) or a batch (``transactions``, answered as ``results``
in the same order, each scored exactly as it would be alone). Every answer names the version
that scored it (``model_version``, ``model_semver``, ``model_role``, as the stream's score
records do), the request's ``request_id``, its ``latency_ms`` and ``timestamp``, and is judged
by that version's rule (its manifest's direction, ``positive`` high or low, and threshold;
``model.threshold`` where the manifest records none); a request's ``threshold`` replaces the
threshold, not the direction. ``return_features`` adds
the features; ``return_explanations`` per-feature attributions
(:mod:`stream_infer.sidecar.explain`). Open Inference Protocol routes are
:mod:`stream_infer.sidecar.protocol_http`'s.

The body is validated by pydantic straight from its JSON bytes and the answer is built as a
dict and encoded by orjson: the response model (:data:`~stream_infer.sidecar.schemas.
PredictAnswer`) documents it in the OpenAPI schema and the tests hold answers to it, but it is
not run per request (it cost as much as the model call). The route is served by
:class:`~stream_infer.sidecar.hot.HotPaths` (and, for the OpenAPI document and apps mounted
without it, by FastAPI with the same handler).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from pydantic import TypeAdapter, ValidationError

from stream_infer.errors import BatchTimeoutError, QueueFullError, RetryableError
from stream_infer.event_time import FutureLimit
from stream_infer.events import Transaction
from stream_infer.model.verdict import ScoreRule
from stream_infer.sidecar.explain import Explainer
from stream_infer.sidecar.hot import Answer
from stream_infer.sidecar.models import Route, route_of
from stream_infer.sidecar.protocol import ProtocolError
from stream_infer.sidecar.protocol_http import ERRORS, RETRY_AFTER_S, inline_schema_of
from stream_infer.sidecar.schemas import (
    BatchPredictRequest,
    PredictAnswer,
    PredictBody,
    PredictParameters,
)
from stream_infer.sidecar.scoring import Scored
from stream_infer.wire import epoch_seconds

if TYPE_CHECKING:
    from stream_infer.sidecar.core import Sidecar

API = "v1"
PREDICT_BODY: TypeAdapter[Any] = TypeAdapter(PredictBody)


class StoreDownError(ProtocolError):
    """The feature store does not answer (503 with what it said as ``detail``)."""

    def __init__(self, reason: str) -> None:
        super().__init__("feature store unavailable", 503, retry_after=True)
        self.reason = reason


def problems_of(exc: ValidationError) -> list[str]:
    """A body's validation errors as FastAPI words them (``body.<where>: <what>``)."""
    return [f"{'.'.join(str(p) for p in ('body', *e['loc']))}: {e['msg']}" for e in exc.errors()]


class Predict:
    """The route's handler: body bytes in, :class:`~stream_infer.sidecar.hot.Answer` out.
    Never raises for a caller's mistake or an overload: those are answers (422, 404, 503,
    504, with the protocol's ``{"error"}`` body; 400 for a transaction dated more than
    ``events.max_future_s`` ahead of the wall clock, :mod:`stream_infer.event_time`)."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.explainer = Explainer(sidecar)
        m = sidecar.metrics
        self._ok = m.requests.labels(API, "200")
        self._latency = m.latency.labels(API)
        self._batch_size = m.batch_size.labels(API)
        self._served: dict[tuple[int, str], Any] = {}

    def refused(self, exc: ProtocolError) -> Answer:
        self.sidecar.metrics.requests.labels(API, str(exc.status)).inc()
        headers = {"Retry-After": RETRY_AFTER_S} if exc.retry_after or exc.status == 503 else None
        body: dict[str, Any] = {"error": str(exc)}
        if isinstance(exc, StoreDownError):  # never a 500: the store will be back
            body["detail"] = exc.reason
        return Answer.json(exc.status, body, headers)

    async def __call__(
        self, name: str, _version: str | None, raw: bytes, _headers: Mapping[str, str]
    ) -> Answer:
        start = time.monotonic()
        s = self.sidecar
        try:
            body = PREDICT_BODY.validate_json(raw)
        except ValidationError as exc:
            s.metrics.requests.labels(API, "422").inc()
            return Answer.json(422, {"error": "invalid request", "detail": problems_of(exc)})
        if not s.ready:
            return self.refused(ProtocolError(s.not_ready_reason(), 503, retry_after=True))
        if not s.knows(name, None):
            return self.refused(ProtocolError(f"unknown model {name}", 404))
        batch = isinstance(body, BatchPredictRequest)
        txs = body.transactions if isinstance(body, BatchPredictRequest) else [body.inputs]
        limit = s.settings.serve.max_queue
        if len(txs) > limit:
            return self.refused(ProtocolError(f"at most {limit} transactions (serve.max_queue)"))
        future = FutureLimit.at(time.time, s.settings.events.max_future_s)
        for tx in txs:
            when = epoch_seconds(tx.tx_datetime)
            if not future.allows(when):
                return self.refused(ProtocolError(future.reason(when)))
        try:
            scored = await self.score(txs)
            explanations: Sequence[dict[str, Any] | None] = [None] * len(scored)
            if body.parameters.return_explanations:
                explanations = await self.explainer.explain(scored)
        except ProtocolError as exc:
            return self.refused(exc)
        results = [
            self.answer(body.request_id, name, one, body.parameters, start, e)
            for one, e in zip(scored, explanations, strict=True)
        ]
        self._ok.inc()
        self._latency.observe(time.monotonic() - start)
        payload = {"request_id": body.request_id, "results": results} if batch else results[0]
        return Answer.json(200, payload)

    async def score(self, txs: Sequence[Transaction]) -> list[Scored]:
        """Each transaction's score: from the cache, else through the batcher (together).

        Raises:
            ProtocolError: 503 queue full, or the feature store down (StoreDownError); 504
                not scored in time.
        """
        s = self.sidecar
        if s.store.down:  # before the cache: it may live on the same unanswering Redis
            raise StoreDownError(s.store.reason)
        assert s.models is not None and s.tx_batcher is not None
        batcher = s.tx_batcher
        timeout_s = s.settings.serve.request_timeout_ms / 1000
        cache = s.cache
        if cache is None and len(txs) == 1:  # the common case: no cache, no gather's task
            try:
                one = await batcher.submit(txs[0], timeout_s)
            except Exception as exc:
                raise self._refusal(exc) from exc
            self._batch_size.observe(batcher.last_batch_size)
            return [one]
        serving = s.models.current
        name = serving.champion.model.name
        found: list[Scored | None] = [None] * len(txs)
        keys: list[tuple[str, int] | None] = [None] * len(txs)
        if cache is not None:  # keyed by the version that would serve this customer now
            for i, tx in enumerate(txs):
                member, role = route_of(serving, tx.customer_id)
                key = cache.key(name, member.version, tx)
                keys[i] = (key, member.version)
                found[i] = cache.get(key, Route(member.version, member.semver, role, member.model))
        todo = [i for i, hit in enumerate(found) if hit is None]
        outcomes = await asyncio.gather(
            *(batcher.submit(txs[i], timeout_s) for i in todo), return_exceptions=True
        )
        for i, outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise self._refusal(outcome) from outcome
            found[i] = outcome
            keyed = keys[i]
            if cache is not None and keyed is not None and outcome.route.version == keyed[1]:
                cache.put(keyed[0], outcome)
        if todo:
            self._batch_size.observe(batcher.last_batch_size)
        return [one for one in found if one is not None]

    def _refusal(self, exc: BaseException) -> BaseException:
        """What a failed submission answers (or ``exc`` itself, re-raised: a bug)."""
        if isinstance(exc, QueueFullError):
            return ProtocolError(str(exc), 503, retry_after=True)
        if isinstance(exc, BatchTimeoutError):
            return ProtocolError(str(exc), 504)
        if isinstance(exc, RetryableError):  # the feature store failed, now or before
            return StoreDownError(self.sidecar.store.reason or str(exc))
        return exc

    def answer(
        self,
        request_id: str | None,
        name: str,
        scored: Scored,
        parameters: PredictParameters,
        start: float,
        explanation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        route = scored.route
        # The serving version's rule (its manifest's direction and threshold); a request's
        # threshold replaces the threshold only, never the direction.
        if parameters.threshold is None:
            rule = route.model.rule(self.sidecar.settings.model.threshold)
        else:
            rule = ScoreRule(parameters.threshold, route.model.positive, route.model.score_kind)
        served = self._served.get((route.version, route.role))
        if served is None:
            served = self.sidecar.metrics.served.labels(API, str(route.version), route.role)
            self._served[(route.version, route.role)] = served
        served.inc()
        payload: dict[str, Any] = {
            "request_id": request_id,
            "model_name": name,
            "model_version": route.version,
            "model_semver": route.semver,
            "model_role": route.role,
            "predictions": {
                "fraud_probability": scored.score,
                "is_fraud": bool(rule.flags(scored.score)),
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


def add_routes(app: FastAPI, sidecar: Sidecar) -> Predict:
    """Register the domain route; returns its handler (for :class:`~.hot.HotPaths`)."""
    handler = Predict(sidecar)

    @app.post(
        "/v1/models/{name}/predict",
        response_model=PredictAnswer,
        responses={
            **{k: v for k, v in ERRORS.items() if k != 400},
            400: {
                "model": ERRORS[400]["model"],
                "description": "too many transactions, or one dated more than "
                "events.max_future_s ahead of the wall clock",
            },
            422: {"description": "invalid request (what is wrong in detail)"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": inline_schema_of(PREDICT_BODY)}},
            }
        },
    )
    async def predict(name: str, request: Request) -> Response:
        """Score one transaction (``inputs``) or a batch (``transactions``)."""
        answer = await handler(name, None, await request.body(), request.headers)
        return answer.response()

    return handler
