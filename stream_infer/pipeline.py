"""The scoring pipeline, transport-free: decode -> features -> model -> score records.

This is the one module that knows the order of the steps. The Kafka worker and the HTTP
sidecar are adapters around it: they hand it records and ship what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from stream_infer.errors import DeadLetterError
from stream_infer.events import DeadLetter, Transaction, encode, encode_score
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.features.online import FeatureComputer, TxInput
from stream_infer.model.session import LoadedModel
from stream_infer.wire import WireTransaction, decode, epoch_seconds

Headers = list[tuple[str, bytes]]


class RecordLike(Protocol):
    """What the pipeline reads from an input record (a confluent-kafka Message fits)."""

    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce: scores keep the input's partition (co-partitioning)."""

    value: bytes
    key: bytes | None
    partition: int | None
    headers: Headers | None


@dataclass
class BatchResult:
    """What one batch produced, plus what the metrics need."""

    scores: list[OutRecord] = field(default_factory=list)
    dead_letters: list[tuple[OutRecord, str]] = field(default_factory=list)
    features_s: float = 0.0
    inference_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    flags: list[tuple[str, ...]] = field(default_factory=list)
    #: New customer-history entries to make durable before the batch is acknowledged.
    state_writes: dict[str, list[Any]] = field(default_factory=dict)
    #: Row-aligned with ``scores``: who, when (epoch s) and the feature matrix (for sinks).
    customer_ids: list[str] = field(default_factory=list)
    epoch_seconds: list[int] = field(default_factory=list)
    features: npt.NDArray[np.float64] | None = None


@dataclass(frozen=True, slots=True)
class BatchScores:
    """Model output for a batch, row-aligned with its inputs."""

    scores: npt.NDArray[np.float64]
    is_fraud: npt.NDArray[np.bool_]
    features: npt.NDArray[np.float64]
    flags: list[tuple[str, ...]]
    features_s: float
    inference_s: float


@dataclass(frozen=True, slots=True)
class Scored:
    """One transaction's score, before any transport encodes it."""

    transaction: Transaction
    score: float
    is_fraud: bool
    features: npt.NDArray[np.float64]
    flags: tuple[str, ...]


def dead_letter_reason_kind(reason: str) -> str:
    """A low-cardinality label for a dead-letter reason (metrics must not explode)."""
    return reason.split(":", 1)[0][:40]


class ScoringPipeline:
    """Scores batches of transactions with one model and one feature computer.

    Not thread-safe: one pipeline per worker loop (the sidecar serialises through its batcher).
    """

    def __init__(
        self,
        model: LoadedModel,
        features: FeatureComputer,
        threshold: float = 0.5,
        emit_features: bool = False,
    ) -> None:
        self.model = model
        self.features = features
        self.threshold = threshold
        self.emit_features = emit_features

    def score_inputs(self, inputs: Sequence[TxInput]) -> BatchScores:
        """Features and model for a batch: the one scoring path (stream and sidecar).

        Raises:
            RetryableError: the feature state store failed.
        """
        t0 = time.perf_counter()
        matrix, flags = self.features.compute(inputs)
        t1 = time.perf_counter()
        if inputs:
            scores = self.model.predict(matrix.astype(np.float32)).astype(np.float64)
        else:
            scores = np.empty(0)
        t2 = time.perf_counter()
        return BatchScores(scores, scores >= self.threshold, matrix, flags, t1 - t0, t2 - t1)

    def score_transactions(
        self, txs: Sequence[Transaction], positions: Sequence[tuple[int, int]]
    ) -> tuple[list[Scored], float, float]:
        """:meth:`score_inputs` for validated (pydantic) transactions; ``positions`` are
        (partition, seq) pairs. Returns the scores and seconds spent in features and model.
        """
        inputs = [
            TxInput(
                tx.transaction_id,
                tx.customer_id,
                tx.terminal_id,
                epoch_seconds(tx.tx_datetime),
                tx.tx_amount,
                part,
                off,
            )
            for tx, (part, off) in zip(txs, positions, strict=True)
        ]
        out = self.score_inputs(inputs)
        scored = [
            Scored(tx, float(out.scores[i]), bool(out.is_fraud[i]), out.features[i], out.flags[i])
            for i, tx in enumerate(txs)
        ]
        return scored, out.features_s, out.inference_s

    def process(self, records: Sequence[RecordLike]) -> BatchResult:
        """Decode, featurize, score and encode a batch; bad records become dead letters.

        Never raises for bad input: each undecodable or invalid record is returned as a dead
        letter with its reason.

        Raises:
            RetryableError: the feature state store failed (the batch is not acknowledged).
        """
        result = BatchResult()
        txs: list[WireTransaction] = []
        kept: list[RecordLike] = []
        inputs: list[TxInput] = []
        for rec in records:
            try:
                tx = decode(rec.value())
            except DeadLetterError as exc:
                result.dead_letters.append((self._dead_letter(rec, exc.reason), exc.reason))
                continue
            txs.append(tx)
            kept.append(rec)
            inputs.append(
                TxInput(
                    str(tx.transaction_id),
                    str(tx.customer_id),
                    str(tx.terminal_id),
                    epoch_seconds(tx.tx_datetime),
                    tx.tx_amount,
                    rec.partition() or 0,
                    rec.offset() or 0,
                )
            )
        if not txs:
            return result
        out = self.score_inputs(inputs)
        result.features_s, result.inference_s = out.features_s, out.inference_s
        now = time.time()
        scored_at = datetime.fromtimestamp(now, tz=UTC)
        name, version = self.model.name, self.model.version
        emit = self.emit_features
        scores = out.scores.tolist()
        frauds = out.is_fraud.tolist()
        append_score = result.scores.append
        append_latency = result.latencies_s.append
        for i, rec in enumerate(kept):
            ts_type, ts_ms = rec.timestamp()
            latency_s = now - ts_ms / 1000.0 if ts_type and ts_ms > 0 else 0.0
            tx, inp = txs[i], inputs[i]
            payload: dict[str, Any] = {
                "transaction_id": inp.transaction_id,
                "customer_id": inp.customer_id,
                "score": scores[i],
                "is_fraud": frauds[i],
                "model_name": name,
                "model_version": version,
                "event_time": tx.tx_datetime,  # naive = UTC: orjson adds +00:00
                "scored_at": scored_at,
                "latency_ms": latency_s * 1000.0,
            }
            if out.flags[i]:
                payload["flags"] = list(out.flags[i])
            if emit:
                payload["features"] = dict(
                    zip(FEATURE_NAMES, out.features[i].tolist(), strict=True)
                )
            append_score(
                OutRecord(encode_score(payload), rec.key(), rec.partition(), rec.headers())
            )
            append_latency(latency_s)
        result.flags = out.flags
        result.state_writes = self.features.state.take_pending()
        result.customer_ids = [inp.customer_id for inp in inputs]
        result.epoch_seconds = [inp.epoch_seconds for inp in inputs]
        result.features = out.features
        return result

    @staticmethod
    def _dead_letter(rec: RecordLike, reason: str) -> OutRecord:
        letter = DeadLetter(
            original=rec.value() or b"",
            original_key=rec.key(),
            reason=reason,
            source_topic=rec.topic() or "",
            source_partition=rec.partition() or 0,
            source_offset=rec.offset() or 0,
            failed_at=datetime.now(UTC),
        )
        headers: Headers = [("x-dlq-reason", reason.encode()[:1024])]
        return OutRecord(encode(letter), rec.key(), None, headers)
