"""Dead letters are bounded whatever the record: small ones whole, large ones a prefix."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.config import WorkerSettings
from stream_infer.dead_letters import (
    DEFAULT_MAX_BYTES,
    DEFAULT_PREFIX_BYTES,
    KEY_MAX_BYTES,
    MIN_MAX_BYTES,
    REASON_HEADER,
    REASON_HEADER_MAX_BYTES,
    REASON_MAX_BYTES,
    build_dead_letter,
    check_limits,
    max_prefix_bytes,
)
from stream_infer.errors import ConfigError
from stream_infer.events import DeadLetter
from stream_infer.records import OutRecord

WHEN = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def _letter(out: OutRecord) -> DeadLetter:
    return DeadLetter.model_validate_json(out.value)


def _bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def test_defaults_are_the_settings_defaults() -> None:
    worker = WorkerSettings()
    assert (
        worker.dead_letter_max_bytes,
        worker.dead_letter_prefix_bytes,
    ) == (DEFAULT_MAX_BYTES, DEFAULT_PREFIX_BYTES)
    check_limits(DEFAULT_MAX_BYTES, DEFAULT_PREFIX_BYTES)


def test_small_record_is_kept_whole_with_size_and_digest() -> None:
    original = b'{"transaction_id": "t1", "tx_amount": "lots"}'
    out = build_dead_letter(
        original,
        b"c1",
        "invalid transaction: tx_amount: Input should be a valid number",
        source_topic="transactions",
        source_partition=3,
        source_offset=41,
        failed_at=WHEN,
    )
    letter = _letter(out)
    assert letter.original == original and not letter.original_truncated
    assert letter.original_size == len(original)
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "transactions",
        3,
        41,
    )
    assert letter.original_key == b"c1" and out.key == b"c1" and out.partition is None
    assert out.headers == [(REASON_HEADER, letter.reason.encode())]


def test_a_900_kb_record_becomes_a_letter_the_producer_takes() -> None:
    # The crash loop this module exists for: 900 KB is valid on `transactions` (1 MiB), but
    # its base64 alone (1.2 MB) is more than the producer sends.
    original = _bytes(900_000)
    out = build_dead_letter(
        original,
        b"c1",
        "not valid JSON",
        source_topic="transactions",
        source_partition=0,
        source_offset=7,
    )
    assert out.size() <= DEFAULT_MAX_BYTES
    letter = _letter(out)
    assert letter.original_truncated
    assert letter.original == original[:DEFAULT_PREFIX_BYTES]
    assert letter.original_size == 900_000
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    assert letter.source_offset == 7


def test_null_value_and_key() -> None:
    letter = _letter(
        build_dead_letter(
            None,
            None,
            "empty message value",
            source_topic="t",
            source_partition=0,
            source_offset=0,
        )
    )
    assert letter.original == b"" and letter.original_key is None
    assert letter.original_size == 0 and letter.original_sha256 == hashlib.sha256().hexdigest()


def test_huge_key_reason_and_topic_are_cut() -> None:
    out = build_dead_letter(
        b"x",
        b"k" * 1_000_000,
        "bad: " + "\x00" * 1_000_000,
        source_topic="t" * 10_000,
        source_partition=1,
        source_offset=2,
        max_bytes=MIN_MAX_BYTES,
        prefix_bytes=0,
    )
    assert out.size() <= MIN_MAX_BYTES
    letter = _letter(out)
    assert letter.original == b"x"  # still fits whole: only the metadata was cut
    assert letter.original_key == b"k" * KEY_MAX_BYTES and letter.original_key_truncated
    assert out.key == letter.original_key
    assert letter.reason.startswith("bad: ") and letter.reason.endswith(" [cut]")
    assert len(orjson.dumps(letter.reason)) - 2 <= REASON_MAX_BYTES
    assert out.headers is not None and len(out.headers[0][1]) <= REASON_HEADER_MAX_BYTES


def test_reason_header_is_cut_at_a_character_boundary() -> None:
    out = build_dead_letter(
        b"", None, "é" * 1000, source_topic="t", source_partition=0, source_offset=0
    )
    assert out.headers is not None
    name, value = out.headers[0]
    assert name == REASON_HEADER and len(value) <= REASON_HEADER_MAX_BYTES
    assert value.decode("utf-8") == "é" * (len(value) // 2)


def test_reason_with_lone_surrogates_still_encodes() -> None:
    # e.g. bytes decoded with surrogateescape into an error message
    out = build_dead_letter(
        b"", None, "bad \udcff byte", source_topic="t\ud800", source_partition=0, source_offset=0
    )
    letter = _letter(out)
    assert letter.reason == "bad \\udcff byte" and letter.source_topic == "t\\ud800"


def test_letters_written_before_sizes_were_recorded_still_decode() -> None:
    old = orjson.dumps(
        {
            "original": "/wByYXc=",
            "reason": "not valid JSON",
            "source_topic": "transactions",
            "source_partition": 2,
            "source_offset": 41,
            "failed_at": "2026-01-01T00:00:00Z",
        }
    )
    letter = DeadLetter.model_validate_json(old)
    assert letter.original == b"\xff\x00raw"
    assert letter.original_size is None and letter.original_sha256 is None
    assert not letter.original_truncated and not letter.original_key_truncated


@pytest.mark.parametrize(
    ("max_bytes", "prefix_bytes", "needle"),
    [
        (MIN_MAX_BYTES - 1, 0, "below"),
        (DEFAULT_MAX_BYTES, max_prefix_bytes(DEFAULT_MAX_BYTES) + 1, "does not fit"),
        (DEFAULT_MAX_BYTES, -1, "does not fit"),
    ],
)
def test_limits_that_cannot_be_honoured_are_refused(
    max_bytes: int, prefix_bytes: int, needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        check_limits(max_bytes, prefix_bytes)


def test_builder_refuses_a_bound_it_cannot_keep() -> None:
    with pytest.raises(ConfigError):
        build_dead_letter(
            b"", None, "r", source_topic="t", source_partition=0, source_offset=0, max_bytes=100
        )


_sizes = st.one_of(
    st.integers(0, 64),
    st.integers(0, 300_000),
    st.sampled_from([1_048_576, 1_000_000, 194_000, 65_536, 65_537]),
)
_texts = st.one_of(
    st.text(max_size=200),
    st.builds(lambda ch, n: ch * n, st.characters(), st.integers(0, 20_000)),
)


@settings(max_examples=200, deadline=None)
@given(
    size=st.one_of(st.none(), _sizes),
    key_size=st.one_of(st.none(), st.integers(0, 2_000)),
    reason=_texts,
    topic=_texts,
    partition=st.integers(-(2**31), 2**31 - 1),
    offset=st.integers(-(2**63), 2**63 - 1),
    max_bytes=st.integers(MIN_MAX_BYTES, 1_048_576),
    prefix_bytes=st.integers(0, 1_048_576),
)
def test_any_sizes_keep_the_bound(
    size: int | None,
    key_size: int | None,
    reason: str,
    topic: str,
    partition: int,
    offset: int,
    max_bytes: int,
    prefix_bytes: int,
) -> None:
    original = None if size is None else _bytes(size, seed=size)
    key = None if key_size is None else b"\x00" * key_size
    out = build_dead_letter(
        original,
        key,
        reason,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        max_bytes=max_bytes,
        prefix_bytes=prefix_bytes,
    )
    assert out.size() <= max_bytes
    assert out.headers is not None and len(out.headers[0][1]) <= REASON_HEADER_MAX_BYTES
    letter = _letter(out)
    whole = original or b""
    assert letter.original_size == len(whole)
    assert letter.original_sha256 == hashlib.sha256(whole).hexdigest()
    assert (letter.source_partition, letter.source_offset) == (partition, offset)
    assert letter.original == whole[: len(letter.original)]
    if len(whole) <= max_prefix_bytes(max_bytes):
        # Small enough to fit whatever the metadata: always kept whole.
        assert letter.original == whole and not letter.original_truncated
    if letter.original_truncated:
        assert len(letter.original) <= prefix_bytes
        if prefix_bytes <= max_prefix_bytes(max_bytes):  # limits check_limits accepts
            assert len(letter.original) == min(prefix_bytes, len(whole))
    else:
        assert letter.original == whole
