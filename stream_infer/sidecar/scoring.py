"""What the sidecar scores, batch by batch: the stream's pipeline, read-only.

Transactions go through :meth:`ScoringPipeline.score_transactions` with a read-only feature
computer: the customer's history is read from the shared state store and this transaction is
added in memory only (by ``transaction_id``, so one the stream already stored is not counted
twice), the terminal row of its day is read, and nothing is written. A transaction scored here
and by the stream therefore gets the same features and the same score.

A store that fails marks :class:`~stream_infer.sidecar.health.StoreHealth` down; while it is
down, batches fail at once with :class:`~stream_infer.errors.StoreUnavailableError` instead of
each waiting out the store's socket timeout (:mod:`stream_infer.sidecar.health`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from stream_infer.errors import RetryableError
from stream_infer.events import Transaction
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.pipeline import ScoringPipeline
from stream_infer.sidecar.health import StoreHealth

log = logging.getLogger(__name__)
#: Sidecar requests are not in a partition; sort after any same-second stream entry.
SIDECAR_PARTITION = -1
SIDECAR_SEQ = 2**62


@dataclass(frozen=True, slots=True)
class Scored:
    score: float
    features: dict[str, float]
    flags: tuple[str, ...]


class TransactionScorer:
    """``score_batch`` for the dynamic batcher: one features pass and one model call.

    Raises:
        RetryableError: the feature step's store failed now, or is known to be down from an
            earlier call (then :class:`~stream_infer.errors.StoreUnavailableError`, at once).
    """

    def __init__(self, pipeline: ScoringPipeline, health: StoreHealth | None = None) -> None:
        self.pipeline = pipeline
        self.health = health or StoreHealth()

    def __call__(self, txs: Sequence[Transaction]) -> list[Scored]:
        self.health.check()
        positions = [(SIDECAR_PARTITION, SIDECAR_SEQ)] * len(txs)
        try:
            scored, _features_s, _model_s = self.pipeline.score_transactions(txs, positions)
        except RetryableError as exc:
            self.health.failed(exc)
            raise
        finally:
            # Read-only: forget what was loaded, the stream owns the state.
            self.pipeline.features.state.drop_partitions([SIDECAR_PARTITION])
            self.pipeline.features.state.take_pending()
        self.health.succeeded()
        return [
            Scored(s.score, dict(zip(FEATURE_NAMES, s.features.tolist(), strict=True)), s.flags)
            for s in scored
        ]


class TensorScorer:
    """``score_batch`` for raw feature matrices (Open Inference Protocol)."""

    def __init__(self, pipeline: ScoringPipeline) -> None:
        self.model = pipeline.model

    def __call__(self, matrices: Sequence[npt.NDArray[np.float32]]) -> list[npt.NDArray[Any]]:
        rows = np.concatenate(matrices) if len(matrices) > 1 else matrices[0]
        out = self.model.session.run([self.model.output_name], {self.model.input_name: rows})[0]
        results: list[npt.NDArray[Any]] = []
        start = 0
        for m in matrices:
            results.append(out[start : start + len(m)])
            start += len(m)
        return results


class PredictionCache:
    """Opt-in Redis cache of predictions, keyed by model version and the input's hash.

    A cache outage never fails a request: errors are counted and the request is scored.
    """

    def __init__(self, client: Any, prefix: str, ttl_s: int) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.errors = 0

    def key(self, model: str, version: int, inputs: Transaction) -> str:
        canonical = orjson.dumps(inputs.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return f"{self.prefix}:pc:{model}:{version}:{hashlib.sha256(canonical).hexdigest()}"

    def get(self, key: str) -> Scored | None:
        try:
            raw = self.client.get(key)
        except Exception as exc:  # redis.RedisError: degrade to scoring
            self.errors += 1
            log.warning("prediction cache read failed: %s", exc)
            return None
        if raw is None:
            return None
        data = orjson.loads(raw)
        return Scored(data["score"], data["features"], tuple(data["flags"]))

    def put(self, key: str, scored: Scored) -> None:
        if scored.flags:
            return  # a flagged score may change once the terminal row is published
        try:
            payload = {"score": scored.score, "features": scored.features, "flags": []}
            self.client.set(key, orjson.dumps(payload), ex=self.ttl_s)
        except Exception as exc:
            self.errors += 1
            log.warning("prediction cache write failed: %s", exc)
