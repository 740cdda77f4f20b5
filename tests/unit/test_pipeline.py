"""The transport-free pipeline: scores and dead letters from raw records."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from stream_infer.errors import ConfigError
from stream_infer.events import DeadLetter, Score
from stream_infer.features.compiled import FeatureComputer
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.registry import ModelRegistry
from stream_infer.model.session import LoadedModel, load_model
from stream_infer.pipeline import ScoringPipeline
from stream_infer.streamdef.daily import DayAggregate
from stream_infer.streamdef.daily_source import InMemoryDailyRows

from .fakes import FakeRecord
from .fraud_defs import fraud_defs

FLAG_TERMINAL_MISSING = "terminal_features_unavailable"


def tx(i: int, customer: str = "c1", amount: float = 10.0) -> bytes:
    return orjson.dumps(
        {
            "transaction_id": f"t{i}",
            "tx_datetime": f"2026-04-10T10:00:{i:02d}",
            "customer_id": customer,
            "terminal_id": "T1",
            "tx_amount": amount,
        }
    )


@pytest.fixture
def pipeline(registry: ModelRegistry) -> ScoringPipeline:
    model = load_model(registry, "fraud", FEATURE_NAMES)
    return ScoringPipeline(model, FeatureComputer(fraud_defs()), threshold=0.5, emit_features=True)


def test_scores_keep_key_partition_headers(pipeline: ScoringPipeline) -> None:
    headers = [("x-intended-send-ns", b"123")]
    records = [
        FakeRecord(tx(i), b"c1", _partition=2, _offset=i, _headers=headers) for i in range(3)
    ]
    result = pipeline.process(records)
    assert not result.dead_letters
    assert [(o.partition, o.key, o.headers) for o in result.scores] == [(2, b"c1", headers)] * 3
    scores = [Score.model_validate_json(o.value) for o in result.scores]
    assert [s.transaction_id for s in scores] == ["t0", "t1", "t2"]
    assert [s.features["customer_nb_tx_1d"] for s in scores if s.features] == [1.0, 2.0, 3.0]
    assert all(s.is_fraud == (s.score >= 0.5) for s in scores)
    assert scores[0].flags == [FLAG_TERMINAL_MISSING]


def test_bad_records_become_dead_letters_in_place(pipeline: ScoringPipeline) -> None:
    records = [FakeRecord(tx(0)), FakeRecord(b"{oops", _offset=1), FakeRecord(None, _offset=2)]
    result = pipeline.process(records)
    assert len(result.scores) == 1
    reasons = [reason for _out, reason in result.dead_letters]
    assert reasons[0].startswith("not valid JSON") and reasons[1] == "empty message value"
    letter = orjson.loads(result.dead_letters[0][0].value)
    assert letter["source_offset"] == 1


def test_terminal_rows_of_the_events_day_are_used(registry: ModelRegistry) -> None:
    defs = fraud_defs()
    rows = InMemoryDailyRows(defs.daily_views)
    day = 20553  # 2026-04-10
    rows.add("terminal_counts", "T1", day - 8, {"tx_fraud": DayAggregate.of([1.0, 0.0, 0.0, 0.0])})
    rows.set_complete_through(day - 8)
    model = load_model(registry, "fraud", FEATURE_NAMES)
    pipe = ScoringPipeline(model, FeatureComputer(defs, rows), emit_features=True)
    # The stream started 10 days before: labels may exist for the row's days.
    early = orjson.loads(tx(0, customer="c0")) | {"tx_datetime": "2026-03-31T10:00:00"}
    pipe.process([FakeRecord(orjson.dumps(early | {"transaction_id": "t-early"}))])
    score = Score.model_validate_json(pipe.process([FakeRecord(tx(0))]).scores[0].value)
    assert score.flags == []
    assert score.features is not None
    assert score.features["terminal_nb_tx_1d"] == 4.0
    assert score.features["terminal_risk_1d"] == 0.25


def test_all_bad_batch_skips_the_model(pipeline: ScoringPipeline) -> None:
    result = pipeline.process([FakeRecord(b"[]")])
    assert not result.scores and len(result.dead_letters) == 1


def test_oversized_bad_record_becomes_a_bounded_dead_letter(pipeline: ScoringPipeline) -> None:
    # A 900 KB record is valid on a 1 MiB topic; its whole dead letter would not be.
    original = b"{" + b"x" * 900_000
    result = pipeline.process([FakeRecord(original, b"c9", _partition=4, _offset=77)])
    [(out, reason)] = result.dead_letters
    assert reason.startswith("not valid JSON")
    assert out.size() <= pipeline.dead_letter_max_bytes
    letter = DeadLetter.model_validate_json(out.value)
    assert letter.original_truncated and letter.original_size == len(original)
    assert letter.original == original[: pipeline.dead_letter_prefix_bytes]
    assert (letter.source_partition, letter.source_offset) == (4, 77)


def test_dead_letter_limits_are_checked_at_construction(registry: ModelRegistry) -> None:
    model = load_model(registry, "fraud", FEATURE_NAMES)
    with pytest.raises(ConfigError, match="dead_letter_prefix_bytes"):
        ScoringPipeline(
            model,
            FeatureComputer(fraud_defs()),
            dead_letter_max_bytes=8192,
            dead_letter_prefix_bytes=8192,
        )


def test_a_low_is_positive_model_marks_low_scores_positive(registry: ModelRegistry) -> None:
    model = load_model(registry, "fraud", FEATURE_NAMES)
    records = [FakeRecord(tx(i, amount=0.5 * i), _offset=i) for i in range(6)]

    def scored(m: LoadedModel) -> list[Score]:
        pipe = ScoringPipeline(m, FeatureComputer(fraud_defs()), threshold=0.5)
        return [Score.model_validate_json(o.value) for o in pipe.process(records).scores]

    values = sorted(s.score for s in scored(model))
    cut = values[len(values) // 2]
    assert values[0] < cut < values[-1]  # scores on both sides of the cut
    low = scored(replace(model, score_kind="decision", positive="low", threshold=cut))
    assert [s.is_fraud for s in low] == [s.score <= cut for s in low]
    assert any(s.is_fraud for s in low) and not all(s.is_fraud for s in low)
    # The setting serves only a manifest that records no threshold: the direction still holds.
    unset = scored(replace(model, positive="low", threshold=None))
    assert [s.is_fraud for s in unset] == [s.score <= 0.5 for s in unset]
