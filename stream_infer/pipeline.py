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

from stream_infer.dead_letters import (
    DEFAULT_MAX_BYTES,
    DEFAULT_PREFIX_BYTES,
    build_dead_letter,
    check_limits,
)
from stream_infer.errors import DeadLetterError, ModelError, RetryableError
from stream_infer.events import Transaction, encode_score
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.features.online import FeatureComputer, TxInput
from stream_infer.model.routed import ErrorHook, RoutedScores
from stream_infer.model.routed import score as routed_score
from stream_infer.model.serving import ServingModels
from stream_infer.model.session import LoadedModel
from stream_infer.records import Headers, OutRecord
from stream_infer.wire import WireTransaction, decode, epoch_seconds

# OutRecord and Headers live in stream_infer.records; re-exported for existing importers.
__all__ = [
    "BatchResult",
    "BatchScores",
    "Headers",
    "OutRecord",
    "RecordLike",
    "Scored",
    "ScoringPipeline",
    "dead_letter_reason_kind",
]


class RecordLike(Protocol):
    """What the pipeline reads from an input record (a confluent-kafka Message fits)."""

    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> Headers | None: ...


@dataclass
class BatchResult:
    """What one batch produced, plus what the metrics need."""

    scores: list[OutRecord] = field(default_factory=list)
    #: Row-aligned with ``scores``: the input record each came from (to dead-letter it if
    #: Kafka refuses its score).
    sources: list[Any] = field(default_factory=list)
    #: Shadow scores for ``scores-shadow`` (empty without a shadow).
    shadow: list[OutRecord] = field(default_factory=list)
    #: Which version served which row (drift and canary accounting); None for an empty batch.
    routed: RoutedScores | None = None
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
    routed: RoutedScores


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
        model: LoadedModel | ServingModels,
        features: FeatureComputer,
        threshold: float = 0.5,
        emit_features: bool = False,
        *,
        dead_letter_max_bytes: int = DEFAULT_MAX_BYTES,
        dead_letter_prefix_bytes: int = DEFAULT_PREFIX_BYTES,
    ) -> None:
        """Raises ConfigError: the dead-letter limits cannot be honoured (checked here, at
        start-up, not at the first bad record)."""
        check_limits(dead_letter_max_bytes, dead_letter_prefix_bytes)
        self.serving = model if isinstance(model, ServingModels) else ServingModels.of(model)
        self.features = features
        self.threshold = threshold
        self.emit_features = emit_features
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.dead_letter_prefix_bytes = dead_letter_prefix_bytes
        #: Called with each exception a version raises (the worker counts them).
        self.on_model_error: ErrorHook | None = None

    @property
    def model(self) -> LoadedModel:
        """The champion (what raw-tensor callers and single-model users score with)."""
        return self.serving.champion.model

    @model.setter
    def model(self, model: LoadedModel) -> None:
        self.serving = ServingModels.of(model)

    def score_inputs(self, inputs: Sequence[TxInput]) -> BatchScores:
        """Features and model for a batch: the one scoring path (stream and sidecar).

        Raises:
            RetryableError: the feature state store failed.
        """
        t0 = time.perf_counter()
        matrix, flags = self.features.compute(inputs)
        t1 = time.perf_counter()
        routed = routed_score(
            self.serving, matrix, [tx.customer_id for tx in inputs], self.on_model_error
        )
        t2 = time.perf_counter()
        scores = routed.scores
        return BatchScores(
            scores, scores >= self.threshold, matrix, flags, t1 - t0, t2 - t1, routed
        )

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
        try:
            out = self.score_inputs(inputs)
        except (RetryableError, ModelError):
            raise
        except Exception:
            # A feature bug on one event must not stop the stream: find it, dead-letter it.
            kept, txs, inputs = self._isolate(kept, txs, inputs, result)
            if not txs:
                return result
            out = self.score_inputs(inputs)
        result.features_s, result.inference_s = out.features_s, out.inference_s
        now = time.time()
        scored_at = datetime.fromtimestamp(now, tz=UTC)
        routed = out.routed
        serving = routed.serving
        name = serving.champion.model.name
        champion = (serving.champion.version, serving.champion.semver, "champion")
        on_challenger = routed.challenger.tolist() if routed.challenger is not None else None
        challenger = (
            (serving.challenger.version, serving.challenger.semver, "challenger")
            if serving.challenger is not None
            else champion
        )
        emit = self.emit_features
        scores = out.scores.tolist()
        frauds = out.is_fraud.tolist()
        append_score = result.scores.append
        append_latency = result.latencies_s.append
        for i, rec in enumerate(kept):
            ts_type, ts_ms = rec.timestamp()
            latency_s = now - ts_ms / 1000.0 if ts_type and ts_ms > 0 else 0.0
            tx, inp = txs[i], inputs[i]
            version, semver, role = (
                challenger if on_challenger is not None and on_challenger[i] else champion
            )
            payload: dict[str, Any] = {
                "transaction_id": inp.transaction_id,
                "customer_id": inp.customer_id,
                "score": scores[i],
                "is_fraud": frauds[i],
                "model_name": name,
                "model_version": version,
                "model_semver": semver,
                "model_role": role,
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
        result.sources = kept
        if routed.shadow is not None and serving.shadow is not None:
            result.shadow = self._shadow_records(kept, inputs, txs, routed, scores, scored_at)
        result.routed = routed
        result.flags = out.flags
        result.state_writes = self.features.state.take_pending()
        result.customer_ids = [inp.customer_id for inp in inputs]
        result.epoch_seconds = [inp.epoch_seconds for inp in inputs]
        result.features = out.features
        return result

    @staticmethod
    def _shadow_records(
        kept: Sequence[RecordLike],
        inputs: Sequence[TxInput],
        txs: Sequence[WireTransaction],
        routed: RoutedScores,
        served: list[float],
        scored_at: datetime,
    ) -> list[OutRecord]:
        """The shadow's score of each event, keyed and partitioned like its served score,
        with the served version and score beside it (joinable with the delayed labels)."""
        serving = routed.serving
        assert serving.shadow is not None and routed.shadow is not None
        shadow = serving.shadow
        on_challenger = routed.challenger.tolist() if routed.challenger is not None else None
        served_by = [
            serving.challenger.version
            if serving.challenger is not None and on_challenger is not None and on_challenger[i]
            else serving.champion.version
            for i in range(len(kept))
        ]
        out = []
        for i, (rec, score) in enumerate(zip(kept, routed.shadow.tolist(), strict=True)):
            payload = {
                "transaction_id": inputs[i].transaction_id,
                "customer_id": inputs[i].customer_id,
                "model_name": shadow.model.name,
                "model_version": shadow.version,
                "model_semver": shadow.semver,
                "model_role": "shadow",
                "score": score,
                "champion_version": served_by[i],
                "champion_score": served[i],
                "event_time": txs[i].tx_datetime,
                "scored_at": scored_at,
            }
            out.append(OutRecord(encode_score(payload), rec.key(), rec.partition(), None))
        return out

    def _isolate(
        self,
        kept: list[RecordLike],
        txs: list[WireTransaction],
        inputs: list[TxInput],
        result: BatchResult,
    ) -> tuple[list[RecordLike], list[WireTransaction], list[TxInput]]:
        """Score events one at a time to find those whose features raise; dead-letter them.

        Features are a pure function of the stored history (idempotent by transaction), so
        computing an event again gives the same values.
        """
        ok: tuple[list[RecordLike], list[WireTransaction], list[TxInput]] = ([], [], [])
        for rec, tx, inp in zip(kept, txs, inputs, strict=True):
            try:
                self.features.compute([inp])
            except RetryableError:
                raise
            except Exception as exc:
                reason = f"feature computation failed: {type(exc).__name__}: {exc}"
                result.dead_letters.append((self._dead_letter(rec, reason), reason))
                continue
            ok[0].append(rec)
            ok[1].append(tx)
            ok[2].append(inp)
        return ok

    def dead_letter_for(self, rec: RecordLike, reason: str) -> OutRecord:
        """The dead letter of an input record (bounded in size, see ``_dead_letter``)."""
        return self._dead_letter(rec, reason)

    def _dead_letter(self, rec: RecordLike, reason: str) -> OutRecord:
        return build_dead_letter(
            rec.value(),
            rec.key(),
            reason,
            source_topic=rec.topic() or "",
            source_partition=rec.partition() or 0,
            source_offset=rec.offset() or 0,
            max_bytes=self.dead_letter_max_bytes,
            prefix_bytes=self.dead_letter_prefix_bytes,
        )
