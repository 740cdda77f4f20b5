"""The scoring pipeline, transport-free: decode -> features -> model -> score records.

This is the one module that knows the order of the steps. The Kafka worker and the HTTP
sidecar are adapters around it: they hand it records and ship what it returns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import chain, repeat, starmap
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from stream_infer.config import EventSettings
from stream_infer.dead_letters import (
    DEFAULT_MAX_BYTES,
    DEFAULT_PREFIX_BYTES,
    build_dead_letter,
    check_limits,
)
from stream_infer.errors import FatalError, RetryableError
from stream_infer.event_time import FutureLimit
from stream_infer.events import encode_score
from stream_infer.features.compiled import FeatureComputer
from stream_infer.model.routed import ErrorHook, RoutedScores
from stream_infer.model.routed import score as routed_score
from stream_infer.model.serving import ServingModels
from stream_infer.model.session import LoadedModel
from stream_infer.records import Headers, OutRecord, ScoreRecord, encode_lines, feature_values
from stream_infer.streamdef.decoded import BatchDecoder
from stream_infer.streamdef.decoders import build_decoder
from stream_infer.streamdef.spec import SEQ_COLUMN, SourceSpec

Columns = dict[str, npt.NDArray[Any]]

DEFAULT_MAX_FUTURE_S: float = EventSettings.model_fields["max_future_s"].default

# OutRecord and Headers live in stream_infer.records; re-exported for existing importers.
__all__ = [
    "BatchResult",
    "BatchScores",
    "Headers",
    "OutRecord",
    "RecordLike",
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
    #: Row-aligned with ``scores``: seconds from each input's Kafka timestamp to scoring.
    latencies_s: list[float] = field(default_factory=list)
    flags: list[tuple[str, ...]] = field(default_factory=list)
    #: New entity-history entries to make durable before the batch is acknowledged.
    state_writes: Any = None
    #: Row-aligned with ``scores``: who (the entity key), when (epoch s) and the feature
    #: matrix (for sinks).
    customer_ids: list[Any] = field(default_factory=list)
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
        decoder: BatchDecoder | None = None,
        dead_letter_max_bytes: int = DEFAULT_MAX_BYTES,
        dead_letter_prefix_bytes: int = DEFAULT_PREFIX_BYTES,
        max_future_s: float = DEFAULT_MAX_FUTURE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``max_future_s``: events dated more than this ahead of ``clock()`` (epoch seconds,
        read once per batch) are dead-lettered (:mod:`stream_infer.event_time`).

        Raises ConfigError: the dead-letter limits cannot be honoured (checked here, at
        start-up, not at the first bad record)."""
        check_limits(dead_letter_max_bytes, dead_letter_prefix_bytes)
        self.source = features.defs.source
        #: Built once, at start (``decoder``: e.g. one reading a schema registry).
        self.decoder = decoder or build_decoder(self.source)
        self._feature_values = feature_values(features.defs.inputs)
        self.serving = model if isinstance(model, ServingModels) else ServingModels.of(model)
        self.features = features
        self.threshold = threshold
        self.emit_features = emit_features
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.dead_letter_prefix_bytes = dead_letter_prefix_bytes
        self.max_future_s = max_future_s
        self.clock = clock
        #: Called with each exception a version raises (the worker counts them).
        self.on_model_error: ErrorHook | None = None

    @property
    def model(self) -> LoadedModel:
        """The champion (what raw-tensor callers and single-model users score with)."""
        return self.serving.champion.model

    @model.setter
    def model(self, model: LoadedModel) -> None:
        self.serving = ServingModels.of(model)

    def score_columns(self, events: Columns, partitions: Ints | None = None) -> BatchScores:
        """Features and model for a batch of event columns (``SEQ_COLUMN`` included): the one
        scoring path (stream and sidecar).

        Raises:
            RetryableError: the feature state store failed.
        """
        t0 = time.perf_counter()
        matrix, flags = self.features.compute(events, partitions)
        t1 = time.perf_counter()
        keys = events[self.source.key_field].tolist()
        routed = routed_score(self.serving, matrix, keys, self.on_model_error)
        t2 = time.perf_counter()
        # Each row judged by the rule of the version that served it (its manifest's direction
        # and threshold; ``self.threshold`` only where a manifest records none).
        return BatchScores(
            routed.scores,
            routed.is_positive(self.threshold),
            matrix,
            flags,
            t1 - t0,
            t2 - t1,
            routed,
        )

    def process(self, records: Sequence[RecordLike]) -> BatchResult:
        """Decode, featurize, score and encode a batch; bad records become dead letters.

        Columnar all the way: the batch is decoded into columns, its features are computed at
        once, the model is called once per serving version, and the score records are encoded
        in one call. Never raises for bad input: each undecodable or invalid record, and each
        dated more than ``max_future_s`` ahead of the clock, is returned as a dead letter with
        its reason (a refused record never reaches the features, so it moves no state).

        Raises:
            RetryableError: the feature state store failed (the batch is not acknowledged).
        """
        result = BatchResult()
        future = FutureLimit.at(self.clock, self.max_future_s)
        decoded = self.decoder.decode_batch(
            [rec.value() for rec in records], max_epoch_s=math.floor(future.limit_s)
        )
        for i, reason in decoded.refused:
            result.dead_letters.append((self._dead_letter(records[i], reason), reason))
        if not decoded.kept:
            return result
        kept = [records[i] for i in decoded.kept] if decoded.refused else list(records)
        parts_l = [rec.partition() for rec in kept]
        offsets = [rec.offset() for rec in kept]
        cols = decoded.columns
        cols[SEQ_COLUMN] = np.array(
            offsets if None not in offsets else [o or 0 for o in offsets], np.int64
        )
        parts = np.array(parts_l if None not in parts_l else [p or 0 for p in parts_l], np.int64)
        try:
            out = self.score_columns(cols, parts)
        except (RetryableError, FatalError):  # a store outage, refused credentials, the model
            raise
        except Exception:
            # A feature bug on one event must not stop the stream: find it, dead-letter it.
            ok = self._isolate(kept, cols, parts, result)
            if not ok:
                return result
            kept, cols, parts = [kept[i] for i in ok], _take(cols, ok), parts[ok]
            out = self.score_columns(cols, parts)
        seconds = cols[self.source.timestamp_field]
        times = _iso_times(seconds)
        result.features_s, result.inference_s = out.features_s, out.inference_s
        now = time.time()
        latencies = _latencies(kept, now)
        result.scores = self._score_records(kept, cols, times, out, latencies, now)
        result.latencies_s = latencies.tolist()
        result.sources = kept
        routed = out.routed
        if routed.shadow is not None and routed.serving.shadow is not None:
            scored_at = datetime.fromtimestamp(now, tz=UTC)
            result.shadow = self._shadow_records(kept, cols, times, routed, scored_at)
        result.routed = routed
        result.flags = out.flags
        result.state_writes = self.features.state.take_pending()
        result.customer_ids = cols[self.source.key_field].tolist()
        result.epoch_seconds = seconds.tolist()
        result.features = out.features
        return result

    def _score_records(
        self,
        kept: Sequence[RecordLike],
        cols: Columns,
        times: Sequence[str],
        out: BatchScores,
        latencies: npt.NDArray[np.float64],
        now: float,
    ) -> list[OutRecord]:
        """The batch's score records, encoded in one call."""
        routed = out.routed
        serving = routed.serving
        name = serving.champion.model.name
        scored_at = datetime.fromtimestamp(now, tz=UTC)
        champion = (serving.champion.version, serving.champion.semver, "champion")
        n = len(kept)
        versions: Any = repeat(champion[0], n)
        semvers: Any = repeat(champion[1], n)
        roles: Any = repeat(champion[2], n)
        if routed.challenger is not None and serving.challenger is not None:
            challenger = (serving.challenger.version, serving.challenger.semver, "challenger")
            served = [challenger if c else champion for c in routed.challenger.tolist()]
            versions, semvers, roles = ([v[j] for v in served] for j in range(3))
        features: Any = repeat(None, n)
        if self.emit_features:
            features = starmap(self._feature_values, out.features.tolist())
        flags: Any = (
            repeat(None, n) if not any(out.flags) else [list(f) if f else None for f in out.flags]
        )
        structs = list(
            map(
                ScoreRecord,
                cols[self.source.event_id_field].tolist(),
                cols[self.source.key_field].tolist(),
                out.scores.tolist(),
                out.is_fraud.tolist(),
                repeat(name, n),
                versions,
                semvers,
                roles,
                times,
                repeat(scored_at, n),
                (latencies * 1000.0).tolist(),
                flags,
                features,
            )
        )
        rows = zip(
            encode_lines(structs),
            [rec.key() for rec in kept],
            [rec.partition() for rec in kept],
            [rec.headers() for rec in kept],
            strict=True,
        )
        return list(map(_new_record, rows))

    def _shadow_records(
        self,
        kept: Sequence[RecordLike],
        cols: Columns,
        times: Sequence[str],
        routed: RoutedScores,
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
        served = routed.scores.tolist()
        event_ids = cols[self.source.event_id_field].tolist()
        keys = cols[self.source.key_field].tolist()
        out = []
        for i, (rec, score) in enumerate(zip(kept, routed.shadow.tolist(), strict=True)):
            payload = {
                "transaction_id": event_ids[i],
                "customer_id": keys[i],
                "model_name": shadow.model.name,
                "model_version": shadow.version,
                "model_semver": shadow.semver,
                "model_role": "shadow",
                "score": score,
                "champion_version": served_by[i],
                "champion_score": served[i],
                "event_time": times[i],
                "scored_at": scored_at,
            }
            out.append(OutRecord(encode_score(payload), rec.key(), rec.partition(), None))
        return out

    def _isolate(
        self, kept: Sequence[RecordLike], cols: Columns, parts: Ints, result: BatchResult
    ) -> list[int]:
        """Score events one at a time to find those whose features raise; dead-letter them.
        Returns the rows that passed.

        Features are a pure function of the stored history (idempotent by transaction), so
        computing an event again gives the same values.
        """
        ok: list[int] = []
        for i, rec in enumerate(kept):
            try:
                self.features.compute(_take(cols, [i]), parts[i : i + 1])
            except (RetryableError, FatalError):  # not the event's fault: never dead-letter it
                raise
            except Exception as exc:
                reason = f"feature computation failed: {type(exc).__name__}: {exc}"
                result.dead_letters.append((self._dead_letter(rec, reason), reason))
                continue
            ok.append(i)
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


#: ``OutRecord(*row)`` without the named tuple's Python-level ``__new__`` (one per event).
_new_record = partial(tuple.__new__, OutRecord)


def _latencies(records: Sequence[RecordLike], now: float) -> npt.NDArray[np.float64]:
    """Seconds from each record's Kafka timestamp to ``now`` (0 where it has none)."""
    pairs = chain.from_iterable([rec.timestamp() for rec in records])
    stamps = np.fromiter(pairs, dtype=np.int64, count=2 * len(records)).reshape(-1, 2)
    valid = (stamps[:, 0] != 0) & (stamps[:, 1] > 0)
    return np.where(valid, now - stamps[:, 1] / 1000.0, 0.0)


Ints = npt.NDArray[np.int64]


def _take(cols: Columns, rows: Sequence[int]) -> Columns:
    """Rows ``rows`` of every column, in that order."""
    idx = np.asarray(rows, dtype=np.int64)
    return {name: values[idx] for name, values in cols.items()}


def _iso_times(seconds: npt.NDArray[np.int64]) -> list[str]:
    """Epoch seconds as RFC 3339 UTC strings (``...Z``), as a UTC datetime encodes."""
    text = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    stamped: list[str] = np.char.add(text, "Z").tolist()
    return stamped


def event_columns(
    source: SourceSpec, events: Sequence[Mapping[str, Any]], seqs: Sequence[int]
) -> Columns:
    """Event columns (``SEQ_COLUMN`` from ``seqs``) of events given as field mappings (the
    source's field names; the timestamp in epoch seconds).

    Raises:
        KeyError: an event lacks a field of the source.
    """
    cols: Columns = {}
    for f in source.fields:
        values = [ev[f.name] for ev in events]
        if f.name == source.timestamp_field:
            cols[f.name] = np.array(values, dtype=np.int64)
        else:
            cols[f.name] = np.array(values, dtype=_KIND_DTYPES[f.kind])
    cols[SEQ_COLUMN] = np.array(seqs, dtype=np.int64)
    return cols


_KIND_DTYPES: dict[str, Any] = {
    "float64": np.float64,
    "int64": np.int64,
    "bool": np.bool_,
    "string": object,
}
