"""What the sidecar scores, batch by batch: the stream's pipeline, read-only.

Transactions go through :meth:`ScoringPipeline.score_columns` (the stream's one scoring path)
as event columns named by the source's fields, with a read-only feature computer: the
customer's history is read from the shared state store
and this transaction is added in memory only (by ``transaction_id``, so one the stream already
stored is not counted twice), the terminal row of its day is read, and nothing is written. A
transaction scored here and by the stream therefore gets the same features and the same score.
Each batch takes the
serving set once (:class:`~stream_infer.sidecar.models.SidecarModels`), the pipeline routes
its rows by customer exactly as the stream does, and every result says which version, semver
and role served it.

A store that fails marks :class:`~stream_infer.sidecar.health.StoreHealth` down; while it is
down, batches fail at once with :class:`~stream_infer.errors.StoreUnavailableError` instead of
each waiting out the store's socket timeout (:mod:`stream_infer.sidecar.health`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from stream_infer.errors import RetryableError
from stream_infer.events import Transaction
from stream_infer.model.serving import Served
from stream_infer.pipeline import Columns, ScoringPipeline, event_columns
from stream_infer.sidecar.health import StoreHealth
from stream_infer.sidecar.models import Route, SidecarModels, routes_of
from stream_infer.sidecar.stats import Execution, InferenceStatistics
from stream_infer.streamdef.spec import SourceSpec
from stream_infer.wire import epoch_seconds

log = logging.getLogger(__name__)
#: Sidecar requests are not in a partition; sort after any same-second stream entry.
SIDECAR_PARTITION = -1
SIDECAR_SEQ = 2**62


@dataclass(frozen=True, slots=True)
class Scored:
    score: float
    features: dict[str, float]
    flags: tuple[str, ...]
    route: Route


def sidecar_inputs(source: SourceSpec, txs: Sequence[Transaction]) -> Columns:
    """The pipeline's event columns for validated transactions (fields taken by the source's
    field names, the timestamp in epoch seconds), placed after any stream entry."""
    events = []
    for tx in txs:
        fields = {f.name: getattr(tx, f.name) for f in source.fields}
        fields[source.timestamp_field] = epoch_seconds(getattr(tx, source.timestamp_field))
        events.append(fields)
    return event_columns(source, events, [SIDECAR_SEQ] * len(txs))


def rounds_of(txs: Sequence[Transaction]) -> list[list[int]]:
    """Indices of ``txs`` in rounds holding each customer at most once (the k-th transaction
    of a customer in round k), in order."""
    seen: dict[str, int] = {}
    rounds: list[list[int]] = []
    for i, tx in enumerate(txs):
        k = seen.get(tx.customer_id, 0)
        seen[tx.customer_id] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    return rounds


class TransactionScorer:
    """``score_batch`` for the dynamic batcher: one features pass and one model call per
    serving version, with the serving set taken once for the batch.

    Each transaction is scored as it would be alone: against the stored history plus itself,
    never against another transaction of the same batch (which the read-only feature pass
    would otherwise count, making a score depend on what it happened to be batched with). A
    batch holding a customer twice is therefore scored in rounds (:func:`rounds_of`), one
    pass each, forgetting the in-memory additions between them.

    Raises:
        RetryableError: the feature step's store failed now, or is known to be down from an
            earlier call (then :class:`~stream_infer.errors.StoreUnavailableError`, at once).
    """

    def __init__(
        self,
        pipeline: ScoringPipeline,
        models: SidecarModels | None = None,
        health: StoreHealth | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.models = models
        self.health = health or StoreHealth()

    def __call__(self, txs: Sequence[Transaction]) -> list[Scored]:
        self.health.check()
        if self.models is not None:
            # Between batches: the batcher runs one batch at a time, so no batch mixes sets.
            self.pipeline.serving = self.models.current
        results: list[Scored | None] = [None] * len(txs)
        for members in rounds_of(txs):
            for i, scored in zip(members, self._score([txs[i] for i in members]), strict=True):
                results[i] = scored
        self.health.succeeded()
        return [s for s in results if s is not None]

    def _score(self, txs: Sequence[Transaction]) -> list[Scored]:
        try:
            cols = sidecar_inputs(self.pipeline.source, txs)
            parts = np.full(len(txs), SIDECAR_PARTITION, dtype=np.int64)
            out = self.pipeline.score_columns(cols, parts)
        except RetryableError as exc:
            self.health.failed(exc)
            raise
        finally:
            # Read-only: forget what was loaded, the stream owns the state.
            self.pipeline.features.state.drop_partitions([SIDECAR_PARTITION])
            self.pipeline.features.state.take_pending()
        scores = out.scores.tolist()
        features = out.features.tolist()
        names = self.pipeline.features.names
        return [
            Scored(scores[i], dict(zip(names, features[i], strict=True)), flags, route)
            for i, (flags, route) in enumerate(zip(out.flags, routes_of(out.routed), strict=True))
        ]


@dataclass(frozen=True, slots=True)
class TensorRequest:
    """Raw rows, and the version asked for (None: the champion). ``enqueued_ns``
    (``time.monotonic_ns()`` at submission) and ``counted`` feed the inference statistics:
    a protocol request is counted, an explanation's internal call is not."""

    rows: npt.NDArray[np.float32]
    version: int | None = None
    enqueued_ns: int = 0
    counted: bool = True


@dataclass(frozen=True, slots=True)
class TensorResult:
    """The model's output tensor for a request; ``served`` None (and ``output`` None) when
    the version asked for left the serving set before the batch ran."""

    output: npt.NDArray[Any] | None
    served: Served | None
    role: str = ""


class TensorScorer:
    """``score_batch`` for raw feature matrices (Open Inference Protocol, explanations): one
    model call per version asked for, with the serving set taken once for the batch; each
    call's phases go to ``stats`` (:mod:`stream_infer.sidecar.stats`)."""

    def __init__(
        self,
        pipeline: ScoringPipeline,
        models: SidecarModels | None = None,
        stats: InferenceStatistics | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.models = models
        self.stats = stats

    def __call__(self, requests: Sequence[TensorRequest]) -> list[TensorResult]:
        started = time.monotonic_ns()
        serving = self.models.current if self.models is not None else self.pipeline.serving
        groups: dict[int, list[int]] = {}
        for i, req in enumerate(requests):
            version = serving.champion.version if req.version is None else req.version
            groups.setdefault(version, []).append(i)
        results: list[TensorResult] = [TensorResult(None, None)] * len(requests)
        for version, members in groups.items():
            role = serving.role_of(version)
            served = dict(serving.members()).get(role) if role is not None else None
            if served is None or role is None:
                continue
            t0 = time.monotonic_ns()
            matrices = [requests[i].rows for i in members]
            rows = np.concatenate(matrices) if len(matrices) > 1 else matrices[0]
            model = served.model
            t1 = time.monotonic_ns()
            out = model.session.run([model.output_name], {model.input_name: rows})[0]
            t2 = time.monotonic_ns()
            start = 0
            for i, m in zip(members, matrices, strict=True):
                results[i] = TensorResult(out[start : start + len(m)], served, role)
                start += len(m)
            counted = [requests[i] for i in members if requests[i].counted]
            if self.stats is not None and counted:
                run = Execution(
                    rows=sum(len(r.rows) for r in counted),
                    queue_ns=tuple(max(0, started - r.enqueued_ns) for r in counted),
                    input_ns=t1 - t0,
                    infer_ns=t2 - t1,
                    output_ns=time.monotonic_ns() - t2,
                )
                self.stats.executed(model.name, version, run)
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

    def get(self, key: str, route: Route) -> Scored | None:
        """The cached score of ``key`` (whose version is ``route``'s), or None."""
        try:
            raw = self.client.get(key)
        except Exception as exc:  # redis.RedisError: degrade to scoring
            self.errors += 1
            log.warning("prediction cache read failed: %s", exc)
            return None
        if raw is None:
            return None
        data = orjson.loads(raw)
        return Scored(data["score"], data["features"], tuple(data["flags"]), route)

    def put(self, key: str, scored: Scored) -> None:
        if scored.flags:
            return  # a flagged score may change once the terminal row is published
        try:
            payload = {"score": scored.score, "features": scored.features, "flags": []}
            self.client.set(key, orjson.dumps(payload), ex=self.ttl_s)
        except Exception as exc:
            self.errors += 1
            log.warning("prediction cache write failed: %s", exc)
