"""Wire schemas: valid events parse, bad ones raise DeadLetterError with a useful reason."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from stream_infer.errors import DeadLetterError
from stream_infer.events import DeadLetter, decode_label, decode_transaction, encode

VALID = {
    "transaction_id": 17,
    "tx_datetime": "2026-04-04T23:59:59",
    "customer_id": 3,
    "terminal_id": "t9",
    "tx_amount": 12.5,
}


def test_valid_transaction_normalises_ids_and_time() -> None:
    tx = decode_transaction(orjson.dumps(VALID))
    assert tx.transaction_id == "17" and tx.customer_id == "3"
    assert tx.tx_datetime == datetime(2026, 4, 4, 23, 59, 59, tzinfo=UTC)
    offset = decode_transaction(orjson.dumps({**VALID, "tx_datetime": "2026-04-05T01:59:59+02:00"}))
    assert offset.epoch_seconds == tx.epoch_seconds


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "empty message value"),
        (b"{nope", "not valid JSON"),
        (b"[1, 2]", "invalid transaction"),
        (orjson.dumps({**VALID, "tx_amount": -1}), "tx_amount"),
        (orjson.dumps({**VALID, "tx_amount": "lots"}), "tx_amount"),
        (orjson.dumps({**VALID, "tx_datetime": "soon"}), "tx_datetime"),
        (orjson.dumps({k: v for k, v in VALID.items() if k != "customer_id"}), "customer_id"),
        (orjson.dumps({**VALID, "transaction_id": ""}), "transaction_id"),
    ],
)
def test_bad_transactions_say_what_is_wrong(raw: bytes, needle: str) -> None:
    with pytest.raises(DeadLetterError) as info:
        decode_transaction(raw)
    assert needle in info.value.reason


def test_label_validation() -> None:
    label = decode_label(
        b'{"transaction_id":1,"tx_datetime":"2026-04-01T00:00:00","terminal_id":2,"tx_fraud":1}'
    )
    assert label.tx_fraud == 1
    with pytest.raises(DeadLetterError, match="tx_fraud"):
        decode_label(
            b'{"transaction_id":1,"tx_datetime":"2026-04-01T00:00:00","terminal_id":2,"tx_fraud":3}'
        )


def test_dead_letter_keeps_original_bytes() -> None:
    letter = DeadLetter(
        original=b"\xff\x00raw",
        reason="not valid JSON",
        source_topic="transactions",
        source_partition=2,
        source_offset=41,
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    payload = orjson.loads(encode(letter))
    import base64

    assert base64.b64decode(payload["original"]) == b"\xff\x00raw"
    assert payload["source_offset"] == 41


def test_dead_letter_round_trips_through_json() -> None:
    letter = DeadLetter(
        original=b"\xff\x00raw",
        original_key=b"\x01k",
        reason="not valid JSON",
        source_topic="transactions",
        source_partition=2,
        source_offset=41,
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
        original_size=5,
        original_sha256="0" * 64,
        original_truncated=True,
    )
    assert DeadLetter.model_validate_json(encode(letter)) == letter
    with pytest.raises(ValueError, match="not base64"):
        DeadLetter.model_validate_json(encode(letter).replace(b'"/wByYXc="', b'"%%"'))
