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
from stream_infer.events import DeadLetter, Transaction, decode_transaction, encode, encode_dict
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.features.online import FeatureComputer, TxInput
from stream_infer.model.session import LoadedModel

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

    def score_transactions(
        self, txs: Sequence[Transaction], positions: Sequence[tuple[int, int]]
    ) -> tuple[list[Scored], float, float]:
        """Features and model for decoded transactions; ``positions`` = (partition, offset).

        Returns the scores plus seconds spent in features and in the model.
        """
        t0 = time.perf_counter()
        inputs = [
            TxInput(
                tx.transaction_id,
                tx.customer_id,
                tx.terminal_id,
                int(tx.tx_datetime.timestamp()),
                tx.tx_amount,
                part,
                off,
            )
            for tx, (part, off) in zip(txs, positions, strict=True)
        ]
        matrix, flags = self.features.compute(inputs)
        t1 = time.perf_counter()
        scores = self.model.predict(matrix.astype(np.float32)) if len(txs) else np.empty(0)
        t2 = time.perf_counter()
        threshold = self.threshold
        out = [
            Scored(tx, float(s), bool(s >= threshold), matrix[i], flags[i])
            for i, (tx, s) in enumerate(zip(txs, scores.tolist(), strict=True))
        ]
        return out, t1 - t0, t2 - t1

    def process(self, records: Sequence[RecordLike]) -> BatchResult:
        """Decode, featurize, score and encode a batch; bad records become dead letters.

        Never raises for bad input: each undecodable or invalid record is returned as a dead
        letter with its reason.
        """
        result = BatchResult()
        txs: list[Transaction] = []
        kept: list[RecordLike] = []
        for rec in records:
            try:
                txs.append(decode_transaction(rec.value()))
                kept.append(rec)
            except DeadLetterError as exc:
                result.dead_letters.append((self._dead_letter(rec, exc.reason), exc.reason))
        if not txs:
            return result
        positions = [(r.partition() or 0, r.offset() or 0) for r in kept]
        scored, result.features_s, result.inference_s = self.score_transactions(txs, positions)
        now = time.time()
        scored_at = datetime.fromtimestamp(now, tz=UTC)
        meta = {"model_name": self.model.name, "model_version": self.model.version}
        emit = self.emit_features
        for rec, s in zip(kept, scored, strict=True):
            ts_type, ts_ms = rec.timestamp()
            latency_s = now - ts_ms / 1000.0 if ts_type and ts_ms > 0 else 0.0
            tx = s.transaction
            payload: dict[str, Any] = {
                "transaction_id": tx.transaction_id,
                "customer_id": tx.customer_id,
                "score": s.score,
                "is_fraud": s.is_fraud,
                **meta,
                "event_time": tx.tx_datetime,
                "scored_at": scored_at,
                "latency_ms": latency_s * 1000.0,
            }
            if s.flags:
                payload["flags"] = list(s.flags)
            if emit:
                payload["features"] = dict(zip(FEATURE_NAMES, s.features.tolist(), strict=True))
            result.scores.append(
                OutRecord(encode_dict(payload), rec.key(), rec.partition(), rec.headers())
            )
            result.latencies_s.append(latency_s)
            result.flags.append(s.flags)
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
