"""Dead letters that always fit: one builder, bounded whatever record it describes.

A dead letter carries the original value (base64), its key, the reason and where the original
lives (source topic/partition/offset). A record may be as large as the topic allows (1 MiB), and
base64 makes it a third larger, so a letter holding it whole could be refused by the producer
(``MSG_SIZE_TOO_LARGE``); the worker would then stop and meet the same record on restart. So
every letter built here has a payload (value, key and headers, :func:`records.record_size`) of
at most ``max_bytes``, which the settings keep below ``kafka.message_max_bytes``
(:func:`stream_infer.kafka.clients.check_size_limits`). A letter that would be larger keeps only
a prefix of the original and says so (``original_truncated``); its size and sha256 are always
recorded, so the operator can fetch the whole record from its source offset and verify it. A
huge key, reason or topic name is cut too, and the ``x-dlq-reason`` header stays short.

The pipeline uses this for input it cannot decode; the worker for a record Kafka refused.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache
from typing import Final

import orjson

from stream_infer.config import WorkerSettings
from stream_infer.errors import ConfigError
from stream_infer.events import DeadLetter, encode
from stream_infer.records import Headers, OutRecord

REASON_HEADER: Final = "x-dlq-reason"
#: Most bytes of the reason kept in the header (UTF-8, cut at a character boundary).
REASON_HEADER_MAX_BYTES: Final = 256
#: Most bytes the reason takes in the letter's JSON (escapes counted), marker included.
REASON_MAX_BYTES: Final = 1024
#: Most bytes of the original key kept (in the letter and as the letter's Kafka key).
KEY_MAX_BYTES: Final = 512
#: Most bytes the source topic name takes in the JSON (Kafka's own limit is 249 characters).
TOPIC_MAX_BYTES: Final = 255
#: The smallest ``max_bytes`` that leaves room for the metadata at its largest (the settings
#: refuse less too: ``worker.dead_letter_max_bytes`` has the same floor).
MIN_MAX_BYTES: Final = 4096
_CUT_MARKER: Final = " [cut]"

DEFAULT_MAX_BYTES: Final[int] = WorkerSettings.model_fields["dead_letter_max_bytes"].default
DEFAULT_PREFIX_BYTES: Final[int] = WorkerSettings.model_fields["dead_letter_prefix_bytes"].default


def build_dead_letter(
    original: bytes | None,
    key: bytes | None,
    reason: str,
    *,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    prefix_bytes: int = DEFAULT_PREFIX_BYTES,
    failed_at: datetime | None = None,
) -> OutRecord:
    """The dead letter of one record, for the dead-letter topic (any partition).

    Its payload (:meth:`OutRecord.size`) is at most ``max_bytes``. The original is kept whole
    when the letter fits; otherwise its first ``prefix_bytes`` (fewer if even those would not
    fit) with ``original_truncated``. ``source_partition`` and ``source_offset`` are Kafka's
    (int32, int64).

    Raises:
        ConfigError: ``max_bytes`` is below :data:`MIN_MAX_BYTES` (settings refuse that at
            start-up, so a running worker never sees it).
    """
    if max_bytes < MIN_MAX_BYTES:
        raise ConfigError(f"dead letters need at least {MIN_MAX_BYTES} bytes, got {max_bytes}")
    value = original or b""
    kept_key = None if key is None else key[:KEY_MAX_BYTES]
    reason = _cut_text(_valid_utf8(reason), REASON_MAX_BYTES)
    headers: Headers = [(REASON_HEADER, _cut_utf8(reason.encode(), REASON_HEADER_MAX_BYTES))]
    topic = _cut_text(_valid_utf8(source_topic), TOPIC_MAX_BYTES)
    when = _as_utc(failed_at or datetime.now(UTC))
    digest = hashlib.sha256(value).hexdigest()

    def letter(kept: bytes, truncated: bool) -> OutRecord:
        body = encode(
            DeadLetter(
                original=kept,
                original_key=kept_key,
                reason=reason,
                source_topic=topic,
                source_partition=source_partition,
                source_offset=source_offset,
                failed_at=when,
                original_size=len(value),
                original_sha256=digest,
                original_truncated=truncated,
                original_key_truncated=key is not None and len(key) > KEY_MAX_BYTES,
            )
        )
        return OutRecord(body, kept_key, None, headers)

    if _b64_len(len(value)) < max_bytes:  # else it cannot fit: skip encoding it whole
        whole = letter(value, truncated=False)
        if whole.size() <= max_bytes:
            return whole
    room = max_bytes - letter(b"", truncated=True).size()
    keep = min(prefix_bytes, len(value), _raw_len(room))
    return letter(value[:keep], truncated=True)


def max_prefix_bytes(max_bytes: int) -> int:
    """The longest prefix a truncated letter of ``max_bytes`` keeps whatever its metadata."""
    return max(0, _raw_len(max_bytes - _largest_metadata_bytes()))


def check_limits(max_bytes: int, prefix_bytes: int) -> None:
    """Refuse dead-letter limits the builder could not honour.

    Raises:
        ConfigError: ``max_bytes`` below :data:`MIN_MAX_BYTES`, or a prefix of
            ``prefix_bytes`` that would not fit in a letter of ``max_bytes``.
    """
    if max_bytes < MIN_MAX_BYTES:
        raise ConfigError(
            f"worker.dead_letter_max_bytes={max_bytes} is below the {MIN_MAX_BYTES} bytes a "
            "dead letter's metadata may need"
        )
    fits = max_prefix_bytes(max_bytes)
    if not 0 <= prefix_bytes <= fits:
        raise ConfigError(
            f"worker.dead_letter_prefix_bytes={prefix_bytes} does not fit in a dead letter of "
            f"worker.dead_letter_max_bytes={max_bytes} (at most {fits}: base64 adds a third)"
        )


@cache
def _largest_metadata_bytes() -> int:
    # Measured, not estimated: an empty original and every other field at the largest the
    # builder lets through (escapes cost most: six bytes per control character).
    worst = build_dead_letter(
        None,
        b"\xff" * KEY_MAX_BYTES,
        "\x00" * REASON_MAX_BYTES,
        source_topic="\x00" * TOPIC_MAX_BYTES,
        source_partition=-(2**31),
        source_offset=-(2**63),
        max_bytes=2**62,
        prefix_bytes=0,
        failed_at=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    )
    # Escapes do not divide the text bounds evenly, and the header keeps raw bytes: a plain
    # text can fill each bound to the byte where this one stops short. Add what it left.
    body = orjson.loads(worst.value)
    short = (
        REASON_MAX_BYTES
        - _json_len(body["reason"])
        + TOPIC_MAX_BYTES
        - _json_len(body["source_topic"])
        + REASON_HEADER_MAX_BYTES
        - len(worst.headers[0][1] if worst.headers else b"")
    )
    # original_size of a huge record: up to 19 more digits than the empty one's "0".
    return worst.size() + short + 19


def _b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def _raw_len(b64_room: int) -> int:
    """The most raw bytes whose base64 fits in ``b64_room`` bytes."""
    return max(0, b64_room) // 4 * 3


def _as_utc(value: datetime) -> datetime:
    # "Z" is the shortest offset the JSON can carry; the bound is measured with it.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _valid_utf8(text: str) -> str:
    # Lone surrogates (from bytes decoded with surrogateescape) would make orjson refuse it.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _json_len(text: str) -> int:
    return len(orjson.dumps(text)) - 2  # without the quotes


def _cut_text(text: str, limit: int) -> str:
    """``text`` if its JSON encoding fits in ``limit`` bytes, else its longest prefix that
    fits with a marker saying it was cut."""
    if _json_len(text) <= limit:
        return text
    room = limit - len(_CUT_MARKER)
    lo, hi = 0, min(len(text), room)  # a character takes at least one byte
    while lo < hi:  # the longest prefix whose encoding fits (length grows with the prefix)
        mid = (lo + hi + 1) // 2
        if _json_len(text[:mid]) <= room:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + _CUT_MARKER


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of UTF-8 ``data``, never ending inside a character."""
    return data[:limit].decode("utf-8", "ignore").encode("utf-8")
